#!/usr/bin/env python
"""Backup benchmark (issue 5): a real Orthanc holding 2,000 real DICOM instances, backed up to a
real sshd on 127.0.0.1.

Prints, side by side: plain `rsync -a` of the storage folder over the same SSH, the first backup
run (full), a second run with nothing changed, and a run after a day's new studies; with the
bytes on the wire and Orthanc's downtime. Then the issue's goals, each with OK or MISSED.

    .venv/bin/python bench/backup.py [--instances 2000] [--per-study 20] [--keep]

Then the Borg target: the portal's first and no-change runs beside `borg create` alone on the
same data over the same SSH.

Each instance is made by tests/dicomfiles.make_instance and given a 640×480 RGB frame (900 KB),
the size of a single ultrasound image as the machines send it.
"""

import argparse
import getpass
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORK = Path(tempfile.mkdtemp(prefix="bench-backup-"))
os.environ.update(
    DEBUG="1",
    PORTAL_VAR_DIR=str(WORK / "var"),
    DATABASE_URL=f"sqlite:///{WORK / 'var' / 'bench.sqlite3'}",
    DJANGO_SETTINGS_MODULE="portal.settings",
    EMAIL_URL="consolemail://",
    LOG_LEVEL="WARNING",
)
(WORK / "var").mkdir()

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from pydicom import dcmread  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from deployments.backups.keys import ensure_identity, fingerprint  # noqa: E402
from deployments.backups.models import BackupRun, BackupSchedule  # noqa: E402
from deployments.backups.run import backup_run, backup_start  # noqa: E402
from deployments.backups.ssh import ALIAS, Session, keyscan, parse_stats  # noqa: E402
from portal.files import atomic_write  # noqa: E402
from portal.templatetags.portal_tags import filesize  # noqa: E402
from tests.backups.conftest import SshServer  # noqa: E402
from tests.conftest import OrthancInstance  # noqa: E402
from tests.dicomfiles import make_instance  # noqa: E402


def ultrasound_frame(study_uid, series_uid, patient, number) -> bytes:
    ds = dcmread(
        BytesIO(make_instance(patient_id=patient, study_uid=study_uid, series_uid=series_uid, instance_number=number))
    )
    ds.Rows, ds.Columns = 480, 640
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.PixelData = os.urandom(480 * 640 * 3)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def upload(orthanc, count, per_study, patient_prefix, workers=4):
    plan = []
    for s in range(0, count, per_study):
        study, series = generate_uid(), generate_uid()
        plan += [(study, series, f"{patient_prefix}{s // per_study}", n + 1) for n in range(min(per_study, count - s))]

    def send(item):
        client = orthanc.client()
        client.upload(ultrasound_frame(*item))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(send, plan))


