from django.apps import AppConfig


class Hl7Config(AppConfig):
    name = "worklists.interfaces.hl7"
    label = "hl7"
    verbose_name = "HL7 interface"

    def ready(self):
        from deployments import panels

        from . import status  # noqa: F401  (connects the status outbox to status_changed)
        from .dashboard import deployment_panel_context

        panels.register("hl7/_deployment_panel.html", deployment_panel_context, order=45)
