"""Settings for the Orthanc Clinic Portal, read from the environment (django-environ).

A local install keeps its generated secrets in ``var/portal.env`` (written once by
``make run``); the process environment always wins over that file.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from portal.clientip import parse_networks
from portal.localstate import is_local_sqlite, make_private

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("PORTAL_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env(
    DEBUG=(bool, False),
    ALLOWED_HOSTS=(list, ["127.0.0.1", "localhost"]),
    CSRF_TRUSTED_ORIGINS=(list, []),
    SECURE_SSL_REDIRECT=(bool, True),
)
LOCAL_ENV_FILE = VAR_DIR / "portal.env"
if LOCAL_ENV_FILE.exists():
    environ.Env.read_env(LOCAL_ENV_FILE, overwrite=False)

DEBUG = env("DEBUG")


def _dev_secret(name, make):
    """Generate a development secret once into var/ so restarts keep sessions and data readable."""
    path = VAR_DIR / f"dev-{name.lower()}"
    if not path.exists():
        VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created 0600 from the start: it is a secret.
        with open(path, "x", encoding="ascii", opener=lambda p, f: os.open(p, f, 0o600)) as fd:
            fd.write(make())
    return path.read_text(encoding="ascii").strip()


# How to make each secret, quoted in the messages that refuse a bad one (and in .env.example).
GENERATE = {
    "SECRET_KEY": 'python3 -c "import secrets; print(secrets.token_urlsafe(50))"',
    "FIELD_ENCRYPTION_KEY": 'python3 -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"',
}
PLACEHOLDER = "CHANGE_ME"  # every value in .env.example that must be replaced contains it


def _secret(name, make):
    value = env.str(name, default="")
    if not value:
        if not DEBUG:
            raise ImproperlyConfigured(
                f"{name} is not set. Set it in the environment (production), "
                f"or set DEBUG=1 for a local install that generates it into var/."
            )
        value = _dev_secret(name, make)
    if PLACEHOLDER in value:
        raise ImproperlyConfigured(
            f"{name} is still the placeholder from .env.example. Generate one with: {GENERATE[name]}"
        )
    return value


def _fernet_key(value):
    try:
        Fernet(value.encode())
    except ValueError:  # also binascii.Error: not base64, or not 32 bytes once decoded
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY is not a valid Fernet key (32 bytes, url-safe base64). "
            f"Generate one with: {GENERATE['FIELD_ENCRYPTION_KEY']}"
        ) from None
    return value


SECRET_KEY = _secret("SECRET_KEY", lambda: secrets.token_urlsafe(50))
FIELD_ENCRYPTION_KEY = _fernet_key(_secret("FIELD_ENCRYPTION_KEY", lambda: Fernet.generate_key().decode()))
ALLOWED_HOSTS = env("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_celery_beat",
    "axes",
    "rest_framework",
    "drf_spectacular",
    "portal",
    "deployments",
    "deployments.backups",
    "worklists",
    "worklists.interfaces.mpps",
    "worklists.interfaces.hl7",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "portal.middleware.ContentSecurityPolicyMiddleware",
    "portal.middleware.NoStoreMiddleware",
    # Before anything reads request.POST (CSRF, axes): an unreadable form body is a 400, not a 500.
    "portal.middleware.FormBodyMiddleware",
    # A NUL in a query parameter is a 400 naming it, not a 500 from the database's filter.
    "portal.middleware.QueryStringMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # After every other view hook: GET, HEAD and OPTIONS run outside ATOMIC_REQUESTS' transaction.
    "portal.transactions.SafeMethodsOutsideTransactionMiddleware",
    # Last, as django-axes asks: it turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

if not DEBUG:
    # Serves the collected static files in production (gunicorn has no static handler).
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.roles.context_processor",
                "portal.jobs.context_processor",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")}
# A request that may write saves its models and their audit records in one transaction; reads and
# views that wait on the network run outside one (portal/transactions.py).
DATABASES["default"]["ATOMIC_REQUESTS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, for the test database: the Celery worker of the tests is a real
    # process and must see the same rows.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    # IMMEDIATE: a transaction takes the write lock when it begins, waiting up to `timeout` s for it,
    # instead of failing with "database is locked" at its first write. WAL: reads never wait.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# A local install keeps its database in var/: nobody but the portal's user may read it.
LOCAL_STATE_PRIVATE = is_local_sqlite(DATABASES["default"], VAR_DIR)
if LOCAL_STATE_PRIVATE:
    make_private(VAR_DIR, DATABASES["default"]["NAME"])

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Failed logins: after AXES_FAILURE_LIMIT tries a username+address pair is locked out.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_RESET_ON_SUCCESS = True
# The client's address comes from portal.clientip: X-Forwarded-For is believed only from these
# proxies (addresses or networks; empty: no proxy, REMOTE_ADDR is the client).
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
TRUSTED_PROXY_NETWORKS = parse_networks(TRUSTED_PROXIES)
AXES_CLIENT_IP_CALLABLE = "portal.clientip.client_ip"
AXES_VERBOSE = False

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.str("TIME_ZONE", default="Europe/Brussels")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.str("STATIC_ROOT", default=str(VAR_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="portal@localhost")
ADMINS_EMAILS = env.list("ALERT_EMAILS", default=[])

# Security headers. Content-Security-Policy comes from portal.middleware.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = 8 * 3600
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env("SECURE_SSL_REDIRECT")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # Behind the nginx TLS front (docker-compose.yml) the scheme arrives in this header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # The health endpoint answers plain HTTP on the internal network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# Celery: JSON only, late acknowledgement, and a visibility timeout longer than the longest
# task so that Redis does not hand a running task to a second worker.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=30 * 60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=35 * 60)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_TASK_TIME_LIMIT + 10 * 60,
    # Give up quickly when Redis is down: the intent is in the database and the reconciler
    # sends it again; a web request must not hang on the broker.
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
# TLS to a central Redis (rediss://): the CA that signed its certificate (deployments/agent_setup.py).
CELERY_BROKER_SSL_CA = env.str("CELERY_BROKER_SSL_CA", default="")
if CELERY_BROKER_SSL_CA or CELERY_BROKER_URL.startswith("rediss://"):
    import ssl

    CELERY_BROKER_USE_SSL = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": CELERY_BROKER_SSL_CA or None}
# A site agent (deployments/agent_setup.py) consumes one queue with a Redis user that may touch only
# that queue's keys: its unacknowledged messages go to keys of its own, and it answers no broadcast
# (remote control, events) since it may not read the shared channels.
PORTAL_AGENT_QUEUE = env.str("PORTAL_AGENT_QUEUE", default="")
if PORTAL_AGENT_QUEUE:
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        unacked_key=f"unacked.{PORTAL_AGENT_QUEUE}",
        unacked_index_key=f"unacked_index.{PORTAL_AGENT_QUEUE}",
        unacked_mutex_key=f"unacked_mutex.{PORTAL_AGENT_QUEUE}",
        # An agent waits for its link for as long as it is cut, rather than giving up after one try.
        max_retries=None,
        # A cut link or a restarted central Redis leaves a half-open connection that no packet
        # will ever close: these make the agent notice it, drop it and connect again (kombu checks
        # its waiting BRPOP every health_check_interval; without a socket timeout a synchronous
        # command such as an acknowledgement would wait on it forever).
        socket_timeout=env.int("AGENT_BROKER_SOCKET_TIMEOUT", default=15),
        socket_keepalive=True,
        health_check_interval=env.int("AGENT_BROKER_HEALTH_CHECK", default=10),
    )
    # A site's link may be cut for hours: its agent keeps trying to reach the central Redis.
    CELERY_BROKER_CONNECTION_MAX_RETRIES = None
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
    CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "portal"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Jobs left pending this long are sent again by the reconciler; running ones this long are
# taken as lost (their worker died) and retried.
JOB_RESEND_AFTER = timedelta(seconds=env.int("JOB_RESEND_AFTER_SECONDS", default=60))
JOB_LOST_AFTER = timedelta(seconds=CELERY_TASK_TIME_LIMIT + 60)
# How often beat asks each site's agent for a heartbeat, and after how long without one the Sites
# page says "unreachable since" (deployments/agents.py).
AGENT_HEARTBEAT_EVERY = env.int("AGENT_HEARTBEAT_EVERY", default=60)
AGENT_UNREACHABLE_AFTER = timedelta(seconds=env.int("AGENT_UNREACHABLE_AFTER", default=3 * AGENT_HEARTBEAT_EVERY))

# Orthanc binaries used by the local service control and the test harness.
ORTHANC_BINARY = env.str("ORTHANC_BINARY", default="/usr/sbin/Orthanc")
ORTHANC_PLUGINS_DIR = env.str("ORTHANC_PLUGINS_DIR", default="/usr/share/orthanc/plugins")
ORTHANC_HTTP_TIMEOUT = env.float("ORTHANC_HTTP_TIMEOUT", default=3.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"axes": {"level": "WARNING"}},
}

# How long a push waits for Orthanc to answer with its new configuration before restoring the
# previous one (Orthanc needs about 1.5 s to re-read its files).
PUSH_VERIFY_TIMEOUT = env.float("PUSH_VERIFY_TIMEOUT", default=15.0)

# --- Worklists (issue 4): the REST API for practice-management systems, its OpenAPI schema,
# and how the worklist folder is kept.
REST_FRAMEWORK = {
    # A named token per integration, stored hashed (portal/tokens.py); staff browsing the API use
    # their session.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.tokens.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["worklists.permissions.ModelPermissions"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Limits on what is read (size, nesting, storable text) and a 400, never a 500, for any refusal.
    "DEFAULT_PARSER_CLASSES": [
        "worklists.api_input.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "worklists.api_input.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Orthanc Clinic Portal API",
    "DESCRIPTION": "Schedule ultrasound patients into the modality worklist without the web interface.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}
# Entries in the folder: from this many days before today to this many days after.
WORKLISTS_WINDOW_DAYS_BEFORE = env.int("WORKLISTS_WINDOW_DAYS_BEFORE", default=1)
WORKLISTS_WINDOW_DAYS_AFTER = env.int("WORKLISTS_WINDOW_DAYS_AFTER", default=30)
# Entries not started by the end of their day plus this many hours become NO_SHOW.
WORKLISTS_NO_SHOW_GRACE_HOURS = env.int("WORKLISTS_NO_SHOW_GRACE_HOURS", default=2)
# Accession numbers (at most 16 characters): {date} is the scheduled day, {seq} a counter.
WORKLISTS_ACCESSION_PATTERN = env.str("WORKLISTS_ACCESSION_PATTERN", default="US{date:%y%m%d}{seq:04d}")
# The deployment page warns above this many files: a full folder makes the machines wait.
WORKLISTS_FOLDER_WARN_FILES = env.int("WORKLISTS_FOLDER_WARN_FILES", default=2000)
# The MPPS SCP (manage.py mpps_scp): where it listens, the AE title it answers to besides each
# deployment's own, and the most of one dataset kept for the audit (larger values are left out).
MPPS_PORT = env.int("MPPS_PORT", default=11112)
MPPS_BIND = env.str("MPPS_BIND", default="127.0.0.1")
MPPS_AE_TITLE = env.str("MPPS_AE_TITLE", default="")
MPPS_MAX_DATASET_BYTES = env.int("MPPS_MAX_DATASET_BYTES", default=64 * 1024)
# Fault injection for the test of a worker killed between writing files and recording them.
WORKLISTS_SYNC_PAUSE_AFTER_WRITE = env.float("WORKLISTS_SYNC_PAUSE_AFTER_WRITE", default=0.0)

# The HL7 v2 listener (manage.py hl7_listener; README "HL7 interface").
HL7_PORT = env.int("HL7_PORT", default=2575)
HL7_BIND = env.str("HL7_BIND", default="127.0.0.1")
HL7_MAX_BYTES = env.int("HL7_MAX_BYTES", default=1 << 20)
# A frame begun and not finished within this many seconds closes its connection.
HL7_FRAME_TIMEOUT = env.float("HL7_FRAME_TIMEOUT", default=30.0)
HL7_IDLE_TIMEOUT = env.float("HL7_IDLE_TIMEOUT", default=600.0)
HL7_MAX_CONNECTIONS = env.int("HL7_MAX_CONNECTIONS", default=50)
# Both set: MLLP over TLS (PEM files).
HL7_TLS_CERT = env.str("HL7_TLS_CERT", default="")
HL7_TLS_KEY = env.str("HL7_TLS_KEY", default="")
# MSH-18 when a message declares none: 8859/1 reads every byte (ASCII is a subset of it).
HL7_DEFAULT_CHARSET = env.str("HL7_DEFAULT_CHARSET", default="8859/1")
# Status back to the practice system: retries wait BASE, 2×BASE, 4×BASE… up to MAX seconds; after
# MAX_ATTEMPTS failures the message is a dead letter (about 1.5 hours of a receiver down by default).
HL7_STATUS_RETRY_BASE = env.float("HL7_STATUS_RETRY_BASE", default=5.0)
HL7_STATUS_RETRY_MAX = env.float("HL7_STATUS_RETRY_MAX", default=300.0)
HL7_STATUS_MAX_ATTEMPTS = env.int("HL7_STATUS_MAX_ATTEMPTS", default=20)
HL7_STATUS_TIMEOUT = env.float("HL7_STATUS_TIMEOUT", default=10.0)
