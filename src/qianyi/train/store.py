"""One run store: is this run already finished? Keyed by everything that determines its result.

A run's **fingerprint** is its method and settings, the training config, the source and target
specs, and a content hash of the data actually loaded (so a changed file under the same spec is
a different run). ``run``, ``bench``, ``select``, ``measure`` and the transferability protocol all
find finished runs through :class:`RunStore`; folder names come from one :func:`slug` function
plus a hash of the fingerprint, so two pairs whose names slug alike never share a folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .._io import sha256_file
from ..errors import OutputError
from ..errors import DataError, QianyiWarning
from ..nn import backbones
from .result import MODEL_FILE, RESULT_FILE, RunResult

if TYPE_CHECKING:
    from ..data.domain import TransferTask
    from ..methods.base import Method
    from .config import TrainConfig


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` (not unique: folders add a fingerprint hash)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def fingerprint(method: "Method", config: "TrainConfig", task: "TransferTask") -> dict[str, Any]:
    """Everything that determines a run's result with the default network (JSON-plain, so it compares
    equal after a round trip). The default network's generation (``default_network_generation``) is
    part of it from generation 2 on, so runs of an older default network are never taken for new ones;
    generation 1 is implicit, so runs stored before it existed keep their keys."""
    cfg = config.for_task(task).fingerprint()
    if cfg.get("init_from"):  # the starting model by its content: a changed file is another run, a moved one is not
        cfg["init_from"] = content_key(cfg["init_from"])
    fp = {"method": method.name, "hparams": method.fingerprint_hparams(), "config": cfg,
          **({"revision": method.revision} if method.revision != 1 else {}),
          "source": task.source.name, "target": task.target.name, "data": task.content_hash(),
          "sizes": [len(task.source), len(task.source_val), len(task.target),
                    0 if task.target_test is None else len(task.target_test)],
          "shape": list(task.sample_shape), "classes": task.n_classes}
    if cfg.get("l2sp") and type(method).copies_of is not _method_base().copies_of:
        fp["l2sp_copies"] = True  # since 2026-12-03 L2-SP anchors the method's copies too (multimodal): not an older run
    generation = backbones.default_network_generation(task.sample_shape, bool((task.preprocessing or {}).get("counts")))
    if generation != 1:
        fp["backbone"] = f"default-v{generation}"
    return _plain(fp)


def _method_base() -> type:
    from ..methods.base import Method

    return Method


_CONTENT_KEYS: dict[tuple[str, int, int], str] = {}


def content_key(path: str) -> str:
    """``sha256:HEX`` of a file's bytes (cached while its size and mtime stay), or the path itself when there is
    no such file (the run then fails on it with a clear error)."""
    try:
        st = os.stat(path)
    except OSError:
        return path
    k = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if k not in _CONTENT_KEYS:
        _CONTENT_KEYS[k] = "sha256:" + sha256_file(path)
    return _CONTENT_KEYS[k]


def code_digest(method: "str | type | Method | None" = None) -> str:
    """A short hash of this qianyi install's source (every ``.py`` file of the package, by relative path and
    bytes). Runs record it (``result.json`` ``versions["code"]``) so a reused run made by other code is told
    apart: fingerprints hold settings and data, and a method's ``revision`` only where its loss changed.
    With ``method`` (a name, class or instance) defined outside qianyi (a plugin, a script), ``+`` a hash of
    the file that defines it follows: an edited plugin is other code too."""
    base = _package_digest()
    if method is None:
        return base
    if isinstance(method, str):
        from ..methods.registry import available_methods

        method = available_methods().get(method)
    cls = method if isinstance(method, type) else type(method) if method is not None else None
    own = _module_digest(cls.__module__) if cls is not None else None
    return f"{base}+{own}" if own else base


def _module_digest(module: str) -> str | None:
    """The hash of the file that defines ``module``, unless it is part of qianyi (None: qianyi's, or no file)."""
    import sys

    path = getattr(sys.modules.get(module), "__file__", None)
    if not path:
        return None
    path = Path(path).resolve()
    if Path(__file__).resolve().parents[1] in path.parents:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    except OSError:
        return None


@lru_cache(maxsize=1)
def _package_digest() -> str:
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


_WARNED_OTHER_CODE: list[str] = []


def warned_other_code(where: str) -> bool:
    """Whether this process already warned about other code (finished runs reused, checkpoints resumed); records
    ``where`` as warned about if not: one warning per process, however many runs or stages follow."""
    if _WARNED_OTHER_CODE:
        return True
    _WARNED_OTHER_CODE.append(where)
    return False


def note_other_code(result: RunResult, directory: str | Path) -> None:
    """Warn (once per process) that a finished run about to be reused was made by other qianyi code."""
    made, now = (result.versions or {}).get("code"), code_digest(result.method)
    if made == now or warned_other_code(str(directory)):
        return
    by = f"qianyi code {made}" if made else "qianyi code from before runs recorded it"
    warnings.warn(f"reusing finished runs made by other code (e.g. {str(directory)!r}: {by}; this install is "
                  f"{now}): their numbers are that code's; to retrain them, use a fresh --out or delete "
                  "their folders", QianyiWarning, stacklevel=3)


def key(fp: dict[str, Any]) -> str:
    """A short hash of a fingerprint."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]


def finished(directory: str | Path, fp: dict[str, Any]) -> RunResult | None:
    """The result in ``directory`` if it is a finished run with exactly this fingerprint, else None."""
    directory = Path(directory)
    try:
        result = RunResult.read(directory / RESULT_FILE)
    except DataError:  # absent, half-written or corrupt: not finished
        return None
    if result.fingerprint != _plain(fp):
        return None
    try:
        if sha256_file(directory / (result.model_file or MODEL_FILE)) != result.model_sha256:
            return None  # model.pt from another run, or half-written: not finished
    except OSError:
        return None
    note_other_code(result, directory)
    return result


class RunStore:
    """Runs under ``root``: ``root/SOURCE->TARGET/METHOD/seedN-HASH`` (names slugged, HASH from the fingerprint)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, fp: dict[str, Any]) -> Path:
        pair = slug(f"{fp['source']}->{fp['target']}")
        return self.root / pair / slug(fp["method"]) / f"seed{fp['config']['seed']}-{key(fp)}"

    def get(self, fp: dict[str, Any]) -> RunResult | None:
        """The finished run with this fingerprint, or None (then train it in :meth:`path`)."""
        return finished(self.path(fp), fp)


@contextlib.contextmanager
def shared_run(rdir: Path | None) -> Iterator[None]:
    """Around training a run into a store's folder: a run another process trains at that moment (two benches of
    one pair share source-only and the oracle) is said as such, with what to do, not as "choose another --out"
    (that would train the shared runs again elsewhere)."""
    try:
        yield
    except OutputError as exc:
        owner = getattr(exc, "owner", None)  # set by the run-folder lock when another process holds it
        if rdir is None or owner is None:
            raise
        raise OutputError(f"the stored run {str(rdir)!r} is being trained by another qianyi process ({owner}), e.g. a "
                          "bench or select of the same pair; run this command after that one finishes (finished "
                          "runs are reused, not trained again), or give other --pairs meanwhile") from None
