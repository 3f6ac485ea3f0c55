"""One line for the home dashboard's deployment card."""

from django.utils.timesince import timesince

from .status import GREEN, RED, schedule_status

ORDER = {RED: 0, "amber": 1, "grey": 2, GREEN: 3}


def summary(deployment) -> str:
    schedules = list(deployment.backup_schedules.all())
    if not schedules:
        return ""
    statuses = sorted((schedule_status(s) for s in schedules), key=lambda st: ORDER[st["light"]])
    worst = statuses[0]
    successes = [st["last_success"].finished_at for st in statuses if st["last_success"]]
    if not successes:
        return f"no successful backup yet ({worst['light']})"
    age = timesince(max(successes)).split(",")[0]
    return f"last success {age} ago ({worst['light']})"


def deployment_panel_context(deployment) -> dict:
    """For templates/backups/_deployment_panel.html on the deployment page."""
    return {
        "backup_deployment": deployment,
        "backup_summary": summary(deployment) or "no backup schedule",
        "backup_statuses": [(s, schedule_status(s)) for s in deployment.backup_schedules.all()],
    }
