"""Atomic file writes: a reader (Orthanc, its worklist plugin) sees the old file or the new
one, never half of one."""

import ctypes
import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def atomic_write(path, data: bytes, mode: int = 0o644, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync, rename.

    The temporary file is created with ``mode`` from the start, so a secret is never readable
    by others, not even for an instant. A caller writing many files into one folder passes
    ``sync_dir=False`` and calls ``fsync_dir`` once at the end, before it records them as written.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync_dir:
        fsync_dir(path.parent)


def fsync_dir(folder) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(folder) -> None:
    """Flush every written file of the filesystem holding ``folder`` in one call (Linux)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), "syncfs failed")
    except (AttributeError, OSError):
        os.sync()  # no syncfs here: flush everything instead
    finally:
        os.close(fd)


def atomic_write_many(folder, files: dict[str, bytes], mode: int = 0o644) -> dict[str, OSError]:
    """``atomic_write`` for many files of one folder at once, with one flush instead of one per
    file: write every temporary file, flush the filesystem, then rename each into place.

    Readers still see old or new files, never partial ones. Returns the files that could not be
    written, with their error; the others are in place and durable when it returns.
    """
    folder = Path(folder)
    temps, failed = {}, {}

    def write_temp(item):
        name, data = item
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
            try:
                os.fchmod(fd, mode)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            except BaseException:
                os.unlink(tmp)
                raise
            temps[name] = tmp
        except OSError as exc:
            failed[name] = exc

    for item in files.items():
        write_temp(item)
    try:
        _syncfs(folder)
    except BaseException:
        for tmp in temps.values():
            os.unlink(tmp)
        raise
    for name, tmp in temps.items():
        os.replace(tmp, folder / name)
    fsync_dir(folder)
    return failed


@contextmanager
def file_lock(path, mode: int = 0o600):
    """An exclusive lock held on ``path`` (created if missing) across processes of this host.

    The kernel drops it when the holder dies, so a killed worker never leaves it taken.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
