from django.apps import AppConfig


class WorklistsConfig(AppConfig):
    name = "worklists"
    verbose_name = "Worklists"

    def ready(self):
        from deployments import charsets, panels

        from .dashboard import deployment_panel_context
        from .scheduling import unsendable_entries

        panels.register("worklists/_deployment_panel.html", deployment_panel_context, order=40)
        charsets.register_entry_check(unsendable_entries)
