"""The Celery app. Settings come from Django's (CELERY_*); routing sends deployment work to
the queue of that deployment, whose worker runs on the deployment's Orthanc host."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def deployment_queue(slug):
    return f"deployment.{slug}"
