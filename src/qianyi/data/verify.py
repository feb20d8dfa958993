"""``qianyi datasets --verify``: compare a data directory's files with the sizes and SHA-256 sums its
``SOURCE.md`` files list.

Each data folder of a qianyi data directory (``$QIANYI_DATA``) documents its files in a ``SOURCE.md``
with a Markdown table that has a ``file`` column and a ``sha256`` column (and, optionally, ``bytes``),
paths relative to that folder. A file that is missing, of another size or of another content is named:
a complete but swapped or edited file still loads, so this is the check for it.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetNotFoundError

_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FileCheck:
    """One listed file: its folder (the data set), its path, and ``ok``, ``missing``, ``size`` or ``content``
    (``unlisted``: a folder whose SOURCE.md lists no checksums)."""

    folder: str
    file: str
    status: str
    detail: str = ""


def listed_files(source_md: Path) -> list[tuple[str, int | None, str]]:
    """The (file, bytes or None, sha256) rows of every table in ``source_md`` with ``file`` and ``sha256``
    columns."""
    rows: list[tuple[str, int | None, str]] = []
    header: list[str] | None = None
    for line in source_md.read_text(encoding="utf-8", errors="replace").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if cells is None:
            header = None
            continue
        names = [c.lower() for c in cells]
        if "file" in names and "sha256" in names:
            header = names
            continue
        if header is None or set(line.strip()) <= set("|-: ") or len(cells) != len(header):
            continue
        row = dict(zip(header, cells))
        digest = row["sha256"].lower()
        if not _HEX.fullmatch(digest):
            continue
        size = row.get("bytes", "").replace(",", "")
        rows.append((row["file"].strip("`"), int(size) if size.isdigit() else None, digest))
    return rows


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_data_dir(root: str | Path) -> list[FileCheck]:
    """Check every file the ``SOURCE.md`` of each folder of ``root`` lists (size first, then SHA-256)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"data directory {str(root)!r} does not exist; give --data-dir or set QIANYI_DATA")
    sources = sorted(root.glob("*/SOURCE.md"))
    if not sources:
        raise DatasetNotFoundError(f"{str(root)!r} holds no */SOURCE.md: nothing lists the files to check")
    out: list[FileCheck] = []
    for source in sources:
        folder = source.parent
        listed = listed_files(source)
        if not listed:
            out.append(FileCheck(folder.name, "", "unlisted", "its SOURCE.md has no table of file and sha256"))
        for name, size, digest in listed:
            path = folder / name
            if not path.is_file():
                out.append(FileCheck(folder.name, name, "missing"))
            elif size is not None and path.stat().st_size != size:
                out.append(FileCheck(folder.name, name, "size", f"{path.stat().st_size:,} bytes, listed {size:,}"))
            elif _sha256(path) != digest:
                out.append(FileCheck(folder.name, name, "content", "sha256 differs from SOURCE.md"))
            else:
                out.append(FileCheck(folder.name, name, "ok"))
    return out
