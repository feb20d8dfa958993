"""Atomic file writes: a reader never sees a half-written result or checkpoint."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Call ``write(fh)`` on a temporary file next to ``path``, fsync it, then rename it over ``path``.

    A full disk or a folder that cannot be written gives :class:`OutputError` naming ``path``; the
    previous file at ``path`` (if any) is left as it was. Text (``mode="w"``) is UTF-8 whatever the locale, its line
    ends as written (no translation on Windows); a character that stands for an undecodable byte of a file name (a
    surrogate, as Python reads such names) is written back as that byte (``surrogateescape``).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _output_error(path, exc) from exc
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        text = {} if "b" in mode else {"encoding": "utf-8", "errors": "surrogateescape", "newline": ""}
        with os.fdopen(fd, mode, **text) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno in _USER_ERRNOS:
            raise _output_error(path, exc) from exc
        raise
    return path


_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST,
                errno.EFBIG, errno.EISDIR}


def _output_error(path: Path, exc: OSError) -> Exception:
    from .errors import OutputError

    if exc.errno not in _USER_ERRNOS:
        return exc
    blocker = _file_above(path) if exc.errno in (errno.EEXIST, errno.ENOTDIR) else None
    if blocker is not None:  # (mkdir's "File exists" / "Not a directory" named neither the file nor the fix)
        return OutputError(f"cannot write {str(path)!r}: {str(blocker)!r} is a file, not a folder; choose another "
                           "output path (or move that file away)")
    advice = ("free some disk space (or choose another output folder) and run the same command again: "
              "a run resumes from its last checkpoint") if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) \
        else "it is a folder: name a file inside it" if exc.errno == errno.EISDIR \
        else "choose another output folder or fix its permissions"
    return OutputError(f"cannot write {str(path)!r}: {exc.strerror or exc}; {advice}")


def _file_above(path: Path) -> Path | None:
    """The nearest folder on ``path``'s way that exists as something other than a folder (a file), if any."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


#: The files a run folder holds (of `qianyi run`, `qianyi proxy`): an output of predict, features or translate
#: may go into the folder, but never onto one of these.
RUN_FILES = frozenset({"model.pt", "model.json", "model.npz", "result.json", "checkpoint.pt", "history.csv",
                       "generators.pt", "generators.json", "translations.png", "proxy.json", "proxy.pt",
                       "selection.npz", "failed.json"})
_RUN_MARKERS = ("result.json", "model.json", "generators.json", "proxy.json")


def folder_kind(path: str | os.PathLike) -> str | None:
    """What the folder ``path`` holds, by the files that mark it: ``"proxy"`` (a `qianyi proxy --out`:
    proxy.json), ``"run"`` (a `qianyi run --out`, finished or not, a generative run's too: result.json,
    generators.json, checkpoint.pt or failed.json: a run that diverged), ``"model"`` (a saved model without a run result: model.json alone, as
    `qianyi advise --out DIR` writes DIR/source), ``"bench"`` (a `qianyi bench` or `summary --out`: runs/ or
    results.csv), or None. The one place commands decide this (``report``, ``predict``, ``summary``)."""
    p = Path(path)
    try:  # (is_file raises, not False, where the folder cannot be searched)
        if (p / "proxy.json").is_file():  # (a proxy folder holds a result.json of its own)
            return "proxy"
        if any((p / m).is_file() for m in ("result.json", "generators.json", "checkpoint.pt")):
            return "run"
        if (p / "model.json").is_file():  # (a run writes model.json, then result.json; a deep run checkpoints first)
            return "model"
        if (p / "runs").is_dir() or (p / "results.csv").is_file():
            return "bench"
        if (p / "failed.json").is_file():  # (after the bench markers: a bench may go into a diverged run's folder)
            return "run"
    except OSError as exc:
        raise unsearchable(p, exc) from None
    return None


