"""Availability on the embedded database: long work and silent Orthancs never make a save wait.

The portal runs as `make run` runs it (``manage.py runserver``, one thread a request) in its own
process, against the suite's database: on SQLite that is a file, so its locks are the real ones.
"""

import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
from django.db import connection, connections
from django.http import JsonResponse
from django.urls import path
from django.utils import timezone

from deployments.models import Deployment, Modality
from deployments.tasks import check_all_task
from portal.roles import ADMIN, SCHEDULER
from tests.conftest import ROOT, _user, free_port, test_database_url, wait_for
from worklists.models import WorklistEntry

pytestmark = pytest.mark.django_db(transaction=True)

IMPORT_ROWS = 5000
SILENT_ORTHANCS = 7
SAVE_LIMIT = 1.0  # seconds


@pytest.fixture
def silent_orthancs():
    """Loopback addresses that take a connection and never answer: a request waits for its timeout."""
    sockets = []
    for _ in range(SILENT_ORTHANCS):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(0)  # never accepted: the kernel queues one connection, the rest hang in SYN
        sockets.append(sock)
    yield [f"http://127.0.0.1:{sock.getsockname()[1]}" for sock in sockets]
    for sock in sockets:
        sock.close()


@pytest.fixture
def portal_server(tmp_path):
    """The portal's web server in its own process, on the test database."""
    port = free_port()
    log = tmp_path / "runserver.log"
    environ = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        # The suite's settings: the portal's own plus the fast password hasher the test users have.
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DEBUG": "1",
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(url) or proc.poll() is not None, timeout=30, message="the portal's web server")
    if proc.poll() is not None:
        pytest.fail(f"the web server exited:\n{log.read_text(errors='replace')[-3000:]}", pytrace=False)
    yield url
    proc.terminate()
    proc.wait(15)


