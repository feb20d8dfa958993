"""A run directory, held by one process at a time.

:func:`hold` checks an output folder before any training (it is a folder, it can be created, it
is writable), takes an exclusive lock on ``DIR/.lock`` for the whole run, so that a second
process on the same folder stops with a clear error instead of mixing its files with the first,
and removes the temporary files a killed run left behind (``.NAME.XXXX.tmp`` from
:func:`qianyi._io.atomic_write`). The lock is an OS lock (``fcntl.flock``): it is released when
the process ends, however it ends, so a crash never leaves a stale lock.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import threading
import warnings
from pathlib import Path
from typing import Iterator

from .._io import _output_error
from ..errors import ConfigError, OutputError, QianyiWarning

LOCK_FILE = ".lock"
_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # atomic_write's temporary files (mkstemp's 8 characters), no others
_held: dict[Path, int] = {}  # folders this process holds, with a re-entry count
_guard = threading.Lock()


def _too_long(path: Path, what: str) -> OutputError:
    return OutputError(f"{what} {str(path)!r} cannot be created: a folder name in it, or the whole path, is longer "
                       f"than this file system allows; choose a shorter {what}")


def check_out(out: str | os.PathLike, what: str = "--out") -> Path:
    """``out`` as a usable folder path (created if missing); a clear error if it cannot be one."""
    if not str(out).strip():
        raise ConfigError(f"{what} is empty; give a folder name, e.g. {what} runs/my-run")
    path = Path(out).expanduser()
    try:
        exists = path.exists()
    except OSError as exc:  # (Python 3.11's exists() raises ENAMETOOLONG)
        if exc.errno == errno.ENAMETOOLONG:
            raise _too_long(path, what) from None
        raise
    if exists and not path.is_dir():
        raise OutputError(f"{what} {str(path)!r} is a file, not a folder; choose another {what}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        raise OutputError(f"{what} {str(path)!r} cannot be created: a part of that path is a file; "
                          f"choose another {what}") from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise _too_long(path, what) from None
        raise OutputError(f"{what} {str(path)!r} cannot be created ({exc.strerror}); choose another {what}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {str(path)!r} is not writable; choose another {what} or fix its permissions")
    return path


@contextlib.contextmanager
def hold(out: str | os.PathLike, what: str = "--out") -> Iterator[Path]:
    """Check ``out``, lock it for this process, clean stale temporary files; yield its path."""
    path = check_out(out, what).resolve()
    with _guard:
        if path in _held:
            _held[path] += 1
            fh = None
        else:
            fh = _lock(path, what)
            _held[path] = 1
            _clean(path)
    try:
        yield path
    finally:
        with _guard:
            _held[path] -= 1
            if not _held[path]:
                del _held[path]
        if fh is not None:
            fh.close()  # closing the file releases the lock


def _lock(path: Path, what: str):
    lock = path / LOCK_FILE
    if lock.is_symlink() or (lock.exists() and not lock.is_file()):  # a link (or FIFO) from a copied folder:
        raise OutputError(f"{what} {str(path)!r}: its lock file {str(lock)!r} is not a plain file (a link or "  # never
                          "a special file, perhaps from a copied folder); remove it and run again")  # write through it
    try:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fh = os.fdopen(os.open(lock, flags, 0o644), "r+")
    except OSError as exc:
        raise OutputError(f"{what} {str(path)!r}: cannot create its lock file ({exc.strerror}); "
                          f"choose another {what}") from None
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; runs are still written atomically
        return fh
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _NO_LOCKS:  # an NFS mount without locking, some FUSE/SMB file systems: as on Windows
            warnings.warn(f"{what} {str(path)!r}: its file system does not support file locks ({exc.strerror}), so "
                          "another qianyi process writing there at the same time is not kept out (files are still "
                          f"written atomically); give a {what} on a local disk to have it", QianyiWarning, stacklevel=4)
            return fh
        fh.seek(0)
        owner = fh.read().strip() or "unknown"
        fh.close()
        found = re.match(r"pid (\d+)(?: on (\S+))?(?: (\S+))?", owner)
        here = found is not None and found.group(2) in (None, _HOST) and found.group(3) in (None, _pid_namespace())
        # its loader workers (--workers) hold the lock a few seconds more; a process of another host or container
        # (another pid namespace) cannot be seen from here
        if found:  # (the namespace is for the check, not for the reader)
            owner = f"pid {found.group(1)}" + (f" on {found.group(2)}" if found.group(2) else "")
        if found and here and int(found.group(1)) == os.getpid():  # its own lock, on another open file: the
            # loader workers (--workers) of a run of this session that did not end cleanly, forked with the lock open
            raise OutputError(f"{what} {str(path)!r} is held by this process ({owner}): a previous call in this "
                              "session did not release it (the data-loader workers of an interrupted run, kept alive "
                              "with its error's traceback); restart the Python session (the kernel), or choose "
                              f"another {what}") from None
        if found and here and not _alive(int(found.group(1))):
            raise OutputError(f"{what} {str(path)!r} is still locked by the data-loader workers of a qianyi process that "
                              f"ended ({owner}); they exit within seconds: run the command again") from None
        busy = OutputError(f"{what} {str(path)!r} is in use by another qianyi process ({owner}); wait for it to "
                           f"finish, or choose another {what}")
        busy.owner = owner  # type: ignore[attr-defined]  (who holds it: train.store.shared_run says so)
        raise busy from None
    try:  # the owner line is only informative, but a full disk here must still be a clear error
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {_HOST} {_pid_namespace()}\n")
        fh.flush()
    except OSError as exc:
        with contextlib.suppress(OSError):
            fh.close()
        raise _output_error(lock, exc) from None
    return fh


#: errno values of a file system that does not do advisory locks.
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}
_HOST = socket.gethostname().split()[0] if socket.gethostname().strip() else "localhost"


def _pid_namespace() -> str:
    """The pid namespace this process runs in (a container has its own), or "-" where there is none to read."""
    try:
        return os.readlink("/proc/self/ns/pid").replace(" ", "")
    except OSError:
        return "-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by someone else
        return True
    return True


def _clean(path: Path) -> None:
    """Remove temporary files a killed run left (we hold the lock, so no writer is using them)."""
    for p in path.iterdir():
        if _TMP.match(p.name) and p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()
