from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self):
        from . import roles

        # Permissions of models added by later migrations join their roles here.
        post_migrate.connect(roles.sync_after_migrate, dispatch_uid="portal.roles.sync")
