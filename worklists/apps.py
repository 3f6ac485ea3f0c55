from django.apps import AppConfig


class WorklistsConfig(AppConfig):
    name = "worklists"
    verbose_name = "Worklists"

    def ready(self):
        from deployments import panels

        from .dashboard import deployment_panel_context

        panels.register("worklists/_deployment_panel.html", deployment_panel_context, order=40)
