"""Schedules: form validation, the beat rows kept in sync, one run at a time, retention, lights."""

import json
from datetime import timedelta
from html import unescape

import pytest
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from deployments.backups.models import BackupRun, BackupSchedule
from deployments.backups.overdue import backups_check_overdue
from deployments.backups.retention import keep
from deployments.backups.run import backup_run, backup_start
from deployments.backups.status import schedule_status
from deployments.models import Deployment


@pytest.fixture
def deployment(db):
    return Deployment.objects.create(
        name="Clinic", slug="clinic", orthanc_url="http://127.0.0.1:9", service_password="x" * 24,
        config_dir="/nonexistent/config", service_kind=Deployment.ServiceKind.LOCAL,
    )  # fmt: skip


def form_data(deployment, **changes):
    data = {
        "deployment": deployment.pk, "name": "Nightly", "host": "nas.clinic.example", "port": 22, "user": "backup",
        "remote_folder": "/srv/backups", "preset": "daily-0200", "minute": "", "hour": "", "day_of_week": "",
        "day_of_month": "", "month_of_year": "", "keep_last": 10, "keep_hourly": 24, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6,
        "include_index": "on", "include_storage": "on", "include_config": "on", "enabled": "on",
        "bandwidth_limit": "", "drill_weekly": "on",
    }  # fmt: skip
    data.update(changes)
    return data


def field_errors(response):
    form = response.context["form"]
    return {name: " ".join(errors) for name, errors in form.errors.items()}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"remote_folder": "backups/clinic"}, "remote_folder", "must be an absolute path"),
        ({"remote_folder": "/srv/../etc"}, "remote_folder", "must not contain '.' or '..'"),
        ({"remote_folder": "/srv/backups;rm -rf ~"}, "remote_folder", "not ' ' ';' '~'"),
        ({"remote_folder": "/srv/$(reboot)"}, "remote_folder", "not '$' '(' ')'"),
        ({"host": "-oProxyCommand=touch /tmp/x"}, "host", "Enter a host name"),
        ({"host": "nas clinic"}, "host", "Enter a host name"),
        ({"port": 0}, "port", "A port is between 1 and 65535."),
        ({"port": 70000}, "port", "A port is between 1 and 65535."),
        ({"user": "root;id"}, "user", "A user name is 1 to 32"),
        ({"preset": "fortnightly"}, "preset", "Select a valid choice"),
        (
            {
                "preset": "custom",
                "minute": "0",
                "hour": "25",
                "day_of_week": "*",
                "day_of_month": "*",
                "month_of_year": "*",
            },
            "hour",
            "25",
        ),
        (
            {
                "preset": "custom",
                "minute": "0",
                "hour": "2",
                "day_of_week": "funday",
                "day_of_month": "*",
                "month_of_year": "*",
            },
            "day_of_week",
            "funday",
        ),
        ({"preset": "custom"}, "minute", "Required for a custom schedule"),
        (
            {"keep_last": 0, "keep_hourly": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0},
            "keep_daily",
            "Keep at least one",
        ),
        ({"keep_hourly": 169}, "keep_hourly", "Keep at most 168 hours."),
        ({"keep_last": 101}, "keep_last", "Keep at most 100 last snapshots."),
        ({"keep_monthly": -1}, "keep_monthly", "greater than or equal to 0"),
    ],
)
def test_bad_schedule_input_is_shown_beside_its_field_and_nothing_is_scheduled(
    admin_client, deployment, changes, field, message
):
    response = admin_client.post(reverse("backups:schedule_create"), form_data(deployment, **changes))

    assert response.status_code == 200
    errors = field_errors(response)
    assert message in unescape(errors.get(field, "")), errors
    assert 'class="invalid-feedback d-block field-error"' in response.content.decode()
    assert not BackupSchedule.objects.exists()
    assert not PeriodicTask.objects.filter(task__startswith="backups.").exists()


def test_saving_a_schedule_keeps_its_periodic_task_in_sync_updated_in_place(admin_client, deployment):
    response = admin_client.post(reverse("backups:schedule_create"), form_data(deployment))
    schedule = BackupSchedule.objects.get()
    assert response.status_code == 302
    task = PeriodicTask.objects.get(name=schedule.periodic_task_name)
    assert (task.task, task.queue, task.enabled) == ("backups.scheduled_run", "deployment.clinic", True)
    assert json.loads(task.kwargs) == {"schedule_id": schedule.pk}
    assert (task.crontab.minute, task.crontab.hour) == ("0", "2")
    assert schedule.deployment.backup_identity.public_key.startswith("ssh-ed25519 ")

    custom = {
        "preset": "custom",
        "minute": "30",
        "hour": "1,13",
        "day_of_week": "1-5",
        "day_of_month": "*",
        "month_of_year": "*",
    }
    admin_client.post(reverse("backups:schedule_edit", args=[schedule.pk]), form_data(deployment, **custom))
    admin_client.post(reverse("backups:schedule_edit", args=[schedule.pk]), form_data(deployment, enabled=""))

    again = PeriodicTask.objects.get(name=schedule.periodic_task_name)
    assert again.pk == task.pk  # updated in place, never deleted and recreated
    assert (again.crontab.minute, again.crontab.hour, again.crontab.day_of_week) == ("0", "2", "*")
    assert again.enabled is False
    assert PeriodicTask.objects.get(name=schedule.drill_task_name).enabled is False
    schedule.refresh_from_db()
    assert schedule.enabled is False


