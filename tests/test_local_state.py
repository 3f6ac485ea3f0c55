"""Local state is private to the portal's user, and the secrets are checked at start: both seen
by running ``manage.py`` as ``make run`` and an operator do, in a subprocess."""

import ast
import os
import sqlite3
import stat
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from tests.conftest import ROOT
from tests.test_compose import example_env


def manage(var_dir, *args, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "FIELD_ENCRYPTION_KEY")}
    environ.update({"DJANGO_SETTINGS_MODULE": "portal.settings", "DEBUG": "1", "PORTAL_VAR_DIR": str(var_dir), **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=300
    )


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# Prints the modes of var/'s files while a connection holds the database open (WAL and SHM exist).
MODES_WHILE_OPEN = (
    "import os, stat; from pathlib import Path; from django.db import connection; "
    "connection.cursor().execute('SELECT count(*) FROM django_migrations'); "
    "print({p.name: stat.S_IMODE(p.stat().st_mode) for p in Path(os.environ['PORTAL_VAR_DIR']).iterdir()})"
)


def test_after_a_migrate_into_a_fresh_var_dir_the_database_and_its_wal_are_private(tmp_path):
    var = tmp_path / "var"

    migrated = manage(var, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    shell = manage(var, "shell", "-c", MODES_WHILE_OPEN)
    assert shell.returncode == 0, shell.stderr

    modes = ast.literal_eval(shell.stdout.strip().splitlines()[-1])
    assert mode(var) == 0o700
    for name in ("portal.sqlite3", "portal.sqlite3-wal", "portal.sqlite3-shm", "dev-secret_key"):
        assert modes[name] == 0o600, f"{name}: {modes[name]:04o}"


def test_existing_local_state_readable_by_others_is_made_private_at_start(tmp_path):
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    os.chmod(var, 0o755)  # noqa: S103 - the very mode under test
    db = sqlite3.connect(var / "portal.sqlite3")  # as an older install left it: 0644, WAL 0644
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x)")
    db.commit()
    os.chmod(var / "portal.sqlite3", 0o644)
    os.chmod(var / "portal.sqlite3-wal", 0o644)

    result = manage(var, "check")

    db.close()
    assert result.returncode == 0, result.stderr
    assert mode(var) == 0o700
    assert mode(var / "portal.sqlite3") == 0o600


# ---------------------------------------------------------------- keys checked at start

GOOD_SECRET = "a" * 20 + "-Qz7" + "b" * 30
EXAMPLE = example_env()


@pytest.mark.parametrize(
    ("secret_key", "fernet_key", "refused", "words"),
    [
        (EXAMPLE["SECRET_KEY"], Fernet.generate_key().decode(), "SECRET_KEY", "placeholder from .env.example"),
        (GOOD_SECRET, EXAMPLE["FIELD_ENCRYPTION_KEY"], "FIELD_ENCRYPTION_KEY", "placeholder from .env.example"),
        (GOOD_SECRET, "not-a-fernet-key", "FIELD_ENCRYPTION_KEY", "not a valid Fernet key"),
        (GOOD_SECRET, "A" * 44, "FIELD_ENCRYPTION_KEY", "not a valid Fernet key"),  # base64, but 33 bytes
    ],
)
def test_a_placeholder_or_invalid_key_is_refused_at_start_with_one_clear_line(
    tmp_path, secret_key, fernet_key, refused, words
):
    result = manage(tmp_path / "var", "check", DEBUG="0", SECRET_KEY=secret_key, FIELD_ENCRYPTION_KEY=fernet_key)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Configuration error: {refused} ") and words in line
    assert "Generate one with: python3 -c" in line


def test_valid_keys_pass_the_check(tmp_path):
    result = manage(
        tmp_path / "var",
        "check",
        DEBUG="0",
        SECRET_KEY=GOOD_SECRET,
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
