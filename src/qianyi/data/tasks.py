"""Dataset specs and task construction: ``load_domain("mnist+rot30")``, ``load_task("mnist", "digits")``.

A spec is a built-in name (``qianyi datasets``) or ``READER:PATH[?key=value&...]`` with READER one
of ``npz``, ``idx``, ``folder``, ``csv``; either may be followed by shifts: ``+rot30``, ``+invert``,
``+noise0.2``, ``+blur1``. Options (anything else is refused): ``name=`` (every reader: the
domain's name in logs), ``size=`` (folder: image side, 8..1024), ``stream=1`` (folder: decode
images only when a batch needs them, :mod:`qianyi.data.lazy`) with ``augment=flip,crop`` (training
augmentations of a streamed folder), ``label=`` and ``drop=A,B``
(csv: the label column, columns to ignore), ``sep=`` (csv: ``,`` ``;`` ``|`` or ``tab``; default
``;`` when the header line holds ``;`` and no ``,``), ``where=COL:V1,V2`` and ``where_not=COL:V1,V2``
(csv: keep / leave out the rows whose COL is one of the values), ``categorical=auto`` or
``categorical=A,B`` (csv: one-hot encode text columns), ``id=COL`` (csv: a column naming each row, kept as
the domain's ``ids`` and written by ``qianyi predict``, not a feature), ``n_features=`` (svmlight: the width),
``x=`` and ``y=`` (mat: the variable names of features and labels).

Vector inputs are standardised (per-feature mean and standard deviation fitted on the source and
target *training* inputs, no labels), after a row transform for sparse count data (see
``load_task``); ``task.preprocessing`` records both and :func:`prepare` re-applies them.

A domain read from a file belongs to the pool of that file (its full path): ``folder:amazon/images``
and ``folder:webcam/images`` are two domains, while ``npz:a.npz`` and ``npz:a.npz+rot30`` share
one pool and get disjoint halves of it; two different row filters of one CSV file are two domains.
CSV columns are matched by name between source and target; one-hot columns ``COL=VALUE`` of a
categorical column line up even when the two domains hold different categories (see
:func:`match_features`).
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np


from ..errors import ConfigError, DataError, DatasetNotFoundError, QianyiWarning, UnknownNameError
from .builtin import DATASETS, resolve_data_dir
from .canvas import Canvas, common_canvas, to_canvas
from .domain import Domain, TransferTask, _checked, _freeze, sample_keys, stratified_split
from .lazy import is_lazy
from .readers import LABEL_COLUMNS, read_csv, read_folder, read_idx, read_mat, read_npz, read_svmlight
from .shifts import SHIFTS, apply_shifts, parse_shift
from .audio import read_wav_folder
from .text import TEXT_READER_OPTIONS, TEXT_READERS, csv_text_reader, encode_domain, tokenize_task

#: The side ``folder:`` images are read at unless the spec gives ``?size=``.
FOLDER_SIZE = 32

READERS = {
    "npz": lambda path, name, opts: read_npz(path, name),
    "idx": lambda path, name, opts: read_idx(path, name),
    "folder": lambda path, name, opts: read_folder(
        path, name, size=_int_option(opts, "size", FOLDER_SIZE, 8, 1024), max_samples=opts.get("max_samples"),
        seed=opts.get("seed", 0), stream=bool(_int_option(opts, "stream", 0, 0, 1)),
        augment=tuple(a for a in opts.get("augment", "").split(",") if a), resize=opts.get("resize", "pad")),
    "csv": lambda path, name, opts: csv_text_reader(path, name, opts) if "text" in opts else read_csv(
        path, name, label=opts.get("label"), drop=tuple(c for c in opts.get("drop", "").split(",") if c),
        sep=opts.get("sep"), where=opts.get("where"), where_not=opts.get("where_not"),
        categorical=opts.get("categorical"), id_column=opts.get("id"), decimal=opts.get("decimal")),
    "svmlight": lambda path, name, opts: read_svmlight(
        path, name, n_features=_int_option(opts, "n_features", None, 1, 10**9) if "n_features" in opts else None),
    "mat": lambda path, name, opts: read_mat(path, name, x=opts.get("x"), y=opts.get("y")),
    **TEXT_READERS,  # jsonl:PATH, lines:DIR (qianyi.data.text)
    "wav": lambda path, name, opts: read_wav_folder(path, name),  # log-mel images (qianyi.data.audio)
}
#: The ``?key=value`` options each reader accepts (``name`` names the domain in reports).
READER_OPTIONS = {"npz": ("name",), "idx": ("name",), "folder": ("name", "size", "stream", "augment", "resize"),
                  "csv": ("name", "label", "drop", "sep", "where", "where_not", "categorical", "text", "id",
                          "decimal"),
                  "svmlight": ("name", "n_features"), "mat": ("name", "x", "y"), "wav": ("name",),
                  **TEXT_READER_OPTIONS}
#: Row transforms of vector inputs applied before standardisation (``load_task(vector_transform=)``):
#: ``log1p`` = sign(x) log(1 + |x|); ``l1`` / ``l2`` divide each row by its L1 / L2 norm (zero rows stay 0).
VECTOR_TRANSFORMS = ("none", "log1p", "l1", "l2")
#: The transform ``vector_transform="auto"`` gives sparse non-negative inputs (counts, histograms:
#: bag-of-words, SURF); dense or signed inputs get "none". Chosen on source-validation accuracy only
#: (docs/vectors.md).
COUNT_TRANSFORM = "l2"
#: Inputs count as sparse counts when none is negative and at least this fraction is zero.
COUNT_ZERO_FRACTION = 0.5
_SHIFT_RE = re.compile("|".join(f"(?:{s.pattern})" for s in SHIFTS))


def _int_option(opts: dict, key: str, default: int | None, low: int, high: int) -> int:
    text = opts.get(key, default)
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = None
    if value is None or not low <= value <= high:
        raise DataError(f"option ?{key}={text} must be a whole number from {low} to {high}")
    return value


def parse_options(kind: str, query: str, spec: str, allowed: Sequence[str] | None = None) -> dict[str, str]:
    """``"size=64&name=amazon"`` -> ``{"size": "64", "name": "amazon"}``; unknown or malformed options are
    refused. ``allowed``: the options of a built-in dataset (default: the reader ``kind``'s)."""
    if allowed is None:
        allowed = READER_OPTIONS[kind]
    opts: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UnknownNameError(f"{spec!r}: option {item!r} is not KEY=VALUE")
        if key not in allowed:
            raise UnknownNameError(f"{spec!r}: the {kind} {'reader' if kind in READER_OPTIONS else 'dataset'} has no "
                                   f"option {key!r}; its options: {', '.join(allowed) or 'none'}")
        if key in opts:
            raise UnknownNameError(f"{spec!r}: option {key!r} is given twice")
        opts[key] = value
    return opts


def split_options(base: str) -> tuple[str, str]:
    """``KIND:PATH?OPTIONS`` (or ``NAME?OPTIONS``) as (``KIND:PATH``, ``OPTIONS``): the options start at the first
    '?', unless a '?' is part of a file or folder that exists (a ``pathlib.Path`` spec, :func:`as_spec`): then after
    the longest existing path."""
    head, _, query = base.partition("?")
    kind, colon, rest = base.partition(":")
    if query or head != base:
        if colon and kind in READERS and "?" in rest:
            cuts = [len(rest), *(i for i in range(len(rest) - 1, -1, -1) if rest[i] == "?")]
            for i in cuts:
                if "?" in rest[:i] and os.path.exists(rest[:i]):
                    return f"{kind}:{rest[:i]}", rest[i + 1:]
    return head, query


def with_folder_size(base: str, size: int | None, resize: str | None = None) -> str:
    """A ``folder:`` spec's base read at ``size`` pixels when it names no ``size`` of its own (other specs
    as they are): a folder is otherwise read at 32 px, and enlarging those would lose the files' detail; and
    with ``?resize=RESIZE`` (a run's ``folder_resize``) when it names no ``resize`` of its own."""
    if not base.startswith("folder:"):
        return base
    for key, value in (("size", size), ("resize", resize)):
        path, query = split_options(base)
        if value is None or _names_option(base, key):
            continue
        base = f"{path}?{query}&{key}={value}" if query else f"{path}?{key}={value}"
    return base


def _names_option(base: str | None, key: str) -> bool:
    """Whether ``base``, a ``folder:`` spec, names option ``key`` of its own (``?key=...``)."""
    if base is None or not base.startswith("folder:"):
        return False
    return any(kv.partition("=")[0] == key for kv in split_options(base)[1].split("&") if kv)


def _folder_resize(specs: Sequence[str]) -> str | None:
    """The ``?resize=`` the ``folder:`` specs among ``specs`` (a task's source, target and target test bases) read
    their images with, for ``task.preprocessing["folder_resize"]`` (None: the default, pad, or no folder); refused
    when they differ, as a saved model can read new folders one way only (and is scored on images read its way)."""
    modes = {}
    for spec in specs:
        if spec.startswith("folder:"):
            modes[spec] = parse_options("folder", split_options(spec)[1], spec).get("resize", "pad")
    if len(set(modes.values())) > 1:
        raise DataError(f"{' and '.join(map(repr, modes))} read their images with different ?resize= "
                        f"({', '.join(modes.values())}); give {'both' if len(modes) == 2 else 'them all'} the "
                        "same (or leave it out of a --target-test spec, read as the run's images are), so that the "
                        "run is scored, and qianyi predict reads new folders, as the run read its images")
    mode = next(iter(modes.values()), "pad")
    return None if mode == "pad" else mode


def parse_spec(spec: str) -> tuple[str, list[str]]:
    """Split ``"mnist+rot30+noise0.1"`` into ``("mnist", ["rot30", "noise0.1"])``."""
    parts = spec.split("+")
    shifts: list[str] = []
    while len(parts) > 1 and _SHIFT_RE.fullmatch(parts[-1]):
        shifts.insert(0, parts.pop())
    return "+".join(parts), shifts


def _load_base(base: str, root: Path | None, max_samples: int | None = None, seed: int = 0) -> Domain:
    if ":" in base and base.split(":", 1)[0] in READERS:
        head, query = split_options(base)
        kind, path = head.split(":", 1)
        if not path:
            raise DatasetNotFoundError(f"{base!r} names no path; write {kind}:PATH")
        opts: dict = parse_options(kind, query, base)
        opts.update(max_samples=max_samples, seed=seed)
        return READERS[kind](path, opts.get("name") or Path(path).stem or Path(path).name, opts)
    name, _, query = base.partition("?")
    if name in DATASETS:
        info = DATASETS[name]
        return info.loader(root, **parse_options(name, query, base, info.options))
    if ":" in base:
        kind = base.split(":", 1)[0]
        drive = (f"; a Windows path? name its reader: csv:{base} (or npz:, jsonl:, ...)"
                 if len(kind) == 1 and kind.isalpha() and base[2:3] in ("\\", "/") else "")
        raise UnknownNameError(f"unknown reader {kind!r} in {base!r}; readers: {', '.join(READERS)}{drive}")
    head, *tokens = name.split("+")
    if tokens and head in DATASETS:  # a known dataset with a shift that is not one: say which
        for token in tokens:
            parse_shift(token)
    raise UnknownNameError(f"unknown dataset {base!r}; built-in: {', '.join(DATASETS)}; "
                           f"or a file: {', '.join(r + ':PATH' for r in READERS)}")


#: The reader a file path (a ``pathlib.Path``) is read with, by its suffix.
PATH_READERS = {".csv": "csv", ".npz": "npz", ".svmlight": "svmlight", ".svm": "svmlight", ".libsvm": "svmlight",
                ".mat": "mat", ".jsonl": "jsonl"}
#: The compressed forms each reader reads itself, after its suffix (``data.csv.gz``, ``x.svmlight.bz2``).
COMPRESSED_SUFFIXES = {"csv": (".gz",), "svmlight": (".gz", ".bz2", ".xz")}


def as_spec(spec: "str | os.PathLike[str]") -> str:
    """``spec`` as a spec string: a string as it is; a path (``pathlib.Path``) as ``READER:PATH``, its reader by its
    suffix (:data:`PATH_READERS`, :data:`COMPRESSED_SUFFIXES`: ``data.csv`` is ``csv:data.csv``). A path's '?' is
    its own, not the start of options (:func:`split_options`), so a path holding one must exist."""
    if not isinstance(spec, os.PathLike):
        return spec
    path = Path(os.fspath(spec))
    low = [x.lower() for x in path.suffixes]
    compressed = len(low) >= 2 and low[-1] in (".gz", ".bz2", ".xz")  # data.csv.gz: read by .csv, if it can be
    suffix = "".join(low[-2:] if compressed else low[-1:])
    kind = PATH_READERS.get(low[-2] if compressed else low[-1]) if low else None
    if kind is not None and compressed and low[-1] not in COMPRESSED_SUFFIXES.get(kind, ()):
        raise DataError(f"{str(path)!r}: the {kind} reader does not read {low[-1]} files; decompress it and give "
                        "the decompressed file's path")
    if kind is None:
        known = [f"{x}{'[' + '|'.join(COMPRESSED_SUFFIXES[k]) + ']' if k in COMPRESSED_SUFFIXES else ''}"
                 for x, k in PATH_READERS.items()]
        raise DataError(f"{str(path)!r}: a path is read by its suffix ({', '.join(known)}), and "
                        f"{repr(suffix) if suffix else 'it has none'}{' is none of them' if suffix else ''}; give a "
                        f"spec string naming the reader (`qianyi datasets` lists them), e.g. 'csv:{path}' or "
                        f"'svmlight:{path}' (vectors), 'folder:{path}' (images), 'lines:{path}' (text) or "
                        f"'wav:{path}' (sounds)")
    if "?" in str(path) and not path.exists():
        raise DatasetNotFoundError(f"{str(path)!r} does not exist (a path with '?' is read only as a whole file: "
                                   "check the name)")
    return f"{kind}:{path}"


def load_domain(spec: "str | os.PathLike[str]", data_dir: str | os.PathLike | None = None) -> Domain:
    """Load one domain by spec (or a file path, :func:`as_spec`) at its native resolution, shifts applied."""
    spec = as_spec(spec)
    base, shifts = parse_spec(spec)
    d = _load_base(base, resolve_data_dir(data_dir))
    if shifts:
        d = d.replace(X=apply_shifts(d.X, shifts, spec), name=spec)
    return d


def _one_hot_of(feature: str) -> str | None:
    """The categorical column a one-hot feature ``COL=VALUE`` belongs to (None: not of that form)."""
    col, eq, _ = feature.partition("=")
    return col if eq else None


def match_features(names: Sequence[str] | None, target: Domain, reference: str = "the source") -> Domain:
    """``target`` with its columns in the order of ``names`` (``reference``'s columns: the source's, or a
    saved model's), matched by name (CSV headers), not position.

    One-hot features ``COL=VALUE`` (``read_csv(categorical=)``) of a column that both sides encode
    line up by category: a category ``reference`` has and ``target`` lacks becomes a column of
    zeros; a category ``target`` has and ``reference`` never saw is dropped, with a
    :class:`QianyiWarning` (its rows get 0 in every ``COL=`` feature). Any other difference in the
    columns is a :class:`DataError`.
    """
    if names is None or target.feature_names is None or tuple(names) == target.feature_names:
        return target
    names = tuple(names)
    if "" in names and "" not in target.feature_names:
        raise DataError(f"{reference} has a column with an empty name, which CSV files are now read with as '#K' "
                        "(K counted from 1), or left out (pandas' index); retrain the model on the file as it is "
                        "read now (its columns: " + ", ".join(map(repr, target.feature_names[:8])) + ")")
    have, want = set(target.feature_names), set(names)
    missing = [c for c in names if c not in have]
    extra = [c for c in target.feature_names if c not in want]
    t_cols = {_one_hot_of(c) for c in target.feature_names} - {None}
    r_cols = {_one_hot_of(c) for c in names} - {None}
    bad_missing = [c for c in missing if _one_hot_of(c) not in t_cols]
    bad_extra = [c for c in extra if _one_hot_of(c) not in r_cols]
    if bad_missing or bad_extra:
        raise DataError(f"{reference} and {target.name!r} have different feature columns: {target.name!r} lacks "
                        f"{bad_missing[:10]} and has extra {bad_extra[:10]}; give both the same columns (drop the "
                        "others with ?drop=A,B; a text column must be one-hot encoded on both sides, "
                        "?categorical=)" + (f"; if {bad_missing[0]!r} is the label, name it: ?label={bad_missing[0]} (a "
                                            "table's label column is found only by the names "
                                            f"{', '.join(LABEL_COLUMNS)})" if bad_missing else ""))
    pos = {c: i for i, c in enumerate(target.feature_names)}
    if not missing and not extra:
        order = [pos[c] for c in names]
        return target.replace(X=target.X[:, order], feature_names=names)
    if extra:
        hit = int((target.X[:, [pos[c] for c in extra]] != 0).any(1).sum())
        warnings.warn(f"{target.name!r} holds categories that {reference} never saw: {extra[:10]}"
                      f"{' ...' if len(extra) > 10 else ''} ({hit:,} of {len(target):,} rows); those features are "
                      "dropped (the rows get 0 in every feature of that column)", QianyiWarning, stacklevel=2)
    X = np.zeros((len(target), len(names)), np.float32)
    found = [(j, pos[c]) for j, c in enumerate(names) if c in pos]
    X[:, [j for j, _ in found]] = target.X[:, [i for _, i in found]]
    return target.replace(X=X, feature_names=names)


def _csv_filter_sets(base: str) -> dict[str, tuple[str, set[str]]]:
    """The row filters of a ``csv:PATH?...`` spec: {"where"/"where_not": (column, values)}."""
    opts = parse_options("csv", split_options(base)[1], base)
    out = {}
    for key in ("where", "where_not"):
        if key in opts:
            col, _, text = opts[key].partition(":")
            out[key] = (col.strip(), {v.strip() for v in text.split(",") if v.strip()})
    return out


#: Above this share of a target test split (and at least OVERLAP_MIN samples) found among other samples (the
#: labelled source, a via pool), each once on each side, the specs overlap and the task is refused; fewer (duplicates in the data:
#: 1.4% of UCI Bank Marketing's landline contacts equal a cellular one in every kept column) are warned about.
OVERLAP_REFUSED = 0.05
OVERLAP_MIN = 5


def _row_keys(X: object) -> list[bytes]:
    """A digest of each sample (identical samples, identical digests): bytes of float32 rows, or the text; for
    streamed images the bytes of each file (read, not decoded: an exact copy is found, a re-encoded one is not)."""
    if is_lazy(X):
        return [hashlib.blake2b(X.files[i].read_bytes(), digest_size=16).digest() for i in X.index]  # type: ignore[attr-defined]
    return sample_keys(X).tolist()


@dataclass(frozen=True)
class _Overlap:
    """Test samples found among another domain's (``shared``: all of them), and the count that decides: those that
    occur once on each side (``found``: a sample read twice is unique on each side; a common value of data of few
    values recurs within a side), against the count chance alone gives (``chance``) and its noise."""

    shared: int
    found: int
    chance: float
    noise: float

    @property
    def excess(self) -> float:
        return self.found - self.chance


def _once_on_each_side(a: Sequence[bytes], b: Sequence[bytes]) -> tuple[int, int]:
    """How many of ``a`` occur in ``b``, and how many of those occur exactly once in each."""
    in_a, in_b = Counter(a), Counter(b)
    shared = [k for k in a if k in in_b]
    return len(shared), sum(in_a[k] == 1 and in_b[k] == 1 for k in shared)


def _shared(test_keys: Sequence[bytes], other_keys: Sequence[bytes], seed: int = 0) -> _Overlap:
    """Test keys among ``other_keys``, against chance: the same count between two disjoint random parts of
    ``other`` (one the size of the test split), so that data of few values, whose independent samples share
    values (a table of a few categories or binary columns, correlated columns too), is measured on itself; it is
    0 for images, texts and real-valued rows, where a sample found on both sides is a copy."""
    shared, found = _once_on_each_side(test_keys, other_keys)
    m = min(len(test_keys), len(other_keys) // 2)
    rate = 0.0
    if m and found:  # (nothing found: nothing to weigh)
        order = np.random.default_rng(seed).permutation(len(other_keys))
        part = [other_keys[i] for i in order[:m]]
        rest = [other_keys[i] for i in order[m:]]
        rate = _once_on_each_side(part, rest)[1] / m
    n = len(test_keys)
    return _Overlap(shared, found, rate * n, 3.0 * math.sqrt(rate * (1 - rate) * n))


def _refused(o: _Overlap, n: int) -> bool:
    """More samples once on each side than chance gives, by more than :data:`OVERLAP_REFUSED` of the test split."""
    return o.excess > OVERLAP_REFUSED * n + o.noise and o.excess >= OVERLAP_MIN


def _said(o: _Overlap) -> bool:
    """Worth a warning: a shared sample where chance shares none (duplicates in the data), or more than chance."""
    return bool(o.shared) and (o.chance == 0 or o.excess > o.noise)


def _chance_note(o: _Overlap, n: int) -> str:
    return (f" (values of this data recur by chance: about {o.chance:.0f} of {n} would be shared once on each side "
            "by independent samples)") if o.chance >= 1 else ""


def check_test_overlap(test: Domain | None, others: Sequence[tuple[str, Domain | None]], what: str,
                       refuse: bool = True) -> None:
    """Refuse a task whose target test samples also lie in ``others`` (e.g. the labelled source): above
    :data:`OVERLAP_REFUSED` of the test split the specs overlap (rotmnist ranges that overlap, one pool read
    twice); a few duplicates are warned about, and so is any number when ``refuse`` is False (sides known to
    be disjoint rows: equal samples are duplicates in the data).

    Samples are compared as they are (after canvas and shifts) and, when both sides carry
    :attr:`Domain.keys`, by the samples they were made from, so that a rotated, inverted, noisy or re-rendered
    copy (``idx:$QIANYI_DATA/mnist+rot30`` against ``mnist``, ``idx:$QIANYI_DATA/mnist`` against ``mnist-m``)
    counts as the sample it copies. Streamed images are compared by their files' bytes, with each other only:
    a streamed side and one in memory cannot be compared, and a warning says so. Samples found once on each side
    are counted against chance (:func:`_shared`), so data of few values is not refused for values that recur."""
    if test is None or not len(test):
        return
    keys = _row_keys(test.X)
    for role, d in others:
        if d is None or not len(d):
            continue
        if is_lazy(d.X) != is_lazy(test.X):
            warnings.warn(f"{what}: the target test split and the {role} ({d.name!r}) are not both streamed "
                          "(?stream=1), so their samples were not compared for overlap; stream both sides (or "
                          "neither) to have a test sample seen in training refused", QianyiWarning, stacklevel=3)
            continue
        o = _shared(keys, _row_keys(d.X))
        n = o.shared
        if refuse and _refused(o, len(keys)):
            raise DataError(f"{what}: {n} of the {len(keys)} target test samples are also in the {role} "
                            f"({d.name!r}){_chance_note(o, len(keys))}: the specs overlap, so the score would count "
                            "samples seen in training; give disjoint data (e.g. rotmnist?angles ranges that do not "
                            "overlap, mfeat domains A and B, a --target-test not drawn from the source)")
        if _said(o):  # (data of few values: only more than chance is worth a word)
            warnings.warn(f"{what}: {n} of the {len(keys)} target test samples are identical to samples in the "
                          f"{role} ({d.name!r}){_chance_note(o, len(keys))}; duplicates in the data? they count as "
                          "seen in training", QianyiWarning, stacklevel=3)
        if test.keys is None or d.keys is None:
            continue
        made = _shared(test.keys.tolist(), d.keys.tolist())
        n_made = made.shared
        if n_made <= n:  # nothing that the comparison above did not find
            continue
        if refuse and _refused(made, len(keys)):
            raise DataError(f"{what}: {n_made} of the {len(keys)} target test samples are made from the same "
                            f"samples as the {role} ({d.name!r}), shifted or re-rendered (mnist-m and rotmnist are "
                            "MNIST re-rendered; idx:$QIANYI_DATA/mnist holds the test images of the built-in mnist), "
                            "so the score would count samples seen in training with their labels; give a target "
                            "(or --target-test) of other samples (for MNIST-M -> MNIST write mnist-m -> mnist, which "
                            "splits the MNIST pool into disjoint halves)")
        if not _said(made):
            continue
        warnings.warn(f"{what}: {n_made} of the {len(keys)} target test samples are made from the same samples as "
                      f"samples in the {role} ({d.name!r}), shifted or re-rendered; duplicates in the data? they "
                      "count as seen in training", QianyiWarning, stacklevel=3)


def _overlaps(o: _Overlap, n: int) -> bool:
    """The test split overlaps the target (the transductive protocol, or a test file sharing its rows): more
    samples once on each side than chance gives, by more than :data:`OVERLAP_REFUSED` of the test split (and
    :data:`OVERLAP_MIN`, or all of a smaller split); fewer are duplicates in the data."""
    return o.excess > OVERLAP_REFUSED * n + o.noise and o.excess >= min(OVERLAP_MIN, n)


#: Of the target's training samples, the share found in its test set that makes a target lying inside a larger test
#: set transductive (a capped target): fewer are duplicates in the data.
INSIDE_SHARE = 0.9


def transductive(o: _Overlap, n_test: int, n_target: int) -> bool:
    """Whether a target and its test set (``o``: their overlap, :func:`_shared`) are one set of samples: the test
    samples found among the target's beyond chance and noise (:func:`_overlaps`), or the target lying inside a larger
    test set (:data:`INSIDE_SHARE` of it found there, beyond chance). Duplicates in the data stay under both."""
    inside = o.shared >= INSIDE_SHARE * n_target and o.excess >= min(OVERLAP_MIN, n_target)
    return _overlaps(o, n_test) or inside


def count_test_in_target(task: TransferTask, what: str, max_samples: int | None = None) -> int:
    """How many of ``task``'s target test samples are also its target training samples, compared as
    :func:`check_test_overlap` compares (as they are, by :attr:`Domain.keys` for shifted or re-rendered copies,
    streamed images by their files' bytes, against chance); 0 below :func:`_overlaps` (duplicates in the data,
    warned about when the data has no recurring values) or when the sides cannot be compared (warned about).
    The overlap is judged against the smaller side: a target lying inside its test set (capped by
    ``max_samples``, --max-samples, which does not cap the test set) is transductive too, and warned about;
    a partial overlap (some samples of each side, not all of either) is warned about: likely a mistake."""
    test, target = task.target_test, task.target
    if test is None or not len(test) or not len(target):
        return 0
    if is_lazy(test.X) != is_lazy(target.X):
        warnings.warn(f"{what}: the target test split and the target ({target.name!r}) are not both streamed "
                      "(?stream=1), so their samples were not compared: a run that trains on test samples is not "
                      "marked transductive, and the oracle would train on their labels; stream both sides (or "
                      "neither)", QianyiWarning, stacklevel=3)
        return 0
    keys = _row_keys(test.X)
    o = _shared(keys, _row_keys(target.X))
    if test.keys is not None and target.keys is not None:
        made = _shared(test.keys.tolist(), target.keys.tolist())
        o = made if made.shared > o.shared else o
    n, n_target = len(keys), len(target)
    if not transductive(o, n, n_target):
        if o.shared and not o.found:  # every shared sample recurs within a side: nothing to compare by
            warnings.warn(f"{what}: {o.shared} of the {n} target test samples equal target training samples, but "
                          "each of them recurs within its side (data of few distinct values), so whether the target "
                          "holds its test samples cannot be told; it is not taken as transductive (if the test set is "
                          "the target itself, an oracle trains on its test labels)", QianyiWarning, stacklevel=3)
        elif o.shared and o.chance == 0:
            warnings.warn(f"{what}: {o.shared} of the {n} target test samples are identical to (or made from) "
                          f"target training samples, too few to call the task transductive; duplicates in the data? "
                          "only an oracle reads target labels, and it trains on theirs", QianyiWarning, stacklevel=3)
        return 0
    if n_target <= o.shared < n:  # every target training sample is a test sample: the test set is larger
        cap = (f" (--max-samples {max_samples} caps the target, not the --target-test, which is read whole)"
               if max_samples is not None else "")
        whole = "leave out --max-samples" if max_samples is not None else "give the test set itself as the target"
        warnings.warn(f"{what}: the target's {n_target} training samples ({target.name!r}) all lie in its test set "
                      f"of {n} samples{cap}, so {o.shared} of the test samples are training inputs and the others are "
                      "held out. The task is taken as transductive: the target's labels are dropped, so no oracle "
                      f"trains on them (for the transductive protocol on the whole test set {whole}; for a held-out "
                      "one give a test set of other samples)", QianyiWarning, stacklevel=3)
    elif o.shared < n:
        warnings.warn(f"{what}: {o.shared} of the {n} target test samples are also among the target's training "
                      f"samples ({target.name!r}), the others not{_chance_note(o, n)}: likely a mistake (give the "
                      "target itself as --target-test for the transductive protocol, or a test set of other samples "
                      "for a held-out one). The task is taken as transductive: the target's labels are dropped, so no "
                      "oracle trains on them", QianyiWarning, stacklevel=3)
    return o.shared


def _pool_key(base: str) -> str:
    """A spec's file without its options, its path resolved: ``folder:D``, ``folder:D/`` and ``folder:/abs/D``
    are one pool."""
    path = split_options(base)[0]
    kind, sep, rest = path.partition(":")
    return f"{kind}:{os.path.realpath(rest)}" if sep and rest else path


def _pool_range(origin: str) -> tuple[str, tuple[float, float] | None]:
    """The pool of samples behind an ``origin`` and, for a rotmnist range, its angles: rotmnist is the
    MNIST pool rotated (one angle per image, so disjoint ranges hold disjoint images)."""
    if origin.startswith("rotmnist:"):
        span, bracket, classes = origin.partition(":")[2].partition("[")  # a class subset: rotmnist:0-30[2, 3]
        lo, _, hi = span.rpartition("-")  # rpartition: "1e-05-5" is 1e-05 to 5
        try:
            return "mnist" + bracket + classes, (float(lo), float(hi))
        except ValueError:  # not a range qianyi wrote: a pool of its own
            return origin, None
    return origin, None


def origins_overlap(a: str, b: str) -> bool:
    """Whether two domains can hold the same samples: one ``origin`` (one pool), or different ones that share
    images: ``mnist`` (or ``mnist-m``, MNIST re-rendered) against a ``rotmnist`` range (the same images
    rotated), or two overlapping rotmnist ranges. A rotated or re-rendered copy escapes the byte-level test
    of :func:`check_test_overlap`."""
    (pa, ra), (pb, rb) = _pool_range(a), _pool_range(b)
    if pa != pb:
        return False
    if ra is None or rb is None:
        return True
    return ra[0] < rb[1] and rb[0] < ra[1]


def _csv_rows_disjoint(sbase: str, tbase: str) -> bool:
    """Whether the row filters of two specs of one CSV file provably keep no row in common."""
    a, b = _csv_filter_sets(sbase), _csv_filter_sets(tbase)
    for x, y in ((a, b), (b, a)):
        if "where" in x and "where" in y and x["where"][0] == y["where"][0] and not x["where"][1] & y["where"][1]:
            return True
        if "where" in x and "where_not" in y and x["where"][0] == y["where_not"][0] \
                and x["where"][1] <= y["where_not"][1]:
            return True
    return False


def _keyed(d: Domain) -> Domain:
    """``d`` with :attr:`Domain.keys`, the digests of its samples as read (built-ins set their own: ``mnist-m``
    and ``rotmnist`` rows carry their MNIST image's); streamed folders get none (their files are compared)."""
    return d if d.keys is not None or is_lazy(d.X) else d._replace(keys=sample_keys(d.X))


def _subsample(d: Domain, n: int | None, seed: int) -> Domain:
    if n is None or len(d) <= n:
        return d
    _, keep = stratified_split(d.y, len(d), n / len(d), seed, every_class=True)
    return d.subset(keep)


def load_task(source: "str | os.PathLike[str]", target: "str | os.PathLike[str]", *,
              target_test: "str | os.PathLike[str] | None" = None,
              data_dir: str | os.PathLike | None = None, test_fraction: float = 0.3, val_fraction: float = 0.1,
              split_seed: int = 0, max_samples: int | None = None, vector_transform: str = "auto",
              standardize: bool = True, text: dict | None = None, classifier: bool = True,
              optional_target_labels: bool = False) -> TransferTask:
    """Build a :class:`TransferTask` from specs.

    Two domains drawn from one pool of images (``mnist`` and ``mnist-m``, ``fashion`` and
    ``fashion+invert``) get disjoint halves of it, so no image is on both sides. Both domains are
    brought to their common canvas (:func:`qianyi.data.canvas.common_canvas`) before shifts.
    ``max_samples`` caps each domain (stratified; every class keeps at least one sample). Splits depend on
    ``split_seed`` only, so every method and training seed is scored on the same target test set.

    The target may be unlabelled. Its test split is ``target_test`` (a labelled spec, scored only;
    then all of the target trains), else ``test_fraction`` of a labelled target; with
    ``test_fraction=0`` or an unlabelled target there is none and accuracy is unknown. A ``target_test``
    whose samples the target also holds (``target_test=target``, the transductive protocol, or a file sharing
    its rows: :func:`count_test_in_target`) makes the target's labels the test set's: they are dropped (the
    target read as unlabelled, so no oracle trains on them) and ``task.test_in_target`` counts those samples.
    ``optional_target_labels=True`` (a caller that needs no target label: ``measure``, ``advise``, ``run
    --target-all``; without ``target_test``): target labels that do not fit the source's classes are dropped with
    a warning, not refused (:meth:`TransferTask.from_domains`).
    ``task.preprocessing`` records what was done to the inputs (the canvas), so that a saved model
    can apply it to new data (:func:`prepare`).

    Vector inputs (not images) then get ``vector_transform`` (one of :data:`VECTOR_TRANSFORMS`;
    ``"auto"``: :data:`COUNT_TRANSFORM` for sparse non-negative data such as bag-of-words counts
    and histograms, else ``"none"``) and, with ``standardize``, a per-feature z-score whose mean and
    standard deviation are fitted on the source and target **training** inputs together (never on
    labels, never on the target test set). Both are recorded in ``task.preprocessing``
    (``"vector_transform"``, ``"standardize": {"mean": [...], "std": [...]}``) and re-applied by
    :func:`prepare`.

    Text domains (raw strings, :mod:`qianyi.data.text`) are tokenised instead, the vocabulary fitted on the
    source and target training inputs (``text``: settings of :func:`qianyi.data.text.fit_text_preprocessing`,
    e.g. ``{"bigrams": True}``) and recorded in ``task.preprocessing["text"]``.

    A spec may also be a file path (``pathlib.Path("data.csv")``: read as ``csv:data.csv``, :func:`as_spec`).
    """
    source, target = as_spec(source), as_spec(target)
    target_test = None if target_test is None else as_spec(target_test)
    if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)) or \
            not 0 <= split_seed < 2 ** 32 - 2:  # (two domains from two files split with seed + 1)
        raise ConfigError(f"split_seed (--split-seed) must be a whole number between 0 and {2 ** 32 - 3}, "
                          f"got {split_seed!r}")
    if vector_transform != "auto" and vector_transform not in VECTOR_TRANSFORMS:
        raise UnknownNameError(f"vector_transform must be 'auto' or one of {', '.join(VECTOR_TRANSFORMS)}, "
                               f"got {vector_transform!r}")
    root = resolve_data_dir(data_dir)
    (sbase, sshift), (tbase, tshift) = parse_spec(source), parse_spec(target)
    test_spec = None if target_test is None else parse_spec(target_test)
    # (before reading: a mismatch is refused at once; a test folder naming no ?resize= is read with the run's)
    named_test = [test_spec[0]] if test_spec is not None and _names_option(test_spec[0], "resize") else []
    resize = _folder_resize([sbase, tbase, *named_test])
    # readers that can read part of a folder do so (an image folder decodes only the files kept)
    one_pool = _pool_key(sbase) == _pool_key(tbase)  # one file, maybe read with other options (or spelt otherwise)
    cap = None if max_samples is None else 2 * max_samples if one_pool else max_samples
    s, t = _load_base(sbase, root, cap, split_seed), _load_base(tbase, root, cap, split_seed + (not one_pool))
    s, t = _freeze(s), _freeze(t)  # (read here, held by no one else: shared, not copied, until the task is made)
    s, t = _keyed(s), _keyed(t)  # each sample's identity before canvas and shifts (check_test_overlap)
    if s.origin == t.origin:  # one pool of samples (the same file, or mnist and mnist-m): disjoint halves
        if len(s) != len(t):
            raise DataError(f"{source!r} and {target!r} are drawn from one pool of samples ({s.origin!r}) but hold "
                            f"{len(s)} and {len(t)} samples; they must be the same pool to be split in halves")
        half_a, half_b = stratified_split(s.y, len(s), 0.5, split_seed + 17)
        s, t = _freeze(s.subset(half_a)), _freeze(t.subset(half_b))
    elif origins_overlap(s.origin, t.origin):
        raise DataError(f"{source!r} and {target!r} hold the same images ({s.origin!r} and {t.origin!r}: rotmnist is "
                        "MNIST rotated), so target test images would be rotated copies of labelled source ones; "
                        "pair rotmnist ranges that do not overlap, e.g. rotmnist?angles=0-5 -> rotmnist?angles=55-60")
    elif one_pool and sbase.startswith("csv:") and not _csv_rows_disjoint(sbase, tbase):
        warnings.warn(f"{source!r} and {target!r} are rows of one CSV file chosen by row filters that may overlap "
                      f"({s.origin!r} vs {t.origin!r}): a row in both is trained on as source and scored as target; "
                      "make the filters disjoint on one column (e.g. where=C:a on one side, where=C:b or "
                      "where_not=C:a on the other)", QianyiWarning, stacklevel=2)
    t = _freeze(match_features(s.feature_names, t, f"source {s.name!r}"))
    s, t = _freeze(_subsample(s, max_samples, split_seed)), _freeze(_subsample(t, max_samples, split_seed + 1))
    if s.is_text != t.is_text:
        raise DataError(f"{source!r} holds {'text' if s.is_text else 'no text'} but {target!r} holds "
                        f"{'text' if t.is_text else 'no text'}; both domains must be of one kind")
    if text and not s.is_text:  # (bench --text over image pairs too: a warning, not an error)
        warnings.warn(f"text settings {text} apply to text domains; {source!r} -> {target!r} holds "
                      f"{'images' if s.is_image else 'vectors'}, so they are ignored", QianyiWarning, stacklevel=2)
    if s.is_image != t.is_image:
        raise DataError(f"{source!r} holds {'images' if s.is_image else 'vectors'} but {target!r} holds "
                        f"{'images' if t.is_image else 'vectors'}; both domains must be of one kind")
    canvas = common_canvas(s, t) if s.is_image else None
    pre = {"canvas": None if canvas is None else asdict(canvas), "feature_names": s.feature_names}
    if resize is not None:  # (recorded only when not the default: a padded run's preprocessing is as before)
        pre["folder_resize"] = resize
    s, t = _freeze(prepare(s, pre, sshift, source)), _freeze(prepare(t, pre, tshift, target))
    test = None
    if test_spec is not None:
        base, shift = test_spec
        test_base = _keyed(_freeze(_load_base(with_folder_size(base, None, resize), root)))
        if origins_overlap(test_base.origin, s.origin):
            raise DataError(f"--target-test {target_test!r} is drawn from the source's pool of samples "
                            f"({test_base.origin!r}; the source {source!r} holds part of it, maybe rotated or "
                            "re-rendered): the score would count images the network was trained on with their "
                            "labels; give a test set of other images")
        test = _freeze(prepare(test_base, pre, shift, target_test))
    task = TransferTask.from_domains(s, t, target_test=test, test_fraction=test_fraction, val_fraction=val_fraction,
                                     seed=split_seed, classifier=classifier,
                                     optional_target_labels=optional_target_labels and target_test is None)
    disjoint_rows = one_pool and sbase.startswith("csv:") and s.origin != t.origin and _csv_rows_disjoint(sbase, tbase)
    check_test_overlap(task.target_test, [("labelled source", s)], f"{source} -> {target}",  # train and val rows
                       refuse=not (disjoint_rows and target_test is None))
    shared = 0 if target_test is None else count_test_in_target(  # (a split made here is disjoint rows)
        task, f"{source} -> {target} --target-test {target_test}", max_samples)
    if shared:  # the target's labels are its test set's: dropped before anything trains (no oracle on them)
        task = replace(task, target=task.target._replace(y=None), test_in_target=shared)
    if task.source.is_text:
        task = tokenize_task(task, pre, **(text or {}))
        pre = task.preprocessing
    elif not task.is_image:
        pre.update(fit_vector_preprocessing(np.concatenate([task.source.X, task.target.X]), vector_transform,
                                            standardize))
        parts = {k: getattr(task, k) for k in ("source", "source_val", "target", "target_test")}
        task = replace(task, **{k: None if d is None else d.replace(X=transform_vectors(d.X, pre, d.name))
                                for k, d in parts.items()})
    parts = {k: getattr(task, k) for k in ("source", "source_val", "target", "target_test")}
    thaw = {k: d.replace() for k, d in parts.items() if d is not None and _checked(d.X)}  # writable copies for the user
    return replace(task, preprocessing=pre, **thaw)


