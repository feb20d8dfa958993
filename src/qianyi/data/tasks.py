"""Dataset specs and task construction: ``load_domain("mnist+rot30")``, ``load_task("mnist", "digits")``.

A spec is a built-in name (``qianyi datasets``) or ``READER:PATH[?key=value&...]`` with READER one
of ``npz``, ``idx``, ``folder``, ``csv``; either may be followed by shifts: ``+rot30``, ``+invert``,
``+noise0.2``, ``+blur1``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import DataError, UnknownNameError
from .builtin import DATASETS, resolve_data_dir
from .canvas import common_canvas, to_canvas
from .domain import Domain, TransferTask, stratified_split
from .readers import read_csv, read_folder, read_idx, read_npz
from .shifts import SHIFTS, apply_shifts

READERS = {
    "npz": lambda path, name, opts: read_npz(path, name),
    "idx": lambda path, name, opts: read_idx(path, name),
    "folder": lambda path, name, opts: read_folder(path, name, size=int(opts.get("size", 32))),
    "csv": lambda path, name, opts: read_csv(path, name, label=opts.get("label")),
}
_SHIFT_RE = re.compile("|".join(f"(?:{s.pattern})" for s in SHIFTS))


def parse_spec(spec: str) -> tuple[str, list[str]]:
    """Split ``"mnist+rot30+noise0.1"`` into ``("mnist", ["rot30", "noise0.1"])``."""
    parts = spec.split("+")
    shifts: list[str] = []
    while len(parts) > 1 and _SHIFT_RE.fullmatch(parts[-1]):
        shifts.insert(0, parts.pop())
    return "+".join(parts), shifts


def _load_base(base: str, root: Path | None) -> Domain:
    if ":" in base and base.split(":", 1)[0] in READERS:
        kind, rest = base.split(":", 1)
        path, _, query = rest.partition("?")
        opts = dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv)
        return READERS[kind](path, opts.get("name") or Path(path).stem or Path(path).name, opts)
    if base in DATASETS:
        return DATASETS[base].loader(root)
    if ":" in base:
        raise UnknownNameError(f"unknown reader {base.split(':', 1)[0]!r} in {base!r}; readers: {', '.join(READERS)}")
    raise UnknownNameError(f"unknown dataset {base!r}; built-in: {', '.join(DATASETS)}; "
                           f"or a file: {', '.join(r + ':PATH' for r in READERS)}")


def load_domain(spec: str, data_dir: str | os.PathLike | None = None) -> Domain:
    """Load one domain by spec at its native resolution, shifts applied."""
    base, shifts = parse_spec(spec)
    d = _load_base(base, resolve_data_dir(data_dir))
    if shifts:
        d = d.replace(X=apply_shifts(d.X, shifts, spec), name=spec)
    return d


def _subsample(d: Domain, n: int | None, seed: int) -> Domain:
    if n is None or len(d) <= n:
        return d
    _, keep = stratified_split(d.y, len(d), n / len(d), seed)
    return d.subset(keep)


def load_task(source: str, target: str, *, data_dir: str | os.PathLike | None = None, test_fraction: float = 0.3,
              val_fraction: float = 0.1, split_seed: int = 0, max_samples: int | None = None) -> TransferTask:
    """Build a :class:`TransferTask` from two specs.

    Two domains drawn from one pool of images (``mnist`` and ``mnist-m``, ``fashion`` and
    ``fashion+invert``) get disjoint halves of it, so no image is on both sides. Both domains are
    brought to their common canvas (:func:`qianyi.data.canvas.common_canvas`) before shifts.
    ``max_samples`` caps each domain (stratified). Splits depend on ``split_seed`` only, so every
    method and training seed is scored on the same target test set.
    """
    root = resolve_data_dir(data_dir)
    (sbase, sshift), (tbase, tshift) = parse_spec(source), parse_spec(target)
    s, t = _load_base(sbase, root), _load_base(tbase, root)
    if s.origin == t.origin:
        if len(s) != len(t):
            raise DataError(f"{source!r} and {target!r} share the origin {s.origin!r} but differ in size")
        half_a, half_b = stratified_split(s.y, len(s), 0.5, split_seed + 17)
        s, t = s.subset(half_a), t.subset(half_b)
    s, t = _subsample(s, max_samples, split_seed), _subsample(t, max_samples, split_seed + 1)
    if s.is_image != t.is_image:
        raise DataError(f"{source!r} holds {'images' if s.is_image else 'vectors'} but {target!r} holds "
                        f"{'images' if t.is_image else 'vectors'}; both domains must be of one kind")
    if s.is_image:
        canvas = common_canvas(s, t)
        s, t = to_canvas(s, canvas), to_canvas(t, canvas)
    if sshift:
        s = s.replace(X=apply_shifts(s.X, sshift, source))
    if tshift:
        t = t.replace(X=apply_shifts(t.X, tshift, target))
    s, t = s.replace(name=source), t.replace(name=target)
    return TransferTask.from_domains(s, t, test_fraction=test_fraction, val_fraction=val_fraction, seed=split_seed)
