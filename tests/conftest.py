"""Fixtures that start the real parts: Orthanc, Redis, a Celery worker, Chromium.

Each starts on free loopback ports under a temporary folder and stops afterwards. A missing
component fails the test with the setup step to run, never a skip.
"""

import functools
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group, User

from deployments.demo import local_deployment, make_folders
from deployments.models import Deployment
from deployments.ports import free_port  # noqa: F401  (the suite imports it from here)
from deployments.push import write_files
from deployments.render import probe_of, render_deployment
from deployments.service import LocalService
from portal.roles import ADMIN, SCHEDULER, VIEWER

ROOT = Path(__file__).resolve().parent.parent
# Under `make mutation` the tests run in mutmut's copy of the project (mutants/), whose
# deployments/worklist_server.py calls into mutmut, which Orthanc's Python does not have.
UNDER_MUTMUT = os.environ.get("MUTANT_UNDER_TEST") is not None
WORKLIST_SERVER = (ROOT.parent if UNDER_MUTMUT else ROOT) / "deployments" / "worklist_server.py"
SETUP_HINT = "run 'make test' once (it installs the Debian packages and the .venv), or: apt-get install {}"


def require_binary(path_or_name, package):
    found = shutil.which(path_or_name) or (Path(path_or_name).exists() and path_or_name)
    if not found:
        pytest.fail(f"{path_or_name} is missing: " + SETUP_HINT.format(package), pytrace=False)
    return found