def _row_transform(X: np.ndarray, kind: str) -> np.ndarray:
    X = np.asarray(X, np.float32)
    if kind == "log1p":
        return np.sign(X) * np.log1p(np.abs(X))
    if kind in ("l1", "l2"):
        norm = np.abs(X).sum(1, keepdims=True) if kind == "l1" else np.sqrt((X * X).sum(1, keepdims=True))
        return X / np.where(norm > 0, norm, 1).astype(np.float32)
    return X


def fit_vector_preprocessing(X: np.ndarray, vector_transform: str = "auto", standardize: bool = True) -> dict:
    """The plain-JSON vector preprocessing fitted on training inputs ``X`` (no labels): see :func:`load_task`."""
    counts = bool(X.size and (X >= 0).all() and (X == 0).mean() >= COUNT_ZERO_FRACTION)
    kind = (COUNT_TRANSFORM if counts else "none") if vector_transform == "auto" else vector_transform
    # "counts": sparse non-negative inputs (bag-of-words, histograms), which get the wider default network
    out: dict = {"vector_transform": kind, "counts": counts}
    if standardize:
        Z = _row_transform(X, kind).astype(np.float64)
        mean, std = Z.mean(0), Z.std(0)
        # constant (to float precision of its own values, not of the largest column's): centred only
        std = np.where(std > 1e-6 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        out["standardize"] = {"mean": mean.astype(np.float32).tolist(), "std": std.astype(np.float32).tolist()}
    return out


def transform_vectors(X: np.ndarray, preprocessing: dict, name: str = "the data") -> np.ndarray:
    """Apply the recorded row transform and standardisation to vectors ``X`` (n, d)."""
    X = _row_transform(X, preprocessing.get("vector_transform") or "none")
    std = preprocessing.get("standardize")
    if std:
        mean, scale = np.asarray(std["mean"], np.float32), np.asarray(std["std"], np.float32)
        if X.shape[1] != len(mean):
            raise DataError(f"{name!r} has {X.shape[1]} features but the model was trained on {len(mean)}; "
                            "give the same columns (for svmlight files, ?n_features=N fixes the width)")
        X = (X - mean) / scale
    return X.astype(np.float32)


def prepare(d: Domain, preprocessing: dict, shifts: Sequence[str] = (), name: str | None = None) -> Domain:
    """Bring a freshly read domain to a task's inputs: its columns (by name), its canvas, ``shifts``, then
    (vectors) the recorded row transform and standardisation."""
    names = preprocessing.get("feature_names")
    if names is not None:
        d = match_features(names, d, "the model's inputs")
    if "canvas" in preprocessing:  # None: vectors
        canvas = preprocessing["canvas"]
        if canvas is not None and not d.is_image:
            raise DataError(f"{d.name!r} holds vectors, but the model reads images")
        if canvas is None and d.is_image:
            raise DataError(f"{d.name!r} holds images, but the model reads vectors")
        if canvas is not None:
            d = to_canvas(d, Canvas(**canvas))
    if shifts:
        if is_lazy(d.X):
            raise DataError(f"{name or d.name!r}: shifts ({', '.join(shifts)}) apply to images held in memory, not to a "
                            "streamed folder (stream=1); drop stream=1 or the shifts")
        d = d.replace(X=apply_shifts(d.X, list(shifts), name or d.name))
    if preprocessing.get("text") is not None or (d.is_text and "vector_transform" in preprocessing):
        d = encode_domain(d, preprocessing.get("text"), name)  # a text model's vocabulary, max_len
    elif not d.is_image and ("standardize" in preprocessing or "vector_transform" in preprocessing):
        d = d.replace(X=transform_vectors(d.X, preprocessing, name or d.name))
    return d._replace(name=name) if name else d


def load_via(spec: str, task: TransferTask, data_dir: str | os.PathLike | None = None,
             max_samples: int | None = None, seed: int = 0) -> Domain:
    """An intermediate ("stepping-stone") domain for ``task``, unlabelled, in the task's input form (its
    canvas, column order and vector preprocessing; :func:`prepare`); ``max_samples`` caps it
    (stratified when it has labels).

    It must not be drawn from the source's or the target's pool of samples (the same file, or
    ``mnist`` and ``mnist-m``): it would share images with them, target test images included. A via
    domain sharing target test samples is refused; one made mostly of the source's or the target's
    training samples (a copy under another name) is warned about.
    """
    base, shifts = parse_spec(spec)
    d = _keyed(_load_base(base, resolve_data_dir(data_dir)))
    for side, other in (("source", task.source), ("target", task.target)):
        if origins_overlap(d.origin, other.origin):
            raise DataError(f"via domain {spec!r} is drawn from the {side}'s pool of samples ({d.origin!r}), so it "
                            f"would share samples with the {side} (and its test split); give disjoint data, e.g. "
                            "rotmnist?angles=LO-HI ranges that do not overlap")
    if max_samples is not None and len(d) > max_samples:
        d = _subsample(d, max_samples, seed) if d.y is not None else \
            d.subset(np.sort(np.random.default_rng(seed).choice(len(d), max_samples, replace=False)))
    d = prepare(d, task.preprocessing or {}, shifts, spec).replace(y=None)
    check_test_overlap(task.target_test, [(f"via domain {spec!r}", d)], f"via {spec}")
    for side, other in (("source", task.source), ("target", task.target)):  # not an error: a chain that degenerates
        if len(d) and not is_lazy(d.X) and not is_lazy(other.X):
            theirs = set(_row_keys(other.X))
            n = sum(k in theirs for k in _row_keys(d.X))
            if 2 * n > len(d):
                warnings.warn(f"via domain {spec!r}: {n} of its {len(d)} samples are the {side}'s training samples, "
                              f"so this stepping stone is the {side} again and adds no step between them; give data "
                              "that lies between source and target", QianyiWarning, stacklevel=2)
    return d
