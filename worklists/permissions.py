"""The API's permission class (its own module: DRF imports it while the views are imported)."""

from rest_framework import permissions


class ModelPermissions(permissions.DjangoModelPermissions):
    """Django's model permissions, with reading guarded too (patient data), and status
    actions counted as changes."""

    perms_map = {**permissions.DjangoModelPermissions.perms_map, "GET": ["%(app_label)s.view_%(model_name)s"]}

    def has_permission(self, request, view):
        if getattr(view, "action", None) in ("cancel", "transition"):
            return bool(
                request.user
                and request.user.is_authenticated
                and request.user.has_perm("worklists.change_worklistentry")
            )
        return super().has_permission(request, view)
