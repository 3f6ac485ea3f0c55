"""The SSH identity and host-key pinning against a real sshd."""

import getpass
import stat
from html import unescape

import pytest
from django.urls import reverse

from deployments.backups.keys import ensure_identity
from deployments.backups.models import BackupSchedule
from deployments.backups.ssh import HostKeyNotPinned, Session
from deployments.models import Deployment
from tests.backups.conftest import prepare_target


@pytest.fixture
def schedule(db, sshd):
    deployment = Deployment.objects.create(
        name="Clinic", slug="clinic", orthanc_url="http://127.0.0.1:9", service_password="x" * 24,
        config_dir="/nonexistent/config", service_kind=Deployment.ServiceKind.LOCAL,
    )  # fmt: skip
    ensure_identity(deployment)
    schedule = BackupSchedule.objects.create(
        deployment=deployment, name="NAS", host="127.0.0.1", port=sshd.port, user=getpass.getuser(),
        remote_folder=str(sshd.root / "backups"),
    )  # fmt: skip
    prepare_target(sshd, schedule)
    return schedule


def test_test_connection_shows_the_fingerprint_then_pins_it_and_logs_in_strictly(admin_client, schedule, sshd):
    with pytest.raises(HostKeyNotPinned, match="not pinned yet: use Test connection"):
        Session(schedule)

    page = unescape(admin_client.post(reverse("backups:test_connection", args=[schedule.pk])).content.decode())

    assert f'id="offered-fingerprint">{sshd.fingerprint()}<' in page
    response = admin_client.post(
        reverse("backups:pin_host_key", args=[schedule.pk]), {"fingerprint": sshd.fingerprint()}, follow=True
    )
    schedule.refresh_from_db()
    assert schedule.host_key_fingerprint == sshd.fingerprint()
    assert schedule.host_key == (
        sshd.host_key.with_suffix(".pub").read_text().split()[0]
        + " "
        + sshd.host_key.with_suffix(".pub").read_text().split()[1]
    )
    assert "pinned; logged in and the folder is writable" in unescape(response.content.decode())
    assert list((sshd.root / "backups" / "clinic").iterdir()) == []  # the write probe removed again

    again = unescape(admin_client.post(reverse("backups:test_connection", args=[schedule.pk])).content.decode())

    assert 'id="host-key-ok"' in again and 'id="login-ok"' in again
    assert "writable through rrsync" in again


def test_test_connection_says_host_key_changed_and_the_session_refuses(admin_client, schedule, sshd):
    old = sshd.fingerprint()
    admin_client.post(reverse("backups:test_connection", args=[schedule.pk]))
    admin_client.post(reverse("backups:pin_host_key", args=[schedule.pk]), {"fingerprint": old})
    sshd.stop()
    sshd.new_host_key()
    sshd.start()

    page = unescape(admin_client.post(reverse("backups:test_connection", args=[schedule.pk])).content.decode())

    assert 'id="host-key-changed"' in page and "Host key changed." in page
    assert sshd.fingerprint() in page and old in page
    schedule.refresh_from_db()
    assert schedule.host_key_fingerprint == old  # nothing changes until the admin confirms
    from deployments.backups.ssh import HostKeyChanged

    with pytest.raises(HostKeyChanged, match="host key changed"):
        with Session(schedule):
            pass


def test_a_pin_request_with_another_fingerprint_than_offered_is_refused(admin_client, schedule):
    admin_client.post(reverse("backups:test_connection", args=[schedule.pk]))

    response = admin_client.post(
        reverse("backups:pin_host_key", args=[schedule.pk]), {"fingerprint": "SHA256:forged"}, follow=True
    )

    assert "not the one last offered" in unescape(response.content.decode())
    schedule.refresh_from_db()
    assert schedule.host_key == ""


def test_the_private_key_is_on_disk_0600_only_until_the_connection_authenticates(admin_client, schedule, sshd):
    admin_client.post(reverse("backups:test_connection", args=[schedule.pk]))
    admin_client.post(reverse("backups:pin_host_key", args=[schedule.pk]), {"fingerprint": sshd.fingerprint()})
    schedule.refresh_from_db()

    with Session(schedule) as session:
        folder = session.dir
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "known_hosts").stat().st_mode) == 0o600
        assert not (folder / "id_ed25519").exists()
        assert session.listing() == []  # through rrsync: the confined folder, empty

    assert not folder.exists()


def test_test_connection_to_a_closed_port_says_so(admin_client, schedule, sshd):
    sshd.stop()

    page = unescape(admin_client.post(reverse("backups:test_connection", args=[schedule.pk])).content.decode())

    assert 'id="connection-error"' in page and f"no SSH server answered at 127.0.0.1:{sshd.port}" in page
