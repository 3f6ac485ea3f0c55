"""Which clinic sites (deployments) a staff account works for, and the querysets that keep it so.

Every view, API endpoint and form that reads or writes a site's objects goes through these: an
object of a site the account does not work for answers 404, as if it did not exist. An account
without a ``SiteAccess`` row, or with ``all_sites``, works for every site (the accounts made
before sites could be limited keep what they had); a superuser always does. Staff accounts and
the sites themselves are managed by a global Admin only (``require_global``).
"""

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

_CACHE = "_portal_site_ids"


def site_ids(user):
    """The ids of the sites ``user`` works for; None for all of them."""
    if not getattr(user, "is_authenticated", False):
        return set()
    if user.is_superuser:
        return None
    if not hasattr(user, _CACHE):
        from .models import SiteAccess

        access = SiteAccess.objects.filter(user=user).first()
        ids = None if access is None or access.all_sites else set(access.deployments.values_list("pk", flat=True))
        setattr(user, _CACHE, ids)
    return getattr(user, _CACHE)


def forget(user):
    """After a change of the account's sites (the same request goes on with the new ones)."""
    if hasattr(user, _CACHE):
        delattr(user, _CACHE)


def works_everywhere(user):
    return site_ids(user) is None


def scoped(queryset, user, field="deployment"):
    """``queryset`` limited to the objects of the user's sites; ``field`` leads to the deployment
    ('' when the queryset is of deployments)."""
    ids = site_ids(user)
    if ids is None:
        return queryset
    return queryset.filter(**{f"{field}__in" if field else "pk__in": ids})


def deployments_of(user):
    from deployments.models import Deployment

    return scoped(Deployment.objects.all(), user, field="")


def deployment_or_404(request, slug):
    return get_object_or_404(deployments_of(request.user), slug=slug)


def may_see(user, deployment_id):
    ids = site_ids(user)
    return ids is None or deployment_id in ids


def require_global(view):
    """Only an account that works for every site (after the role's permission check)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not works_everywhere(request.user):
            raise PermissionDenied("Only an account that works for every site may do this.")
        return view(request, *args, **kwargs)

    return wrapper
