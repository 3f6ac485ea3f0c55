"""Settings of the test suite: the environment it needs, then the portal's own settings."""

import os

from deployments.ports import free_port

os.environ.setdefault("DEBUG", "1")
# The suite starts its own Redis on this port (tests/conftest.py); until then, nothing answers
# there, which is how the "Redis down" tests see it.
# Inherited by the worker processes the tests start, so they all agree on the port.
os.environ.setdefault("PORTAL_TEST_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
os.environ["CELERY_BROKER_URL"] = os.environ["PORTAL_TEST_BROKER_URL"]
os.environ["EMAIL_URL"] = "consolemail://"
# Playwright's sync API runs an event loop in the test thread; the ORM calls of the test itself
# are still synchronous.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

from portal.settings import *  # noqa: E402, F403

# Hashing is not under test: the fast hasher keeps the permission matrix quick.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # noqa: S303

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # Each run of the suite has its own test database file, so two runs in one tree (or a run and
    # a benchmark) never share it; the processes a test starts are handed its name.
    DATABASES["default"]["TEST"]["NAME"] = str(VAR_DIR / f"test-{os.getpid()}.sqlite3")  # noqa: F405
