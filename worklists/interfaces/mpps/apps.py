from django.apps import AppConfig


class MppsConfig(AppConfig):
    name = "worklists.interfaces.mpps"
    label = "mpps"
    verbose_name = "MPPS (performed procedure steps)"
