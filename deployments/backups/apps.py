from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "deployments.backups"
    label = "backups"
    verbose_name = "Backups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from deployments import panels

        from .dashboard import deployment_panel_context

        panels.register("backups/_deployment_panel.html", deployment_panel_context, order=60)