def _answers(url):
    try:
        return requests.get(f"{url}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _login(url, username):
    session = requests.Session()
    session.get(f"{url}/accounts/login/", timeout=10)
    response = session.post(
        f"{url}/accounts/login/",
        data={
            "username": username,
            "password": f"{username}-Pa55word!",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text[:2000]
    return session


def _clinic(tmp_path):
    deployment = Deployment.objects.create(
        name="Availability clinic",
        slug="available",
        orthanc_url="http://127.0.0.1:9",
        service_password="x" * 24,
        config_dir=str(tmp_path / "config"),
        storage_dir=str(tmp_path / "storage"),
        worklists_dir=str(tmp_path / "worklists"),
    )
    station = Modality.objects.create(
        deployment=deployment, name="us1", aet="US1", host="127.0.0.1", port=104, allow_find_worklist=True
    )
    return deployment, station


def _csv(rows, day):
    lines = ["patient_id,family_name,given_name,birth_date,sex,scheduled_date,scheduled_time,station"]
    for n in range(rows):
        minutes = n % (12 * 60)
        lines.append(f"IMP{n:05d},Peeters,An{n},1990-01-01,F,{day},{7 + minutes // 60:02d}:{minutes % 60:02d},US1")
    return "\n".join(lines) + "\n"


def _timed(results, name, call):
    start = time.monotonic()
    try:
        response = call()
        results[name] = (response.status_code, time.monotonic() - start, response.text[-500:])
    except requests.RequestException as exc:
        results[name] = (None, time.monotonic() - start, str(exc))


def _in_background(results, name, call):
    thread = threading.Thread(target=_timed, args=(results, name, call))
    thread.start()
    return thread


def _periodic_check(results):
    """The periodic status task, as beat runs it: it asks every Orthanc and records what it saw."""
    start = time.monotonic()
    try:
        check_all_task()
        results["check"] = (200, time.monotonic() - start, "")
    except Exception as exc:  # reported with the figures
        results["check"] = (None, time.monotonic() - start, str(exc))
    finally:
        connections.close_all()  # this thread's own connection


def _post(session, url, data):
    return session.post(
        url, data={**data, "csrfmiddlewaretoken": session.cookies["csrftoken"]}, allow_redirects=False, timeout=600
    )


def _desk_entry(deployment, station, n, day):
    return {
        "d": deployment.slug,
        "patient_id": f"DESK{n}",
        "family_name": "Janssens",
        "given_name": "Luc",
        "birth_date": "1985-05-06",
        "sex": "M",
        "station": station.pk,
        "scheduled_date": day,
        "scheduled_time": "12:00",
        "requested_procedure_description": "Thyroid",
        "modality": "US",
    }


def test_a_schedulers_save_answers_in_under_a_second_during_a_big_import_and_a_refresh_with_silent_orthancs(
    portal_server, silent_orthancs, tmp_path
):
    deployment, station = _clinic(tmp_path)
    for n, url in enumerate(silent_orthancs):
        Deployment.objects.create(
            name=f"Silent site {n}", slug=f"silent-{n}", orthanc_url=url, service_password="x" * 24, config_dir="/x"
        )
    _user("sam_scheduler", SCHEDULER)
    _user("ivy_importer", SCHEDULER)
    _user("ada_admin", ADMIN)
    desk, importer, viewer = (_login(portal_server, name) for name in ("sam_scheduler", "ivy_importer", "ada_admin"))
    day = timezone.localdate().isoformat()
    cards = f"{portal_server}/dashboard/cards/"
    background = {}

    running = [
        _in_background(
            background,
            "import",
            lambda: _post(
                importer,
                f"{portal_server}/worklists/import/?d={deployment.slug}",
                {"d": deployment.slug, "text": _csv(IMPORT_ROWS, day), "confirm": "1"},
            ),
        ),
        _in_background(background, "refresh", lambda: viewer.get(cards, headers={"HX-Request": "true"}, timeout=120)),
        threading.Thread(target=_periodic_check, args=(background,)),
    ]
    running[-1].start()
    time.sleep(0.5)  # the import is reading its file, the check waits on the silent Orthancs

    saves = []  # (status, seconds, text, while the import was writing)
    while running[0].is_alive() or len(saves) < 3:
        timing = {}
        _timed(
            timing,
            "save",
            lambda: _post(desk, f"{portal_server}/worklists/new/", _desk_entry(deployment, station, len(saves), day)),
        )
        written = WorklistEntry.objects.filter(deployment=deployment, patient__patient_id__startswith="IMP").count()
        saves.append((*timing["save"], 0 < written < IMPORT_ROWS))
        time.sleep(0.2)
    for thread in running:
        thread.join(600)  # the import of 5,000 rows took over 120 s on a loaded machine

    figures = (
        f"saves: {len(saves)} ({sum(s[3] for s in saves)} while the import was writing), "
        f"slowest {max(s[1] for s in saves):.3f} s, answers {sorted({s[0] for s in saves}, key=str)}; "
        + "; ".join(f"{name} {status} in {seconds:.2f} s" for name, (status, seconds, _) in sorted(background.items()))
    )
    print(figures)
    for status, seconds, text, _ in saves:
        assert status in (200, 302), f"{figures}\n{text}"
        assert seconds < SAVE_LIMIT, figures
    for name, (status, _, text) in background.items():
        assert status == (302 if name == "import" else 200), f"{figures}\n{name}: {text}"
    assert any(while_writing for *_, while_writing in saves), f"no save while the import was writing: {figures}"
    assert WorklistEntry.objects.filter(deployment=deployment).count() == IMPORT_ROWS + len(saves)
    # What the check recorded is what the page shows, with its age.
    page = viewer.get(cards, timeout=10).text
    assert page.count('data-state="down"') == SILENT_ORTHANCS + 1, page  # the clinic's own Orthanc is not running
    # Seconds, or minutes when a loaded machine made the check itself take long.
    assert len(re.findall(r"Checked \d+ (?:s|min) ago", page)) == SILENT_ORTHANCS + 1, page


def _in_transaction(request):
    return JsonResponse({"in_transaction": connection.in_atomic_block})


urlpatterns = [path("probe/", _in_transaction)]


def test_a_page_view_runs_outside_a_transaction_and_a_post_inside_one(client, settings):
    """On SQLite a transaction holds the write lock: a page that only reads must not take it."""
    settings.ROOT_URLCONF = __name__

    assert client.get("/probe/").json() == {"in_transaction": False}
    assert client.head("/probe/").status_code == 200
    assert client.post("/probe/").json() == {"in_transaction": True}
