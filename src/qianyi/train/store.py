"""One run store: is this run already finished? Keyed by everything that determines its result.

A run's **fingerprint** is its method and settings, the training config, the source and target
specs, and a content hash of the data actually loaded (so a changed file under the same spec is
a different run). ``run``, ``bench``, ``select``, ``measure`` and the transferability protocol all
find finished runs through :class:`RunStore`; folder names come from one :func:`slug` function
plus a hash of the fingerprint, so two pairs whose names slug alike never share a folder.
"""
from __future__ import annotations

import contextlib
import dis
import hashlib
import inspect
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
from .weights import STARTING_MODEL_KEYS

if TYPE_CHECKING:
    from ..data.domain import TransferTask
    from ..methods.base import Method
    from .config import TrainConfig


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` (not unique: folders add a fingerprint hash)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


#: The longest folder name :func:`named_folder` makes from a name (a pair of specs holds two data paths and their
#: options: 250+ characters, over Linux's 255-byte name limit with a longer data directory, and over Windows'
#: 260-character path limit with the folders below it).
FOLDER_NAME_MAX = 80


def named_folder(root: Path, text: str) -> Path:
    """``root``'s folder for ``text`` (a pair, a data set): its :func:`slug`, cut to :data:`FOLDER_NAME_MAX`
    characters with a hash of the whole text when longer. A longer folder an earlier qianyi made there (uncut, and
    short enough for the file system) is kept, so its finished runs are found again."""
    return kept_folder(root, slug(text), short_slug(text))


def kept_folder(root: Path, legacy: str, name: str) -> Path:
    """``root/legacy`` when an earlier qianyi made that folder (its uncut name, short enough for the file system),
    else ``root/name``: an upgrade finds its finished runs again."""
    if legacy != name:
        try:
            if len(os.fsencode(legacy)) <= 255 and (root / legacy).is_dir():
                return root / legacy
        except OSError:
            pass
    return root / name


def short_slug(text: str) -> str:
    """:func:`slug`, cut to :data:`FOLDER_NAME_MAX` characters with a hash of the whole text when longer."""
    name = slug(text)
    if len(name) <= FOLDER_NAME_MAX:
        return name
    return f"{name[:FOLDER_NAME_MAX - 13].rstrip('_.-')}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


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
    for k in STARTING_MODEL_KEYS.values():  # what it is (recorded in result.json): its content above says it all
        cfg.pop(k, None)
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
    With ``method`` (a name, class or instance) defined outside qianyi, ``+`` a hash of its own code follows:
    of the file that defines it (a plugin, a script), or, for a class with no file (a notebook cell,
    ``python -``, ``python -c``), of the class's code itself (:func:`_class_code_digest`). An edited method
    is other code too."""
    base = _package_digest()
    if method is None:
        return base
    if isinstance(method, str):
        from ..methods.registry import available_methods

        method = available_methods().get(method)
    cls = method if isinstance(method, type) else type(method) if method is not None else None
    own = _own_digest(cls) if cls is not None else None
    return f"{base}+{own}" if own else base


def _own_digest(cls: type) -> str | None:
    """The hash of a method class's code outside qianyi: the file of its module (as before classes with no file
    were hashed, so plugins' recorded digests stay), plus the code of every class in its MRO whose module has no
    file. None for qianyi's own methods."""
    parts = [d for d in [_module_digest(cls.__module__)] if d]
    parts += [_class_code_digest(k) for k in cls.__mro__ if _fileless(k.__module__)]
    if len(parts) <= 1:
        return parts[0] if parts else None
    return hashlib.sha256("+".join(parts).encode()).hexdigest()[:8]


def _module_file(module: str) -> Path | None:
    """The source file of ``module``, if it has one that exists (``python -`` names ``<stdin>``; a notebook none)."""
    import sys

    path = getattr(sys.modules.get(module), "__file__", None)
    if not path or not os.path.isfile(path):
        return None
    return Path(path).resolve()


def _fileless(module: Any) -> bool:
    """Whether ``module`` is user code without a file (``__main__`` of a notebook, ``python -`` or ``-c``), not a
    module built into Python (``sys``, ``itertools``: no file either)."""
    import sys

    if not isinstance(module, str) or module == "builtins" or module == "qianyi" or module.startswith("qianyi."):
        return False
    spec = getattr(sys.modules.get(module), "__spec__", None)
    if module in sys.builtin_module_names or getattr(spec, "origin", None) in ("built-in", "frozen"):
        return False
    return _module_file(module) is None


def _module_digest(module: str) -> str | None:
    """The hash of the file that defines ``module``, unless it is part of qianyi (None: qianyi's, or no file)."""
    path = _module_file(module)
    if path is None or Path(__file__).resolve().parents[1] in path.parents:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    except OSError:
        return None


_PLAIN = (type(None), bool, int, float, complex, str, bytes)
_SKIP_ATTRS = frozenset({"__module__", "__qualname__", "__doc__", "__dict__", "__weakref__", "__firstlineno__",
                         "__static_attributes__", "__annotations__", "__parameters__", "__orig_bases__"})


def _global_loads(c: Any) -> list[str]:
    """The global names code object ``c`` itself reads (``LOAD_GLOBAL``/``LOAD_NAME``), in order: not the attribute
    names (``self.config.epochs``) that ``co_names`` holds as well."""
    return list(dict.fromkeys(i.argval for i in dis.get_instructions(c) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")))


def _class_code_digest(cls: type) -> str:
    """A hash of what a class with no source file runs: the code objects of its methods (bytecode, constants,
    names, nested code, recursively; not line numbers or cell file names, so moving a cell changes nothing),
    their defaults, the values their closures and the globals they read hold when those are plain values, the
    code of the functions and classes of a file-less module they use (a helper ``nn.Module`` of another cell,
    its file-less bases, the class of an object they read: its code, not its state), recursively, and the
    class's plain attributes. Source text is not used: Python 3.11 has none for a ``__main__`` class, and a
    notebook's cache of cells may hold an older one."""
    h = hashlib.sha256()
    seen: set[int] = set()

    def klass(k: type) -> None:
        if id(k) in seen:
            h.update(b"<seen>")
            return
        seen.add(id(k))
        h.update(b"<class>" + k.__qualname__.encode() + b"\0")
        for base in k.__mro__[1:]:
            if _fileless(base.__module__):
                klass(base)
        for name in sorted(vars(k)):
            if name not in _SKIP_ATTRS:
                h.update(name.encode() + b":")
                value(vars(k)[name])

    def value(v: Any, depth: int = 0) -> None:
        if isinstance(v, _PLAIN):
            h.update(repr(v).encode() + b"\0")
        elif isinstance(v, (tuple, list, frozenset, set)) and depth < 4:
            h.update(type(v).__name__.encode() + b"(")
            for item in (sorted(v, key=repr) if isinstance(v, (set, frozenset)) else v):
                value(item, depth + 1)
            h.update(b")")
        elif isinstance(v, dict) and depth < 4:
            h.update(b"{")
            for k in sorted(v, key=repr):
                value(k, depth + 1)
                value(v[k], depth + 1)
            h.update(b"}")
        elif isinstance(v, (staticmethod, classmethod)):
            value(v.__func__, depth)
        elif isinstance(v, property):
            for f in (v.fget, v.fset, v.fdel):
                value(f, depth)
        elif inspect.isfunction(v):
            function(v)
        elif inspect.iscode(v):
            code(v, {})
        elif isinstance(v, type) and _fileless(v.__module__):
            klass(v)
        elif _fileless(type(v).__module__):  # an object of a file-less class: its class's code
            klass(type(v))
        else:  # a module, a class, an object: only its kind (its own code is hashed where it is defined)
            h.update(f"<{type(v).__module__}.{type(v).__qualname__}>".encode())

    def function(fn: Any) -> None:
        if id(fn) in seen:
            h.update(b"<seen>")
            return
        seen.add(id(fn))
        h.update(b"<function>")
        code(fn.__code__, fn.__globals__)
        value(fn.__defaults__)
        value(fn.__kwdefaults__)
        for cell in fn.__closure__ or ():
            try:
                value(cell.cell_contents)
            except ValueError:  # an empty cell
                h.update(b"<empty>")

    def code(c: Any, globs: dict[str, Any]) -> None:
        h.update(c.co_code + b"\0" + repr((c.co_names, c.co_varnames, c.co_freevars, c.co_cellvars)).encode())
        for const in c.co_consts:
            if inspect.iscode(const):
                code(const, globs)
            else:
                value(const)
        for name in _global_loads(c):  # the globals it reads: plain values, file-less functions and classes
            if name not in globs:
                continue
            g = globs[name]
            if isinstance(g, _PLAIN):
                h.update(name.encode() + b"=")
                value(g)
            elif inspect.isfunction(g) and _fileless(g.__module__):
                function(g)
            elif _fileless(g.__module__ if isinstance(g, type) else type(g).__module__):
                h.update(name.encode() + b"=")
                value(g)

    h.update(cls.__qualname__.encode() + b"\0")
    seen.add(id(cls))
    for name in sorted(vars(cls)):
        if name not in _SKIP_ATTRS:
            h.update(name.encode() + b":")
            value(vars(cls)[name])
    return h.hexdigest()[:8]


@lru_cache(maxsize=1)
def _package_digest() -> str:
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


_WARNED_OTHER_CODE: list[str] = []


def warned_other_code(where: str) -> bool:
    """Whether this process already warned about other code at ``where`` (a run folder, a checkpoint, or a key
    shared by many); records ``where`` as warned about if not: one warning per ``where``, however often reused."""
    if where in _WARNED_OTHER_CODE:
        return True
    _WARNED_OTHER_CODE.append(where)
    return False


def note_other_code(result: RunResult, directory: str | Path, method: Any = None) -> None:
    """Warn that a finished run about to be reused was made by other code. Where the method's own code differs (a
    method edited in a notebook or a plugin's file), every such folder is named, once each; where only qianyi's
    code differs (an upgrade: every run alike), once per process."""
    made, now = (result.versions or {}).get("code"), code_digest(result.method if method is None else method)
    if made == now:
        return
    (base_made, plus, own_made), (base_now, _, own_now) = (made or "").partition("+"), now.partition("+")
    # a digest of qianyi code from before a method with no file (notebook, ``python -``) was hashed has no ``+``
    # part: an upgrade, not an edit of the method
    uncovered = not plus and bool(own_now) and base_made != base_now
    if own_made != own_now and not uncovered:
        if warned_other_code(str(directory) if method is None else f"{directory}#run"):
            return
        warnings.warn(f"reusing the finished run {str(directory)!r}, made by other code of method "
                      f"{result.method!r} ({made or 'not recorded'}; its code now is {now}): its numbers are that "
                      "code's, not the edited method's; to retrain it, use a fresh out folder (--out) or delete "
                      "that folder", QianyiWarning, stacklevel=3)
        return
    if warned_other_code("qianyi"):
        return
    by = f"qianyi code {made}" if made else "qianyi code from before runs recorded it"
    if uncovered and made:
        by += (", a digest that did not cover the own code of a method defined outside a file (a notebook cell, "
               "`python -`)")
    warnings.warn(f"reusing finished runs made by other code (e.g. {str(directory)!r}: {by}; this install is "
                  f"{now}): their numbers are that code's; to retrain them, use a fresh --out or delete "
                  "their folders", QianyiWarning, stacklevel=3)


def key(fp: dict[str, Any]) -> str:
    """A short hash of a fingerprint."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]


def _unopenable(path: Path) -> bool:
    """Whether ``path`` exists but cannot be opened (a permission, not its content)."""
    try:
        path.open("rb").close()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return False


def finished(directory: str | Path, fp: dict[str, Any], names: dict[str, Any] | None = None,
             method: Any = None) -> RunResult | None:
    """The result in ``directory`` if it is a finished run with exactly this fingerprint, else None.

    ``names``: what the run's model.json would record now (:func:`qianyi.train.run.model_names`: class names, the
    preprocessing's digest, which holds the feature names); a run whose model.json or result.json records other
    ones (a label's typo fixed, a column renamed: the same data hash) is not finished, so it is trained again and
    its files name the data as they are now. ``method``: the method (class or instance) about to reuse it, whose
    code a run made by other code is judged against (a method defined in a notebook cell and not registered has
    no name to look it up by); ``qianyi.run(out=)`` names such a folder once more, as resuming its checkpoint
    did, beside a bench's or select's one warning per folder."""
    directory = Path(directory)
    try:
        result = RunResult.read(directory / RESULT_FILE)
    except DataError:  # absent, half-written or corrupt: not finished
        if _unopenable(directory / RESULT_FILE):  # there but not readable (permissions): said, not trained over
            raise
        return None
    if result.fingerprint != _plain(fp):
        return None
    try:
        if sha256_file(directory / (result.model_file or MODEL_FILE)) != result.model_sha256:
            return None  # model.pt from another run, or half-written: not finished
    except OSError:
        return None
    if not model_described(directory, result):  # what `qianyi predict` calls corrupt, advising "rerun the run"
        return None
    if names is not None and stale_names(directory, result, names):
        return None
    note_other_code(result, directory, method)
    return result


def model_described(directory: Path, result: RunResult) -> bool:
    """Whether the finished run ``result`` in ``directory`` holds the model.json that loading it reads: there,
    readable JSON describing a model of its kind (a deep run's network, with its fields; a shallow run's
    ``kind: shallow``). A missing or corrupt one is not: the run is trained again, so a rerun repairs what
    `qianyi predict` refuses. One that cannot be opened (permissions) or of a newer format is not damaged."""
    from .artefact import META_FILE, _check_format, _check_meta_fields, _NewerFormat

    path = directory / META_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # there but not readable: nothing says it is damaged
        return True
    shallow = result.model_file != MODEL_FILE  # (a shallow run's model.npz)
    try:
        meta = json.loads(raw.decode("utf-8"))
        if not isinstance(meta, dict) or (meta.get("kind") == "shallow") != shallow:
            return False
        if not shallow and not isinstance(meta["architecture"], dict):
            return False
        _check_format(meta, path)
        if not shallow:
            _check_meta_fields(meta)
    except _NewerFormat:
        return True
    except (ValueError, KeyError, TypeError):  # (UnicodeDecodeError is a ValueError)
        return False
    return True


def stale_names(directory: Path, result: RunResult, names: dict[str, Any]) -> bool:
    """Whether the finished run ``result`` in ``directory`` records other names than ``names`` (see
    :func:`finished`): model.json's ``class_names`` and ``preprocessing_sha256`` (those it holds: a shallow run's
    none), and the class names of result.json's target report."""
    try:
        meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    recorded = {k: meta[k] for k in ("class_names", "preprocessing_sha256") if k in meta}
    if (result.target_report or {}).get("class_names") is not None:
        recorded["report class_names"] = result.target_report["class_names"]
    now = {**names, "report class_names": names.get("class_names")}
    return any(v != now.get(k) for k, v in recorded.items())


class RunStore:
    """Runs under ``root``: ``root/SOURCE->TARGET/METHOD/seedN-HASH`` (names slugged, a long pair's cut by
    :func:`named_folder`; HASH from the fingerprint)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, fp: dict[str, Any]) -> Path:
        pair = named_folder(self.root, f"{fp['source']}->{fp['target']}")
        return pair / slug(fp["method"]) / f"seed{fp['config']['seed']}-{key(fp)}"

    def get(self, fp: dict[str, Any], names: dict[str, Any] | None = None) -> RunResult | None:
        """The finished run with this fingerprint (and, given, these ``names``: :func:`finished`), or None (then
        train it in :meth:`path`)."""
        return finished(self.path(fp), fp, names)


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
