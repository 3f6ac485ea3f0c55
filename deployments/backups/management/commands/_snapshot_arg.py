"""The <snapshot> argument of the commands: a run id, a snapshot name, or <deployment slug>/<name>."""

from django.core.management.base import CommandError

from ...models import BackupRun


def find_run(value) -> BackupRun:
    runs = BackupRun.objects.select_related("schedule__deployment").filter(state=BackupRun.State.SUCCEEDED)
    if value.isdigit():
        run = runs.filter(pk=int(value)).first()
    elif "/" in value:
        slug, name = value.split("/", 1)
        run = runs.filter(schedule__deployment__slug=slug, snapshot=name).first()
    else:
        matches = list(runs.filter(snapshot=value)[:2])
        if len(matches) > 1:
            raise CommandError(f"snapshot {value} exists for several deployments: write <deployment slug>/{value}")
        run = matches[0] if matches else None
    if run is None:
        raise CommandError(f"no successful backup run or snapshot named {value!r}")
    if run.pruned_at:
        raise CommandError(f"snapshot {run.snapshot} was removed by retention on {run.pruned_at:%Y-%m-%d}")
    return run