def wait_for(predicate, timeout=10.0, interval=0.1, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


def pytest_collection_modifyitems(config, items):
    """Under `make mutation`, mutmut runs a mutant's tests with -x: the ones without an Orthanc
    go first, so a mutant they catch costs no Orthanc start."""
    if UNDER_MUTMUT:
        items.sort(key=lambda item: item.get_closest_marker("orthanc") is not None)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Each process its own SQLite test database. A process forked after the settings were read
    (mutmut's workers in `make mutation`) would otherwise share its parent's file."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        db["TEST"]["NAME"] = str(Path(settings.VAR_DIR) / f"test-{os.getpid()}.sqlite3")


@pytest.fixture(scope="session", autouse=True)
def _orthanc_runs_the_worklist_server_as_written():
    """The Orthancs of the tests run deployments/worklist_server.py as written, also in mutmut's
    copy (its mutants are judged in a real Orthanc by tests/mutation/orthanc.py instead)."""
    if not UNDER_MUTMUT:
        yield
        return
    import deployments.render

    written = WORKLIST_SERVER.read_bytes()
    original = deployments.render.worklist_script
    deployments.render.worklist_script = lambda: written
    yield
    deployments.render.worklist_script = original


# ---------------------------------------------------------------- staff users per role


def _user(username, role):
    user = User.objects.create_user(username, password=f"{username}-Pa55word!")
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def admin_user(db):
    return _user("ada_admin", ADMIN)


@pytest.fixture
def scheduler_user(db):
    return _user("sam_scheduler", SCHEDULER)


@pytest.fixture
def viewer_user(db):
    return _user("vic_viewer", VIEWER)


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


# ---------------------------------------------------------------- Orthanc


class OrthancInstance:
    """A real Orthanc (Debian package) configured by the portal's own renderer."""

    def __init__(self, base: Path, slug="test", **fields):
        self.base = base
        self.users, self.modalities = [], []
        self.deployment = local_deployment(base, name=f"Test clinic {slug}", slug=slug, dicom_aet="TESTPACS", **fields)
        self.url = self.deployment.orthanc_url
        self.auth = (self.deployment.service_username, self.deployment.service_password)
        self.service = LocalService(self.deployment.config_dir, self.url, self.auth)

    def write_config(self):
        folder = Path(self.deployment.config_dir)
        make_folders(self.deployment)
        files = render_deployment(
            self.deployment, self.users, self.modalities, plugins_dir=settings.ORTHANC_PLUGINS_DIR
        )
        write_files(folder, files)
        self.probe = probe_of(files)  # what the push asks the running configuration with

    def start(self):
        self.service.start(wait=20)

    def stop(self):
        self.service.stop()

    def save_deployment(self):
        """The same Orthanc as a Deployment row (for tests with database access)."""
        existing = Deployment.objects.filter(slug=self.deployment.slug).first()
        if existing:
            return existing
        self.deployment.pk = None
        self.deployment._state.adding = True
        self.deployment.save()
        for row in self.users + self.modalities:
            row.pk = None
            row._state.adding = True
            row.deployment = self.deployment
            row.save()
        return self.deployment

    def client(self):
        from deployments.orthanc import OrthancClient

        return OrthancClient(self.url, *self.auth, timeout=5)


@functools.cache
def installed_orthanc_version() -> str:
    """The version of the Orthanc the tests run, as ``Orthanc --version`` prints it ("1.10.1" on
    Debian 12, "1.12.7" on Debian 13): tests ask it instead of naming a release."""
    binary = require_binary(settings.ORTHANC_BINARY, "orthanc")
    first = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()
    # "Orthanc 1.10.1", or "/usr/sbin/Orthanc 1.12.7" (1.12 prints its path).
    return first[0].split()[-1] if first else ""


@pytest.fixture
def orthanc_version():
    return installed_orthanc_version()


@pytest.fixture
def orthanc_factory(tmp_path):
    require_binary(settings.ORTHANC_BINARY, "orthanc")
    started = []

    def make(slug="test", start=True, **fields):
        instance = OrthancInstance(tmp_path / f"orthanc-{slug}-{uuid.uuid4().hex[:6]}", slug=slug, **fields)
        instance.write_config()
        if start:
            instance.start()
        started.append(instance)
        return instance

    yield make
    for instance in started:
        instance.stop()


@pytest.fixture
def orthanc(orthanc_factory):
    return orthanc_factory()


@pytest.fixture
def orthanc_deployment(orthanc, transactional_db):
    return orthanc.save_deployment()


# ---------------------------------------------------------------- Redis and Celery


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """Our own Redis on the port that conftest.py put into CELERY_BROKER_URL."""
    binary = require_binary("redis-server", "redis-server")
    url = settings.CELERY_BROKER_URL
    port = urlsplit(url).port
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    wait_for(lambda: _redis_ping(url), message=f"redis-server on port {port}")
    server = {"url": url, "port": port, "proc": proc, "folder": folder, "binary": binary}
    yield server
    # A test may have restarted it: stop the one that runs now.
    server["proc"].terminate()
    server["proc"].wait(10)


def _redis_ping(url):
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return False


def test_database_url():
    """The DATABASE_URL under which another process sees the test database."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db["USER"] or ""
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    at = "@" if user else ""
    return f"postgres://{user}{password}{at}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


class Worker:
    def __init__(self, proc, name, log):
        self.proc, self.name, self.log = proc, name, log

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)

    def output(self):
        return self.log.read_text(errors="replace")


@pytest.fixture
def celery_worker_factory(redis_server, transactional_db, tmp_path):
    """Start real `celery worker` processes on given queues, against the test database."""
    workers = []

    def start(queues=("portal",), concurrency=1, env=None):
        name = f"test-{uuid.uuid4().hex[:8]}@localhost"
        log = tmp_path / f"{name}.log"
        environ = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "CELERY_BROKER_URL": redis_server["url"],
            "DEBUG": "1",
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            **(env or {}),
        }
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "portal",
                    "worker",
                    "-n",
                    name,
                    "-Q",
                    ",".join(queues),
                    "--pool",
                    "prefork",
                    "--concurrency",
                    str(concurrency),
                    "-l",
                    "info",
                    "--without-mingle",
                    "--without-gossip",
                ],
                cwd=ROOT,
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(proc, name, log)
        workers.append(worker)
        wait_for(lambda: "ready." in worker.output() or proc.poll() is not None, timeout=30, message="celery worker")
        if proc.poll() is not None:
            pytest.fail(f"the celery worker exited:\n{worker.output()[-3000:]}", pytrace=False)
        return worker

    yield start
    for worker in workers:
        if worker.proc.poll() is None:
            worker.proc.terminate()
            try:
                worker.proc.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()


# ---------------------------------------------------------------- browser


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    require_binary(CHROMIUM, "chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: run 'make test' (it installs the .venv)", pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15000)
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.console_errors = errors
    yield page
    context.close()


def browser_login(page, live_server, username, password):
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
