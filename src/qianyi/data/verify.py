"""``qianyi datasets --verify``: compare a data directory's files with the sizes and SHA-256 sums its
``SOURCE.md`` files list.

Each data folder of a qianyi data directory (``$QIANYI_DATA``) documents its files in a ``SOURCE.md``
with a Markdown table that has a ``file`` column and a ``sha256`` column (and, optionally, ``bytes``),
paths relative to that folder. A file that is missing, of another size or of another content is named:
a complete but swapped or edited file still loads, so this is the check for it. Nothing is skipped
silently: a folder, ``SOURCE.md`` or file that cannot be read is ``unreadable`` (a failure), and a folder
without a ``SOURCE.md`` is shown as ``unlisted`` (its files are not checked; not a failure, as a data
directory may hold a user's own folders).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .._io import PERMISSION_DENIED, sha256_file, why_unreadable
from ..errors import DataError, DatasetNotFoundError

_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FileCheck:
    """One listed file: its folder (the data set), its path, and ``ok``, ``missing``, ``size``, ``content``,
    ``not-file`` (a folder or device), ``outside`` (a path out of the data folder) or ``unreadable`` (a row whose
    digest or size cannot be read, a file, SOURCE.md or folder this process may not read); ``unlisted``: a folder
    without a SOURCE.md, or whose SOURCE.md lists no checksums (``file`` is then empty)."""

    folder: str
    file: str
    status: str
    detail: str = ""


@dataclass(frozen=True)
class Listed:
    """A row of a SOURCE.md table: the file, its size (None: not listed), its sha256, and what could not be read."""

    file: str
    size: int | None
    sha256: str
    problem: str = ""


def _cell(text: str) -> str:
    return text.strip().strip("`").strip()


def listed_files(source_md: Path) -> list[Listed]:
    """The rows of every table in ``source_md`` with ``file`` and ``sha256`` columns. A digest may be written
    bare, in backticks or as ``sha256:HEX``; a size with thousands separators. A row whose digest or size cannot
    be read is kept with its ``problem`` (skipping it would leave that file unchecked)."""
    rows: list[Listed] = []
    header: list[str] | None = None
    for line in source_md.read_text(encoding="utf-8", errors="replace").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if cells is None:
            header = None
            continue
        names = [_cell(c).lower().replace("-", "") for c in cells]  # (SHA-256 too)
        if "file" in names and "sha256" in names:
            header = names
            continue
        if header is None or set(line.strip()) <= set("|-: ") or len(cells) != len(header):
            continue
        row = {k: _cell(v) for k, v in zip(header, cells)}
        name, digest = row["file"], row["sha256"].lower()
        digest = digest[len("sha256:"):].strip() if digest.startswith("sha256:") else digest
        size_text = re.sub(r"[,_ \u00a0\u202f]", "", row.get("bytes", ""))
        size = int(size_text) if size_text.isdigit() else None
        problem = ("" if _HEX.fullmatch(digest) else f"sha256 {row['sha256']!r} is not 64 hex digits") or (
            "" if size is not None or size_text in ("", "-", "\u2014", "?") else
            f"bytes {row['bytes']!r} is not a whole number of bytes")
        if name:
            rows.append(Listed(name, size, digest, problem))
    return rows


def verify_data_dir(root: str | Path) -> list[FileCheck]:
    """Check every file the ``SOURCE.md`` of each folder of ``root`` lists (size first, then SHA-256); every
    folder of ``root`` (hidden ones aside) gets at least one row."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"data directory {str(root)!r} does not exist; give --data-dir or set QIANYI_DATA")
    try:
        folders = sorted(p for p in root.iterdir() if not p.name.startswith(".") and p.is_dir())
    except OSError as exc:
        raise DataError(f"data directory {str(root)!r} cannot be read: {why_unreadable(exc)}") from None
    out: list[FileCheck] = []
    sources = 0
    for folder in folders:
        source = folder / "SOURCE.md"
        try:
            with os.scandir(folder) as entries:  # may it be listed, and (stat of ".") searched?
                next(entries, None)
            os.stat(os.path.join(folder, os.curdir))  # (pathlib would drop the dot)
        except OSError as exc:
            out.append(FileCheck(folder.name, "", "unreadable", f"the folder cannot be read: {why_unreadable(exc)}"))
            continue
        if not source.is_file():
            out.append(FileCheck(folder.name, "", "unlisted", "no SOURCE.md: its files are not checked"))
            continue
        sources += 1
        try:
            listed = listed_files(source)
        except OSError as exc:
            out.append(FileCheck(folder.name, "SOURCE.md", "unreadable", f"cannot be read: {why_unreadable(exc)}"))
            continue
        if not listed:
            out.append(FileCheck(folder.name, "", "unlisted", "its SOURCE.md has no table of file and sha256"))
        out += [_check(folder, row) for row in listed]
    if not sources and not any(c.status == "unreadable" for c in out):
        raise DatasetNotFoundError(f"{str(root)!r} holds no */SOURCE.md: nothing lists the files to check")
    return out


def _check(folder: Path, row: Listed) -> FileCheck:
    """One listed file against its row."""
    name, size = row.file, row.size
    path = folder / name
    if row.problem:
        return FileCheck(folder.name, name, "unreadable", f"{row.problem}: correct its row in SOURCE.md")
    if Path(name).is_absolute() or os.path.normpath(name).split(os.sep)[0] == "..":  # (a link may point
        # anywhere: the name listed is what must stay in the folder)
        return FileCheck(folder.name, name, "outside", "SOURCE.md may list only files inside its folder")
    try:
        if not path.exists():
            return FileCheck(folder.name, name, "missing")
        if not path.is_file():
            return FileCheck(folder.name, name, "not-file", "a folder or special file, not a file")
        if size is not None and path.stat().st_size != size:
            return FileCheck(folder.name, name, "size", f"{path.stat().st_size:,} bytes, listed {size:,}")
        if sha256_file(path) != row.sha256:
            return FileCheck(folder.name, name, "content", "sha256 differs from SOURCE.md")
    except DataError:  # (sha256_file's permission fault)
        return FileCheck(folder.name, name, "unreadable", f"cannot be read: {PERMISSION_DENIED}")
    except OSError as exc:
        return FileCheck(folder.name, name, "unreadable", f"cannot be read: {why_unreadable(exc)}")
    return FileCheck(folder.name, name, "ok")
