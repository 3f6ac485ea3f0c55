from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from deployments.status import free_disk
from portal import audit, jobs
from portal.models import AuditEntry, Job
from portal.roles import require_perm
from portal.sites import deployment_or_404, deployments_of, scoped

from .charts import run_charts
from .forms import BackupScheduleForm, RestoreForm, shown_losses
from .keys import ensure_identity, make_identity
from .models import BackupRun, BackupSchedule, SshIdentity
from .periodic import describe, sync_schedule, unschedule
from .run import backup_start
from .ssh import Session, SshError, offered_key
from .status import growth, schedule_status


@require_perm("backups.view_backupschedule")
def dashboard(request):
    cards = []
    for schedule in scoped(BackupSchedule.objects.select_related("deployment"), request.user):
        runs = list(schedule.runs.all()[:60])
        cards.append(
            {
                **schedule_status(schedule, runs=runs),
                "recent": runs[:5],
                "charts": run_charts(runs),
                "growth": growth(runs),
                "source_disk": free_disk(schedule.deployment.storage_dir),
            }
        )
    return render(request, "backups/dashboard.html", {"cards": cards})


@require_perm("backups.view_backupschedule")
def schedule_detail(request, pk):
    schedule = get_object_or_404(scoped(BackupSchedule.objects.select_related("deployment"), request.user), pk=pk)
    runs = list(schedule.runs.all()[:200])
    page = Paginator(schedule.runs.all(), 20).get_page(request.GET.get("page"))
    return render(
        request,
        "backups/schedule_detail.html",
        {
            "schedule": schedule,
            "status": schedule_status(schedule, runs=runs),
            "page": page,
            "charts": run_charts(runs),
            "growth": growth(runs),
            "source_disk": free_disk(schedule.deployment.storage_dir),
            "cron_text": describe(schedule.cron),
            "identity": SshIdentity.objects.filter(deployment=schedule.deployment).first(),
        },
    )


RUN_SITE = "schedule__deployment"


def _schedule_form(request, **kwargs):
    form = BackupScheduleForm(request.POST or None, **kwargs)
    form.fields["deployment"].queryset = deployments_of(request.user)  # only the account's sites
    return form


def _save_schedule(request, form):
    with transaction.atomic():
        schedule = audit.save_form(request, form)
        ensure_identity(schedule.deployment)
        sync_schedule(schedule)
    return schedule


@require_perm("backups.add_backupschedule")
def schedule_create(request):
    initial = {}
    if request.GET.get("deployment"):
        initial["deployment"] = deployments_of(request.user).filter(slug=request.GET["deployment"]).first()
    form = _schedule_form(request, initial=initial)
    if request.method == "POST" and form.is_valid():
        schedule = _save_schedule(request, form)
        messages.success(
            request,
            f"Schedule {schedule.name} saved. On the target, create its folder and add the authorized_keys line "
            "shown below (it confines the key to that folder), then use Test connection to pin the target's host key.",
        )
        return redirect(schedule)
    return render(request, "backups/schedule_form.html", {"form": form})


@require_perm("backups.change_backupschedule")
def schedule_edit(request, pk):
    schedule = get_object_or_404(scoped(BackupSchedule.objects, request.user), pk=pk)
    target = (schedule.host, schedule.port)
    form = _schedule_form(request, instance=schedule)
    if request.method == "POST" and form.is_valid():
        if (form.cleaned_data["host"], form.cleaned_data["port"]) != target:
            # Another server: its key must be checked and pinned afresh.
            form.instance.host_key = form.instance.host_key_fingerprint = ""
            form.instance.host_key_pinned_at = None
        schedule = _save_schedule(request, form)
        messages.success(request, "Saved.")
        return redirect(schedule)
    return render(request, "backups/schedule_form.html", {"form": form, "schedule": schedule})


@require_POST
@require_perm("backups.delete_backupschedule")
def schedule_delete(request, pk):
    schedule = get_object_or_404(scoped(BackupSchedule.objects, request.user), pk=pk)
    unschedule(schedule)
    audit.delete(request, schedule)
    messages.success(request, "Schedule deleted. Its snapshots stay on the target.")
    return redirect("backups:dashboard")


@require_POST
@require_perm("backups.run_backupschedule")
def schedule_run(request, pk):
    schedule = get_object_or_404(scoped(BackupSchedule.objects.select_related("deployment"), request.user), pk=pk)
    run = backup_start(schedule.pk, BackupRun.Trigger.MANUAL)
    if run is None:
        messages.warning(request, "A backup of this schedule is already queued or running.")
        return redirect(schedule)
    jobs.enqueue("backups.backup_run", run.pk, queue=schedule.deployment.queue, user=request.user)
    audit.record(request, AuditEntry.Action.ACTION, schedule, summary="backup run requested")
    messages.info(request, "Backup queued: it appears in the history below when the worker runs it.")
    return redirect(schedule)


# Network calls of several seconds: no database transaction held open around them.
@transaction.non_atomic_requests
@require_POST
@require_perm("backups.run_backupschedule")
def test_connection(request, pk):
    schedule = get_object_or_404(scoped(BackupSchedule.objects.select_related("deployment"), request.user), pk=pk)
    context = {"schedule": schedule}
    if schedule.is_local:  # no host key: the disk is checked (and set up the first time) instead
        context["login"] = _try_login(schedule)
        return render(request, "backups/test_connection.html", context)
    try:
        offered = offered_key(schedule)
    except SshError as exc:
        context["error"] = str(exc)
        return render(request, "backups/test_connection.html", context)
    BackupSchedule.objects.filter(pk=schedule.pk).update(
        offered_host_key=offered["key"], offered_fingerprint=offered["fingerprint"]
    )
    context["offered"] = offered
    if schedule.host_key and not offered["changed"]:
        context["login"] = _try_login(schedule)
    return render(request, "backups/test_connection.html", context)