def test_custom_crontab_fields_are_saved_and_drive_the_beat_row(admin_client, deployment):
    custom = {
        "preset": "custom",
        "minute": "30",
        "hour": "1,13",
        "day_of_week": "1-5",
        "day_of_month": "*",
        "month_of_year": "*",
    }
    admin_client.post(reverse("backups:schedule_create"), form_data(deployment, **custom))
    schedule = BackupSchedule.objects.get()
    task = PeriodicTask.objects.get(name=schedule.periodic_task_name)
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "1,13", "1-5")


def make_schedule(deployment, **fields):
    return BackupSchedule.objects.create(
        deployment=deployment,
        name=fields.pop("name", "Nightly"),
        host="nas",
        user="backup",
        remote_folder=fields.pop("remote_folder", "/srv/b"),
        **fields,
    )


def test_one_run_per_schedule_at_a_time_and_a_redelivered_message_finds_its_run_claimed(deployment):
    schedule = make_schedule(deployment)
    first = backup_start(schedule.pk, BackupRun.Trigger.SCHEDULE, task_id="delivery-1")

    assert backup_start(schedule.pk, BackupRun.Trigger.SCHEDULE, task_id="delivery-1") is None  # redelivered
    assert backup_start(schedule.pk, BackupRun.Trigger.MANUAL) is None  # another while one is queued
    BackupRun.objects.filter(pk=first.pk).update(state=BackupRun.State.RUNNING)  # a worker claimed it
    assert backup_run(first.pk) is None  # a second delivery of the run's job stops at once
    assert BackupRun.objects.get(pk=first.pk).state == BackupRun.State.RUNNING
    BackupRun.objects.filter(pk=first.pk).update(state=BackupRun.State.FAILED)
    assert (
        backup_start(schedule.pk, BackupRun.Trigger.SCHEDULE, task_id="delivery-1") is None
    )  # that delivery made its run
    assert backup_start(schedule.pk, BackupRun.Trigger.SCHEDULE, task_id="delivery-2") is not None


def test_retention_keeps_the_newest_of_each_of_the_last_days_weeks_and_months(settings):
    settings.TIME_ZONE = "UTC"
    names = [f"202611{d:02d}T0200{m:02d}Z" for d in range(1, 23) for m in (0, 30)] + [
        "20261015T020000Z", "20261001T020000Z", "20260915T020000Z", "20260815T020000Z",
    ]  # fmt: skip

    kept = keep(names, daily=3, weekly=2, monthly=3)

    assert kept == {
        "20261122T020030Z", "20261121T020030Z", "20261120T020030Z",  # 3 days
        "20261115T020030Z",  # newest of the previous ISO week (Sunday the 15th)
        "20261015T020000Z", "20260915T020000Z",  # newest of October and September
    }  # fmt: skip
    assert keep(["20261122T020000Z"], 0, 0, 0) == {"20261122T020000Z"}  # the newest always stays


def finished(schedule, state, hours_ago, **fields):
    at = timezone.now() - timedelta(hours=hours_ago)
    return BackupRun.objects.create(
        schedule=schedule,
        state=state,
        created_at=at,
        started_at=at,
        finished_at=at,
        snapshot="20261122T010000Z",
        **fields,
    )


def test_status_light_is_green_on_time_amber_late_red_failed_or_overdue(deployment):
    on_time = make_schedule(deployment, name="a")
    finished(on_time, BackupRun.State.SUCCEEDED, 10)
    late = make_schedule(deployment, name="b")
    finished(late, BackupRun.State.SUCCEEDED, 36)
    overdue = make_schedule(deployment, name="c")
    finished(overdue, BackupRun.State.SUCCEEDED, 80)
    failed = make_schedule(deployment, name="d")
    finished(failed, BackupRun.State.SUCCEEDED, 30)
    finished(failed, BackupRun.State.FAILED, 5, error="cannot reach the backup target")

    assert schedule_status(on_time)["light"] == "green"
    assert schedule_status(late)["light"] == "amber"
    assert schedule_status(overdue)["light"] == "red"
    status = schedule_status(failed)
    assert status["light"] == "red" and "cannot reach the backup target" in status["reason"]


def test_an_overdue_schedule_sends_one_alert_per_episode(deployment, mailoutbox):
    schedule = make_schedule(deployment)
    finished(schedule, BackupRun.State.SUCCEEDED, 80)

    assert backups_check_overdue() == 1
    assert backups_check_overdue() == 0

    assert len(mailoutbox) == 1 and "Backup OVERDUE" in mailoutbox[0].subject
    assert mailoutbox[0].to == ["it@clinic.test"]


