from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self):
        from . import roles

        # Permissions of models added by later migrations join their roles here.
        post_migrate.connect(roles.sync_after_migrate, dispatch_uid="portal.roles.sync")
        post_migrate.connect(_periodic_tasks, sender=self, dispatch_uid="portal.schedules.ensure")


def _periodic_tasks(sender, **kwargs):
    from .schedules import ensure_periodic_tasks

    # The safety nets exist wherever the database is migrated, not only under `make run`.
    ensure_periodic_tasks()
