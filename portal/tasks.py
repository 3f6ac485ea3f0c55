from celery import shared_task

from .jobs import jobs_reconcile


@shared_task(name="portal.jobs_reconcile")
def jobs_reconcile_task():
    return jobs_reconcile()