def plain_rsync(sshd, identity, schedule, storage, dest):
    """rsync -a of the storage folder over the same SSH (same key, same pinned host key, so through the
    same rrsync: ``dest`` is a folder name inside the schedule's confined folder)."""
    keys = WORK / "plain-ssh"
    keys.mkdir(mode=0o700)
    atomic_write(keys / "id", identity.private_key.encode(), mode=0o600)
    atomic_write(keys / "known_hosts", f"{ALIAS} {schedule.host_key}\n".encode(), mode=0o600)
    rsh = (
        f"ssh -F /dev/null -i {keys / 'id'} -p {sshd.port} -l {schedule.user} -o BatchMode=yes -o IdentitiesOnly=yes "
        f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={keys / 'known_hosts'} -o HostKeyAlias={ALIAS}"
    )
    t0 = time.monotonic()
    proc = subprocess.run(
        ["rsync", "-a", "--stats", "-e", rsh, f"{storage}/", f"127.0.0.1:{dest}/"],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.monotonic() - t0
    shutil.rmtree(keys)
    return elapsed, parse_stats(proc.stdout)["wire_bytes"]


def backup(schedule):
    t0 = time.monotonic()
    run = backup_run(backup_start(schedule.pk, BackupRun.Trigger.COMMAND).pk)
    if run.state != BackupRun.State.SUCCEEDED:
        raise SystemExit(f"backup failed: {run.error}\n{run.log_tail}")
    return time.monotonic() - t0, run


def borg_alone(sshd, repo, sources, archive):
    """`borg create` by hand, over the same SSH to the same sshd (its own key, confined the same way)."""
    keys = WORK / "borg-alone-ssh"
    if not keys.exists():
        keys.mkdir(mode=0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "id")], check=True)
        public = (keys / "id.pub").read_text().strip()
        sshd.authorize(f'command="borg serve --append-only --restrict-to-path {repo}",restrict {public}')
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(keys),
        "BORG_BASE_DIR": str(keys / "base"),
        "BORG_PASSPHRASE": "bench",
        "BORG_REPO": f"ssh://127.0.0.1{repo}",
        "BORG_RSH": (
            f"ssh -F /dev/null -i {keys / 'id'} -p {sshd.port} -l {getpass.getuser()} -o BatchMode=yes "
            f"-o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile={keys / 'known_hosts'}"
        ),
    }
    if archive == "first":
        subprocess.run(["borg", "init", "--encryption=repokey"], env=env, check=True, capture_output=True)
    t0 = time.monotonic()
    out = subprocess.run(
        ["borg", "create", "--json", "--compression=lz4", f"::{archive}", *map(str, sources)],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return time.monotonic() - t0, json.loads(out.stdout)["archive"]["stats"]["deduplicated_size"]


def borg_part(sshd, deployment, identity, storage):
    """The Borg target: the portal's first and no-change runs against `borg create` alone."""
    schedule = BackupSchedule.objects.create(
        deployment=deployment, name="bench borg", kind=BackupSchedule.Kind.BORG, host="127.0.0.1", port=sshd.port,
        user=getpass.getuser(), remote_folder=str(sshd.root / "borg"),
        host_key=BackupSchedule.objects.get(name="bench").host_key,
        host_key_fingerprint=BackupSchedule.objects.get(name="bench").host_key_fingerprint,
    )  # fmt: skip
    # The deployment's key now only runs the append-only borg serve, as on a real off-site target.
    sshd.authorized_keys.write_text(schedule.authorized_keys_line() + "\n")
    sources = [storage, deployment.config_dir]
    alone_repo = sshd.root / "borg-alone"
    alone_first = borg_alone(sshd, alone_repo, sources, "first")
    first_time, first = backup(schedule)
    alone_second = borg_alone(sshd, alone_repo, sources, "second")
    second_time, second = backup(schedule)
    rows = [
        ("borg create alone, first", *alone_first, None),
        ("portal Borg run, first", first_time, first.bytes_transferred, first.downtime),
        ("borg create alone, nothing changed", *alone_second, None),
        ("portal Borg run, nothing changed", second_time, second.bytes_transferred, second.downtime),
    ]
    print("Borg (encrypted repokey, lz4, append-only over the same ssh):")
    print(f"{'':36} {'time':>9} {'new bytes stored':>18} {'Orthanc downtime':>17}")
    for label, seconds, sent, down in rows:
        shown = "-" if down is None else f"{down:.2f} s"
        print(f"{label:36} {seconds:7.2f} s {filesize(sent):>18} {shown:>17}")
    print(
        f"  portal first run / borg create alone: {first_time / alone_first[0]:.2f}x; "
        f"no-change: {second_time / alone_second[0]:.2f}x; the portal's no-change run is "
        f"{first_time / second_time:.1f}x faster than its first"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--per-study", type=int, default=20)
    parser.add_argument("--verbose", action="store_true", help="print the log of each run")
    parser.add_argument("--keep", action="store_true", help="keep the work folder " + str(WORK))
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    # Studies turn "stable" StableAge seconds after their last instance, which Orthanc records as a
    # change: a nightly backup runs long after that. A short StableAge lets the bench wait for it.
    orthanc = OrthancInstance(WORK / "orthanc", slug="bench", extra_config={"StableAge": 3})
    sshd = SshServer(WORK / "sshd")
    try:
        orthanc.write_config()
        orthanc.start()
        sshd.start()
        deployment = orthanc.save_deployment()
        identity = ensure_identity(deployment)
        key = keyscan("127.0.0.1", sshd.port)[0]
        schedule = BackupSchedule.objects.create(
            deployment=deployment, name="bench", host="127.0.0.1", port=sshd.port, user=getpass.getuser(),
            remote_folder=str(sshd.root / "backups"), host_key=key, host_key_fingerprint=fingerprint(key),
            keep_daily=30,
        )  # fmt: skip
        # As on a real target: the folder made by its administrator, the key confined to it by rrsync.
        Path(schedule.target_folder).mkdir(parents=True)
        sshd.authorize(schedule.authorized_keys_line())
        t0 = time.monotonic()
        upload(orthanc, args.instances, args.per_study, "B")
        client = orthanc.client()
        while not all(p["IsStable"] for p in client.get_json("/patients", params={"expand": ""})):
            time.sleep(0.5)
        stats = client.statistics()
        storage = Path(deployment.storage_dir)
        storage_bytes = sum(
            p.stat().st_size for p in storage.rglob("*") if p.is_file() and not p.name.startswith("index")
        )
        print(
            f"Backup benchmark: {stats['CountInstances']} instances (640x480 RGB ultrasound frames) in "
            f"{stats['CountStudies']} studies, storage {filesize(storage_bytes)}; uploaded in {time.monotonic() - t0:.1f} s"
        )

        plain_time, plain_bytes = plain_rsync(sshd, identity, schedule, storage, "plain-rsync")
        first_time, first = backup(schedule)
        inodes = {
            p.relative_to(Path(schedule.target_folder) / first.snapshot): p.stat().st_ino
            for p in (Path(schedule.target_folder) / first.snapshot / "storage").rglob("*")
            if p.is_file()
        }
        second_time, second = backup(schedule)
        snapshot = Path(schedule.target_folder) / second.snapshot
        files = [p for p in (snapshot / "storage").rglob("*") if p.is_file()]
        linked = sum(1 for p in files if inodes.get(p.relative_to(snapshot)) == p.stat().st_ino)
        upload(orthanc, 20, 20, "NEW")  # a day's new study
        while not all(p["IsStable"] for p in client.get_json("/patients", params={"expand": ""})):
            time.sleep(0.5)
        third_time, third = backup(schedule)

        rows = [
            ("plain rsync -a over the same ssh", plain_time, plain_bytes, None),
            ("first backup run (full)", first_time, first.bytes_transferred, first.downtime),
            ("second run (nothing changed)", second_time, second.bytes_transferred, second.downtime),
            ("third run (+20 new instances)", third_time, third.bytes_transferred, third.downtime),
        ]
        print(f"{'':36} {'time':>9} {'bytes on the wire':>18} {'Orthanc downtime':>17}")
        for label, seconds, sent, down in rows:
            shown = "-" if down is None else f"{down:.2f} s"
            print(f"{label:36} {seconds:7.2f} s {filesize(sent):>18} {shown:>17}")
        stopped = [r.downtime for r in (first, second, third) if r.downtime]
        goals = [
            ("first run within 1.2x of plain rsync", f"{first_time / plain_time:.2f}x", first_time <= 1.2 * plain_time),
            (
                "second run at least 10x faster than the first",
                f"{first_time / second_time:.1f}x",
                first_time >= 10 * second_time,
            ),
            (
                "second run under 1% of the first's bytes",
                f"{100 * second.bytes_transferred / first.bytes_transferred:.3f}%",
                second.bytes_transferred < 0.01 * first.bytes_transferred,
            ),
            ("Orthanc downtime per SQLite run under 5 s", f"max {max(stopped):.2f} s", max(stopped) < 5),
        ]
        if args.verbose:
            for run in (first, second, third):
                print(f"--- log of {run.snapshot}\n{run.log_tail}")
        print("Goals:")
        for label, value, ok in goals:
            print(f"  {label:48} {value:>12}  {'OK' if ok else 'MISSED'}")
        with Session(schedule) as ssh:
            t0 = time.monotonic()
            for _ in range(5):
                ssh.listing("")  # the key runs only rrsync: the cheapest remote command is a listing
            per_command = (time.monotonic() - t0) / 5
        print(
            f"One remote rsync (through rrsync) over the open SSH connection costs {per_command:.2f} s on this "
            "target (the login shell's start-up, here root's ~/.bashrc, which Debian's bash reads for ssh "
            "commands, and rrsync's)."
        )
        print(
            f"Second snapshot: {linked} of its {len(files)} storage files are hard links to the first's (no space, no transfer)."
        )
        borg_part(sshd, deployment, identity, storage)
    finally:
        orthanc.stop()
        sshd.stop()
        if not args.keep:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