#: What to do about a file or folder this process may not read (no sign of damaged data: nothing to replace,
#: download or delete).
PERMISSION_DENIED = "permission denied; fix its permissions (a file needs read permission, a folder read and execute)"


def is_permission(exc: BaseException) -> bool:
    """Whether ``exc`` is a permission fault (not damaged or missing data)."""
    return isinstance(exc, PermissionError) or getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM)


def why_unreadable(exc: OSError) -> str:
    """Why a file or folder could not be read, for an error line: :data:`PERMISSION_DENIED` or the system's
    reason."""
    return PERMISSION_DENIED if is_permission(exc) else f"{exc.strerror or exc}"


def unsearchable(folder: Path, exc: OSError) -> Exception:
    """The :class:`DataError` for a folder whose files could not even be looked up (``exc`` from ``is_file`` and
    the like): a folder without execute (search) permission, say."""
    from .errors import DataError

    why = ("permission denied; a folder needs read and execute permission (chmod u+rx), then run the command again"
           if is_permission(exc) else f"{exc.strerror or exc}; check the disk or file system")
    return DataError(f"the folder {str(folder)!r} cannot be searched: {why}")


def rerun_command(path: str | os.PathLike) -> str:
    """Which command finishes the unfinished run in ``path`` (for an error's advice): "the bench/select command
    that made it" for a run of a bench or select store (``DIR/runs/PAIR/METHOD/seedN-KEY``, or a stage folder in
    one), else "its `qianyi run` command"."""
    parts = Path(os.path.abspath(path)).parts
    in_store = any(parts[i] == "runs" and parts[i + 3].startswith("seed") and "-" in parts[i + 3]
                   for i in range(len(parts) - 3))
    return "the bench/select command that made it" if in_store else "its `qianyi run` command"


def check_out_file(path: str | os.PathLike, suffix: str, example: str = "out") -> Path:
    """``path`` if a command may write its ``suffix`` file there (checked before the work, so a typo costs
    nothing): not a folder, the suffix given, and not one of a run folder's own files (:data:`RUN_FILES`)."""
    from .errors import DataError, OutputError

    p = Path(path)
    if p.is_dir():
        raise DataError(f"--out {str(p)!r} is a folder; name the file to write, e.g. {str(p / (example + suffix))!r}")
    if p.suffix != suffix:
        like = p.with_suffix(suffix) if p.with_suffix(suffix).name not in RUN_FILES else p.with_name(example + suffix)
        raise DataError(f"--out {str(p)!r}: this is written as {'an' if suffix == '.npz' else 'a'} {suffix} file; "
                        f"name it like {str(like)!r}")
    if p.name in RUN_FILES and any((p.parent / m).is_file() for m in _RUN_MARKERS):
        raise OutputError(f"--out {str(p)!r} is a file of the run in {str(p.parent)!r}: writing it would break the "
                          f"run; give another file name, e.g. {str(p.with_name(example + suffix))!r}")
    return p


def check_npz_path(path: str | os.PathLike) -> Path:
    """``path`` if it may receive an npz (a translation, features): :func:`check_out_file` for ``.npz``."""
    return check_out_file(path, ".npz", "translated")


def write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> Path:
    return atomic_write(path, lambda fh: fh.write(data), mode="wb")


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex). A file this process may not read is a
    :class:`~qianyi.errors.DataError` naming it (other faults stay ``OSError``: a missing file is often expected)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except PermissionError:
        from .errors import DataError

        raise DataError(f"{str(path)!r} cannot be read: {PERMISSION_DENIED}") from None
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text))


def write_json(path: str | os.PathLike, obj: Any, ensure_ascii: bool = True) -> Path:
    """``obj`` as indented JSON (UTF-8); ``ensure_ascii=False`` writes non-ASCII text as itself, for files people
    read (not for files hashed or compared byte-wise)."""
    return atomic_write(path, lambda fh: fh.write(json.dumps(obj, indent=2, sort_keys=False,
                                                             ensure_ascii=ensure_ascii) + "\n"))
