from django.apps import AppConfig


class Hl7Config(AppConfig):
    name = "worklists.interfaces.hl7"
    label = "hl7"
    verbose_name = "HL7 interface"

    def ready(self):
        from deployments import panels

        from .dashboard import deployment_panel_context

        panels.register("hl7/_deployment_panel.html", deployment_panel_context, order=45)