def test_the_private_key_is_encrypted_at_rest_and_the_key_page_shows_each_schedule_s_confined_line_and_no_shell_line(
    admin_client, deployment
):
    from django.db import connection

    from deployments.backups.keys import ensure_identity

    identity = ensure_identity(deployment)
    rsync = make_schedule(deployment)
    borg = make_schedule(deployment, name="Off-site", kind=BackupSchedule.Kind.BORG, remote_folder="/srv/borg")
    with connection.cursor() as cursor:
        cursor.execute("SELECT private_key FROM backups_sshidentity WHERE id = %s", [identity.pk])
        raw = cursor.fetchone()[0]
    assert "OPENSSH PRIVATE KEY" not in raw and raw.startswith("gAAAA")
    assert identity.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")

    html = unescape(admin_client.get(reverse("backups:ssh_key", args=[deployment.slug])).content.decode())

    key = identity.public_key
    assert (
        f'id="authorized-keys-line-{rsync.pk}">command="/usr/bin/rrsync -no-lock /srv/b/clinic",restrict {key}<' in html
    )
    assert (
        f'id="authorized-keys-line-{borg.pk}">command="borg serve --append-only --restrict-to-path /srv/borg/clinic",'
        f"restrict {key}<"
    ) in html
    assert f'data-copy="authorized-keys-line-{rsync.pk}"' in html
    assert f">restrict {key}" not in html  # no line that would give the key a shell
    assert "mkdir -p /srv/b/clinic" in html
    assert "PRIVATE KEY" not in html


def test_days_until_the_target_disk_is_full_follow_the_growth_of_the_snapshots(deployment):
    from deployments.backups.status import growth

    schedule = make_schedule(deployment)
    gib = 1024**3
    for day in range(10):
        finished(
            schedule,
            BackupRun.State.SUCCEEDED,
            24 * (9 - day),
            snapshot_size=(50 + day) * gib,
            target_free_bytes=100 * gib,
        )

    result = growth(list(schedule.runs.all()))

    assert result["per_day"] == pytest.approx(gib, rel=0.01)
    assert result["days_left"] == pytest.approx(100, rel=0.01)


def test_the_home_dashboard_line_names_the_age_of_the_last_success_and_the_light(deployment):
    from deployments.backups.dashboard import summary

    assert summary(deployment) == ""
    schedule = make_schedule(deployment)
    assert summary(deployment) == "no successful backup yet (amber)"
    finished(schedule, BackupRun.State.SUCCEEDED, 7)

    assert summary(deployment) == "last success 7\xa0hours ago (green)"


def test_restore_from_the_web_needs_the_typed_slug_and_then_queues_a_job(admin_client, deployment):
    from portal.models import Job

    run = finished(make_schedule(deployment), BackupRun.State.SUCCEEDED, 2)
    url = reverse("backups:run_restore", args=[run.pk])

    wrong = admin_client.post(url, {"confirm": "yes"})

    assert wrong.status_code == 200
    assert "Type exactly &#x27;clinic&#x27; to restore." in wrong.content.decode()
    assert not Job.objects.exists()
    right = admin_client.post(url, {"confirm": "clinic", "snapshot": run.snapshot})
    assert right.status_code == 302
    job = Job.objects.get()
    assert (job.kind, job.target_id, job.queue) == ("backups.backup_restore", run.pk, "deployment.clinic")


def test_the_restore_page_names_at_most_twenty_damaged_files_and_counts_the_rest_in_the_box_to_tick(
    admin_client, deployment
):
    from portal.models import Job

    losses = [f"{n:02x}/{n:02x}/{n:02x}-attachment" for n in range(25)]
    run = finished(make_schedule(deployment), BackupRun.State.SUCCEEDED, 2, restore_damaged=losses)
    url = reverse("backups:run_restore", args=[run.pk])

    page = unescape(admin_client.get(url).content.decode())

    named = [rel for rel in losses if f"<li><code>{rel}</code></li>" in page]
    assert named == losses[:20] and "and 5 more." in page
    assert f"I accept losing these 25 files: {', '.join(losses[:20])} and 5 more" in page
    assert losses[20] not in page
    unticked = admin_client.post(url, {"confirm": "clinic", "snapshot": run.snapshot})
    assert unticked.status_code == 200 and "Tick the box to accept losing them" in unescape(unticked.content.decode())
    assert not Job.objects.exists()


def test_a_run_whose_worker_was_lost_is_closed_so_the_schedule_can_run_again(deployment, mailoutbox, settings):
    from deployments.backups.overdue import backups_reap_lost

    schedule = make_schedule(deployment)
    stuck = BackupRun.objects.create(
        schedule=schedule, state=BackupRun.State.RUNNING, created_at=timezone.now() - settings.JOB_LOST_AFTER * 2
    )
    assert backup_start(schedule.pk) is None

    assert backups_reap_lost() == 1

    stuck.refresh_from_db()
    assert stuck.state == BackupRun.State.FAILED and "worker running this backup was lost" in stuck.error
    assert backup_start(schedule.pk) is not None
    assert len(mailoutbox) == 1 and "Backup FAILED" in mailoutbox[0].subject