def _try_login(schedule):
    if schedule.is_borg:
        from .borg import try_login

        return try_login(schedule)
    try:
        # The session checks that the key reaches rrsync confined to the folder, and that it exists.
        with Session(schedule) as ssh:
            ssh.check_writable()
        return {"ok": True, "free": None, "note": "writable through rrsync (which cannot tell the free space)"}
    except SshError as exc:
        return {"ok": False, "error": str(exc)}


@transaction.non_atomic_requests
@require_POST
@require_perm("backups.change_backupschedule")
def pin_host_key(request, pk):
    schedule = get_object_or_404(scoped(BackupSchedule.objects, request.user), pk=pk)
    fingerprint = request.POST.get("fingerprint", "")
    if not schedule.offered_host_key or fingerprint != schedule.offered_fingerprint:
        messages.error(request, "The confirmed fingerprint is not the one last offered: run Test connection again.")
        return redirect(schedule)
    with transaction.atomic():  # the change and its audit entry together; the login test below stays outside
        before = audit.snapshot(schedule)
        schedule.host_key, schedule.host_key_fingerprint = schedule.offered_host_key, schedule.offered_fingerprint
        schedule.host_key_pinned_at = timezone.now()
        schedule.offered_host_key = schedule.offered_fingerprint = ""
        schedule.save()
        audit.record(
            request, AuditEntry.Action.UPDATE, schedule, before, audit.snapshot(schedule), summary="host key pinned"
        )
    login = _try_login(schedule)
    if login["ok"]:
        messages.success(
            request, f"Host key {schedule.host_key_fingerprint} pinned; logged in and the folder is writable."
        )
    else:
        messages.warning(request, f"Host key pinned, but the login failed: {login['error']}")
    return redirect(schedule)


@require_perm("backups.view_sshidentity")
def ssh_key(request, slug):
    deployment = deployment_or_404(request, slug)
    identity = SshIdentity.objects.filter(deployment=deployment).first()
    return render(request, "backups/ssh_key.html", {"deployment": deployment, "identity": identity})


@require_POST
@require_perm("backups.add_sshidentity", "backups.change_sshidentity")
def ssh_key_generate(request, slug):
    deployment = deployment_or_404(request, slug)
    existed = SshIdentity.objects.filter(deployment=deployment).exists()
    identity = make_identity(deployment)
    audit.record(
        request,
        AuditEntry.Action.UPDATE if existed else AuditEntry.Action.CREATE,
        identity,
        summary=f"backup key {'replaced' if existed else 'created'}: {identity.fingerprint}",
    )
    messages.success(request, "New key pair made: put each schedule's new line into its target's authorized_keys.")
    return redirect("backups:ssh_key", slug=slug)


@require_perm("backups.view_backuprun")
def run_detail(request, pk):
    run = get_object_or_404(
        scoped(BackupRun.objects.select_related("schedule__deployment"), request.user, RUN_SITE), pk=pk
    )
    related = Job.objects.filter(kind__startswith="backups.", target_id=run.pk)[:10]
    return render(request, "backups/run_detail.html", {"run": run, "jobs": related})


@require_POST
@require_perm("backups.verify_backuprun")
def run_verify(request, pk):
    run = get_object_or_404(
        scoped(BackupRun.objects.select_related("schedule__deployment"), request.user, RUN_SITE), pk=pk
    )
    if not run.restorable:
        messages.error(request, "This run has no snapshot to verify.")
        return redirect(run)
    jobs.enqueue("backups.backup_verify", run.pk, queue=run.deployment.queue, user=request.user)
    audit.record(request, AuditEntry.Action.ACTION, run, summary="restore drill requested")
    messages.info(request, "Restore drill queued.")
    return redirect(run)


@require_perm("backups.restore_backuprun")
def run_restore(request, pk):
    run = get_object_or_404(
        scoped(BackupRun.objects.select_related("schedule__deployment"), request.user, RUN_SITE), pk=pk
    )
    if not run.restorable:
        messages.error(request, "This run has no snapshot to restore.")
        return redirect(run)
    # What the restore's pre-check last found damaged or missing: named here, accepted only by name.
    losses = list(run.restore_damaged or [])
    form = RestoreForm(request.POST or None, expected=run.deployment.slug, snapshot=run.snapshot, losses=losses)
    if request.method == "POST" and form.is_valid():
        BackupRun.objects.filter(pk=run.pk).update(restore_accepted=losses)
        jobs.enqueue("backups.backup_restore", run.pk, queue=run.deployment.queue, user=request.user)
        summary = f"restore of {run.snapshot} requested" + (
            f", accepting {len(losses)} damaged files as lost" if losses else ""
        )
        audit.record(request, AuditEntry.Action.ACTION, run, summary=summary)
        messages.warning(request, f"Restore of {run.snapshot} queued: Orthanc stops briefly while it runs.")
        return redirect(run)
    shown, more = shown_losses(losses)
    return render(
        request,
        "backups/restore_confirm.html",
        {"run": run, "form": form, "losses": losses, "shown": shown, "more": more},
    )
