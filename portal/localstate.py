"""Local state (var/: the SQLite database and its WAL, generated secrets) is private to the
portal's user: the folder 0700, the database files 0600."""

import os
import stat
from pathlib import Path

DB_SUFFIXES = ("", "-wal", "-shm", "-journal")


def is_local_sqlite(database: dict, var_dir) -> bool:
    """Whether the database is a SQLite file inside var/ (the local install, not PostgreSQL)."""
    if not database["ENGINE"].endswith("sqlite3"):
        return False
    return Path(var_dir).resolve() in Path(str(database["NAME"])).resolve().parents


def make_private(var_dir, db_path) -> None:
    """Folder 0700 and database files 0600: created so, and existing ones corrected."""
    var_dir = Path(var_dir)
    var_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _chmod(var_dir, 0o700)
    db_path = Path(db_path)
    if not db_path.exists():
        # SQLite gives its -wal and -shm files the database file's mode: creating the (empty,
        # valid) database 0600 here makes all three private from their first byte.
        os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY, 0o600))
    for suffix in DB_SUFFIXES:
        _chmod(Path(f"{db_path}{suffix}"), 0o600)


def _chmod(path, mode):
    try:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
