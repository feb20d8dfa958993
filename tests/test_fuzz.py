"""Property-based fuzzing (Hypothesis) of the hostile-input hardening.

What is fuzzed, and the property each test checks:

* the four file readers, through ``load_domain(spec)`` and ``load_task(spec, spec)`` (one file on both
  sides: one pool split in halves), one test per reader. Each generator builds a well-formed input,
  then applies a few faults, so that valid inputs reach the later checks and broken ones hit each
  early check:

  - ``npz``: random bytes; zips whose .npy members carry forged headers (format version, dtype,
    fortran order, shapes up to 2**63 and negative, header text that does not parse) and payloads
    of any length, renamed, missing, truncated or bit-flipped; ``numpy.savez`` of odd arrays (vectors
    and images in every layout, NaN/inf/huge values, bad labels, class names);
  - ``idx``: IDX files with forged magic, 0..5 dimensions, sizes that overflow, payloads of any
    length, plain, gzipped, truncated gzip or gzip with trailing bytes, with or without labels;
  - ``csv``: generated tables (duplicate, empty or label-like headers, ragged rows, cells that are
    not numbers) and free text biased to CSV structure (quotes, BOM, NUL, CR, non-ASCII), in UTF-8,
    Latin-1 or UTF-16, plain or gzipped, with ``?label=``/``?drop=``/unknown options;
  - ``folder``: class sub-folders of small images in many formats and modes, truncated or
    bit-flipped images, junk with an image suffix, header-only PNG "bombs", nested and empty
    folders, and ``?size=`` values that are not sizes.

  Property: the outcome is a valid result (finite float32 inputs, images in [0, 1], labels in
  0..k-1, consistent splits) or a :class:`~qianyi.errors.QianyiError`; never another exception.
  Where the generator knows its input is valid, it must load (npz from ``numpy.savez`` of finite
  arrays), and an image whose file holds two distinct colours must not come out flat (folder,
  lossless formats).

* the CLI's ``run`` command, called in-process with generated flags (training flags, ``--set`` for
  the method's settings, ``--out`` folders that cannot be used or hold another run, ``--init-from``
  files that are not models, specs that do not resolve): ``main`` returns 0 or 2, or argparse exits
  with 2; exit 2 prints ``qianyi: error: ...`` and no traceback; exit 0 with ``--out`` leaves a
  result.json whose target accuracy is a finite number in [0, 1].

* resuming ``qianyi run`` from a tampered checkpoint (one entry, at any depth, deleted or replaced
  by junk): exit 0, or exit 2 with ``qianyi: error:``.

Bounds: the tests run with ``QIANYI_MAX_BYTES=4M`` and ``QIANYI_MAX_IMAGE_PIXELS=1000000``. Each
reader example's peak traced Python/numpy allocation (tracemalloc; torch's own allocations are not
traced) must stay under ``MEMORY_FACTOR`` (64) times the byte limit in force: 256 MiB, or 16 MiB for
the big CSV files, which are generated under a 256 KiB limit so that a file near the limit parses
in a fraction of a second. The process's peak RSS must not grow by more than ``RSS_GROWTH_BOUND``
(1 GiB) over this module (checked after each example and at the end; Linux only).

Explicit examples (``@example``) pin the bugs the fuzzing found, so they are checked on every run
(while one of a test's explicit examples fails, Hypothesis skips that test's generated examples).
The generated examples are fixed (``derandomize=True``) and not shrunk, so the file takes ~20 s on a
2-core machine and a failure costs no more than a pass. To hunt for bugs, scale the example counts
and draw fresh random examples (the explicit ones are skipped), shrunk to a minimal one on failure::

    QIANYI_FUZZ_EXAMPLES=10 .venv/bin/python -m pytest tests/test_fuzz.py --hypothesis-show-statistics

(``QIANYI_FUZZ_EXAMPLES=N`` multiplies every example count by N; a failure prints the minimal example
and an ``@reproduce_failure`` blob. ``--hypothesis-show-statistics`` shows the mix of outcomes.)
"""
from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import math
import os
import re
import shutil
import struct
import sys
import tempfile
import tracemalloc
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis (pip install hypothesis)")
from hypothesis import HealthCheck, Phase, event, example, given, note, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402
from PIL import Image  # noqa: E402

from qianyi.cli import main  # noqa: E402
from qianyi.data.domain import Domain, TransferTask  # noqa: E402
from qianyi.data.readers import IMAGE_SUFFIXES  # noqa: E402
from qianyi.data.tasks import load_domain, load_task  # noqa: E402
from qianyi.errors import QianyiError  # noqa: E402
from qianyi.methods.registry import available_methods  # noqa: E402
from qianyi.select import available_validators  # noqa: E402

MAX_BYTES = 4 << 20
SMALL_LIMIT = 256 << 10  # for big CSV files: as telling as a file at MAX_BYTES, and 16 times faster
MAX_PIXELS = 1_000_000
MEMORY_FACTOR = 64
MEMORY_BOUND = MEMORY_FACTOR * MAX_BYTES
RSS_GROWTH_BOUND = 1 << 30

SCALE = float(os.environ.get("QIANYI_FUZZ_EXAMPLES", "") or 0)  # 0: the fixed, CI-sized run


def fuzz(examples: int):
    """Hypothesis settings: the explicit examples and ``examples`` fixed ones, or (hunting) only
    ``examples * QIANYI_FUZZ_EXAMPLES`` random ones.

    The fixed run does not shrink (a failure shows the generated example, which is small already), so a
    regression costs no more time than a pass. The hunting run skips the explicit examples (so that the
    bugs they pin do not stop it from looking for others) and shrinks a failure to a minimal example.
    """
    return settings(max_examples=max(1, round(examples * SCALE)) if SCALE else examples,
                    derandomize=not SCALE, database=None, deadline=None, print_blob=True,
                    phases=[Phase.generate, Phase.target, Phase.shrink] if SCALE else [Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example,
                                           HealthCheck.function_scoped_fixture])


def one_in(k: int):
    """True about once in ``k`` draws (on a middle value: Hypothesis tries the ends of a range more often)."""
    return st.integers(1, k).map(lambda i: i == (k + 1) // 2)


def some(n: int = 2):
    """How many faults to apply: none two times in n + 2, else 1..n."""
    return st.sampled_from([0, 0, *range(1, n + 1)])


# --- bounds ----------------------------------------------------------------------------------

LINUX = sys.platform.startswith("linux")
_RSS_AT_START: list[int] = []


def _max_rss() -> int:
    """The process's peak resident memory in bytes (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.fixture(scope="module", autouse=True)
def _limits():
    """Small size limits for the whole module (they are read at each call), and the RSS baseline."""
    if LINUX:
        _RSS_AT_START.append(_max_rss())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QIANYI_MAX_BYTES", str(MAX_BYTES))
        mp.setenv("QIANYI_MAX_IMAGE_PIXELS", str(MAX_PIXELS))
        yield


def check_rss(what: str) -> None:
    if LINUX and _RSS_AT_START:
        grew = _max_rss() - _RSS_AT_START[0]
        assert grew < RSS_GROWTH_BOUND, f"{what}: peak RSS grew by {grew / 2**20:.0f} MiB over this module"


@pytest.fixture
def traced():
    """tracemalloc on for one test (numpy array data is traced too; torch's is not)."""
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start(1)
    yield
    if started:
        tracemalloc.stop()


@contextlib.contextmanager
def bounded_memory(what: str, max_bytes: int = MAX_BYTES):
    """Run the block with ``QIANYI_MAX_BYTES=max_bytes``: its peak traced allocation must stay under
    ``MEMORY_FACTOR * max_bytes`` (MEMORY_BOUND at the module's limit), and the RSS under its bound."""
    bound = MEMORY_FACTOR * max_bytes
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QIANYI_MAX_BYTES", str(max_bytes))
        yield
    peak = tracemalloc.get_traced_memory()[1] - before
    assert peak < bound, (f"{what}: peak traced allocation {peak / 2**20:.1f} MiB, more than {MEMORY_FACTOR} x "
                          f"QIANYI_MAX_BYTES={max_bytes >> 10} KiB = {bound >> 20} MiB")
    check_rss(what)


# --- outcomes --------------------------------------------------------------------------------

def outcome(fn, *args, **kwargs):
    """``fn``'s result, or the QianyiError it raised. Any other exception propagates: a bug."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # QianyiWarning (tiny splits), numpy casts, Pillow palettes
            result = fn(*args, **kwargs)
    except QianyiError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        event(f"{fn.__name__}: {type(exc).__name__}: {gist(exc)}")  # --hypothesis-show-statistics shows the mix
        return exc
    event(f"{fn.__name__}: {type(result).__name__}")
    return result


def gist(message: object) -> str:
    """The start of a message with its names and numbers left out, to group outcomes in the statistics."""
    return re.sub(r"'[^']*'|\"[^\"]*\"|-?\d[\d,.]*", "_", str(message))[:40]


def check_domain(d: Domain) -> None:
    assert isinstance(d, Domain)
    X = d.X
    assert X.dtype == np.float32 and X.ndim in (2, 4) and len(X) >= 1 and 0 not in X.shape, X.shape
    assert np.isfinite(X).all()
    if X.ndim == 4:
        assert X.min() >= -1e-5 and X.max() <= 1 + 1e-5, (X.min(), X.max())
    if d.y is not None:
        assert d.y.dtype == np.int64 and d.y.shape == (len(X),) and d.y.min() >= 0
        assert d.y.max() < d.n_classes
    if d.feature_names is not None:
        assert X.ndim == 2 and len(d.feature_names) == X.shape[1]


def check_task(t: TransferTask) -> None:
    assert isinstance(t, TransferTask)
    for d in (t.source, t.source_val, t.target, t.target_test):
        check_domain(d)
        assert d.sample_shape == t.sample_shape
        if d.y is not None:
            assert d.y.max() < t.n_classes
    assert t.source.y is not None and t.target_test.y is not None


# --- files: generated as small descriptions, rendered when written --------------------------

DIR = "<dir>"  # a value in Case.files: make a folder


@dataclass(frozen=True)
class Blob:
    """``n`` bytes: zeros, pseudo-random ones (``seed``), or class labels ``i % 3`` stored as ``labels``
    (a dtype, e.g. '<i8', or '<U1' for the names '0', '1', '2'). A description, so that a failing example
    prints small."""

    n: int
    seed: int | None = None
    labels: str | None = None

    def render(self) -> bytes:
        if self.labels:
            dt = np.dtype(self.labels)
            data = (np.arange(-(-self.n // dt.itemsize)) % 3).astype(dt).tobytes()
            return data[:self.n]
        return bytes(self.n) if self.seed is None else np.random.default_rng(self.seed).bytes(self.n)


@dataclass(frozen=True)
class Damage:
    """Cut a rendered file to a fraction of its length and/or overwrite bytes at relative positions."""

    cut: float | None = None
    flips: tuple[tuple[float, int], ...] = ()

    def apply(self, data: bytes) -> bytes:
        b = bytearray(data[:int(len(data) * self.cut)] if self.cut is not None else data)
        for pos, value in self.flips:
            if b:
                b[min(int(pos * len(b)), len(b) - 1)] = value
        return bytes(b)


@st.composite
def damages(draw) -> Damage:
    cut = draw(st.none() | st.floats(0, 1))
    flips = tuple(draw(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=cut is None, max_size=3)))
    return Damage(cut, flips)


@dataclass
class Case:
    """Files to write under a fresh folder, and the spec naming them (``{dir}`` is that folder)."""

    files: dict[str, object]
    spec: str
    max_samples: int | None = None
    max_bytes: int = MAX_BYTES  # QIANYI_MAX_BYTES for this case; the memory bound is MEMORY_FACTOR times it
    must_load: bool = False  # the generator knows the input is valid: load_domain must succeed
    details: dict[str, bool] = field(default_factory=dict)  # folder: image path -> must not come out flat


def write_files(root: Path, files: dict[str, object]) -> None:
    for rel, content in files.items():
        p = root / rel
        if content == DIR:
            p.mkdir(parents=True, exist_ok=True)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.render())


def check_reader(case: Case) -> None:
    """Write the case's files, then: load_domain and load_task(spec, spec) give a valid result or a QianyiError."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_files(root, case.files)
        spec = case.spec.format(dir=root)
        with bounded_memory(f"load_domain({spec!r})", case.max_bytes):
            d = outcome(load_domain, spec)
        if case.must_load:
            assert isinstance(d, Domain), f"valid input refused: {d}"
        if isinstance(d, Domain):
            check_domain(d)
            check_details(root, d, case.details)
        del d
        with bounded_memory(f"load_task({spec!r}, {spec!r})", case.max_bytes):
            t = outcome(load_task, spec, spec, max_samples=case.max_samples)
        if isinstance(t, TransferTask):
            check_task(t)


OPTION_FAULTS = ["bogus=1", "name", "=1", "name=a=b", "name=x&name=y", "size=8", "label=y", "drop=a", "", "&&"]


@st.composite
def spec_tail(draw, options: list[str] | None = None, shifts: bool = False) -> str:
    """``?options`` (given ones, or now and then a malformed or unknown one) and maybe a shift."""
    options = list(options or [])
    if draw(one_in(6)):
        options.append(draw(st.sampled_from(OPTION_FAULTS)))
    if draw(one_in(6)):
        options.append("name=" + draw(st.sampled_from(["x", "", "é", "a+b"])))
    shift = draw(st.sampled_from(["+invert", "+rot30", "+noise0.2", "+blur1", "+rot-400.5"])) \
        if shifts and draw(one_in(5)) else ""
    return ("?" + "&".join(options) if options else "") + shift


max_samples = st.one_of(st.none(), st.none(), st.none(), st.integers(-1, 30))


# --- npz -------------------------------------------------------------------------------------

NUMERIC = ["<f4", "<f8", "|u1", "<i8", ">f4", "|b1", "<f2"]
DESCRS = ["<f4", "<f8", "|u1", "<i8", "|b1", "<U3", "|O", ">f4", "<c8", "<f2", "<u8", "|S2", "<M8[s]", "|V4",
          "not-a-dtype"]
SIZES = [0, 1, 2, 3, 7, 28, 10**6, 10**12, -1, 2**63]


@dataclass(frozen=True)
class Npy:
    """One .npy member: a header (built from its fields, or free text) and a payload."""

    descr: str
    shape: tuple
    payload: Blob
    fortran_order: bool = False
    version: tuple[int, int] = (1, 0)
    text: str | None = None  # a header text that replaces the one built from the fields

    def render(self) -> bytes:
        text = self.text if self.text is not None else repr(
            {"descr": self.descr, "fortran_order": self.fortran_order, "shape": self.shape})
        raw = text.encode("utf-8" if self.version[0] >= 3 else "latin-1", "replace")
        prefix = 10 if self.version[0] == 1 else 12
        raw += b" " * (-(prefix + len(raw) + 1) % 64) + b"\n"
        size = struct.pack("<H", len(raw) % 65536) if self.version[0] == 1 else struct.pack("<I", len(raw))
        return b"\x93NUMPY" + bytes(self.version) + size + raw + self.payload.render()


@dataclass(frozen=True)
class Npz:
    """A zip of members (stored or deflated), maybe damaged afterwards."""

    members: tuple[tuple[str, Npy], ...]
    deflate: bool = False
    damage: Damage = Damage()

    def render(self) -> bytes:
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicate member names
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if self.deflate else zipfile.ZIP_STORED) as zf:
                for name, member in self.members:
                    zf.writestr(name, member.render())
        return self.damage.apply(buf.getvalue())


@dataclass(frozen=True)
class Savez:
    """``numpy.savez`` of the given arrays."""

    arrays: tuple[tuple[str, np.ndarray], ...]

    def render(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **dict(self.arrays))
        return buf.getvalue()


def _nbytes(descr: str, shape: tuple) -> int | None:
    try:
        return math.prod(shape) * np.dtype(descr).itemsize
    except (TypeError, ValueError, OverflowError):
        return None


@st.composite
def npy_member(draw, role: str, n: int) -> Npy:
    """A well-formed member for ``role`` (X, y, class_names) of ``n`` samples."""
    if role == "X":
        hw = st.integers(1, 10)
        layout = draw(st.sampled_from(["vectors", "vectors", "nhw", "nchw", "nhwc"]))
        shape = {"vectors": lambda: (n, draw(st.integers(1, 6))), "nhw": lambda: (n, draw(hw), draw(hw)),
                 "nchw": lambda: (n, draw(st.sampled_from([1, 3])), draw(hw), draw(hw)),
                 "nhwc": lambda: (n, draw(hw), draw(hw), draw(st.sampled_from([1, 3, 4])))}[layout]()
        descr = draw(st.sampled_from(NUMERIC))
        fill = draw(st.sampled_from(["zeros", "pattern", "random"]))
        payload = Blob(_nbytes(descr, shape), seed=1 if fill == "random" else None,
                       labels=descr if fill == "pattern" else None)
        return Npy(descr, shape, payload)
    if role == "y":
        descr = draw(st.sampled_from(["<i8", "|u1", "<f8", "<i4"]))
        return Npy(descr, (n,), Blob(_nbytes(descr, (n,)), labels=descr))
    return Npy("<U1", (3,), Blob(12, labels="<U1"))  # the names '0', '1', '2'


@st.composite
def member_fault(draw, m: Npy) -> Npy:
    """One fault in a member's header or payload."""
    kind = draw(st.sampled_from(["descr", "shape", "shape", "order", "version", "text", "payload", "payload"]))
    if kind == "descr":
        return replace(m, descr=draw(st.sampled_from(DESCRS)))
    if kind == "shape":
        return replace(m, shape=tuple(draw(st.lists(st.sampled_from(SIZES), max_size=4))))
    if kind == "order":
        return replace(m, fortran_order=True)
    if kind == "version":
        return replace(m, version=draw(st.sampled_from([(2, 0), (3, 0), (0, 9), (1, 1)])))
    if kind == "text":
        text = repr({"descr": m.descr, "fortran_order": m.fortran_order, "shape": m.shape})
        return replace(m, text=draw(st.one_of(
            st.text(max_size=40), st.integers(0, len(text)).map(lambda i: text[:i]),
            st.sampled_from(["{'descr': '<f4', 'fortran_order': False, 'shape': (True, 2.5)}",
                             "{'descr': '<f4', 'fortran_order': 0, 'shape': [3]}", "(" * 300 + ")" * 300,
                             "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'extra': 1}"]))))
    exact = _nbytes(m.descr, m.shape)
    near = [st.integers(max(0, exact - 8), exact + 8)] if exact is not None and 0 <= exact <= MAX_BYTES else []
    return replace(m, payload=replace(m.payload, n=draw(st.one_of(st.integers(0, 300), *near))))


@st.composite
def forged_npz(draw) -> Npz:
    """A well-formed npz written by hand, then 0-3 faults: in a member, in the names, in the zip."""
    n = draw(st.integers(0, 3) if draw(one_in(8)) else st.integers(12, 40))
    roles = ["X", *draw(st.sampled_from([["y"], ["y"], ["y", "class_names"], []]))]
    members = [[f"{r}.npy", draw(npy_member(r, n))] for r in roles]
    damage = Damage()
    for _ in range(draw(some(3))):
        kind = draw(st.sampled_from(["member", "member", "member", "name", "drop", "extra", "damage"]))
        i = draw(st.integers(0, len(members) - 1)) if members else None
        if kind == "member" and members:
            members[i][1] = draw(member_fault(members[i][1]))
        elif kind == "name" and members:
            members[i][0] = draw(st.sampled_from(["X", "y", "X.npy.npy", "../X.npy", "x.npy", "X.NPY", "y.npy"]))
        elif kind == "drop" and members:
            del members[i]
        elif kind == "extra":
            members.append([draw(st.sampled_from(["X.npy", "other.npy", "class_names.npy"])),
                            draw(npy_member("X", n))])
        elif kind == "damage":
            damage = draw(damages())
    return Npz(tuple((k, m) for k, m in members), draw(st.booleans()), damage)


def _elements(dtype: np.dtype, extreme: bool):
    if dtype.kind != "f":
        return hnp.from_dtype(dtype)
    if extreme:
        return hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True)
    return st.floats(-100, 100, width=min(64, dtype.itemsize * 8))


@st.composite
def savez_arrays(draw) -> tuple[tuple[tuple[str, np.ndarray], ...], bool]:
    """(arrays for numpy.savez, whether load_domain must accept them): valid arrays, then 0-2 faults."""
    faults = draw(st.lists(st.sampled_from(["layout", "size", "values", "labels", "names"]), max_size=2))
    layouts = ["vectors", "vectors", "nhw", "nhwc", "nchw"]
    if "layout" in faults:
        layouts += ["flat", "5d", "empty-dim"]
    layout = draw(st.sampled_from(layouts))
    n = draw(st.integers(0, 3) if "size" in faults else st.integers(12, 30))
    hw = st.integers(1, 12)
    shape = {"vectors": lambda: (n, draw(st.integers(1, 8))), "nhw": lambda: (n, draw(hw), draw(hw)),
             "nhwc": lambda: (n, draw(hw), draw(hw), draw(st.sampled_from([1, 2, 3, 4]))),
             "nchw": lambda: (n, draw(st.sampled_from([1, 3])), draw(hw), draw(hw)), "flat": lambda: (n,),
             "5d": lambda: (n, 1, 2, 2, 1), "empty-dim": lambda: (n, 0, 3)}[layout]()
    dtype = np.dtype(draw(st.sampled_from(["float32", "float64", "float16", "uint8", "int64", "bool", "int8"])))
    X = draw(hnp.arrays(dtype, shape, elements=_elements(dtype, extreme="values" in faults)))
    k = draw(st.integers(2, 4))
    ykind = draw(st.sampled_from(["ints", "floats"] if "labels" not in faults else [
        "none", "negative", "fractions", "huge", "wrong-length", "2d", "strings", "bool", "uint64", "sparse"]))
    m = n + 1 if ykind == "wrong-length" else n
    y = {"ints": lambda: np.arange(m) % k, "none": lambda: None, "wrong-length": lambda: np.arange(m) % k,
         "negative": lambda: np.arange(m) % k - 1, "floats": lambda: (np.arange(m) % k).astype(np.float64),
         "fractions": lambda: np.arange(m) / 2, "huge": lambda: np.full(m, 10**18),
         "2d": lambda: np.zeros((m, 1), np.int64), "strings": lambda: np.array([f"c{i % k}" for i in range(m)]),
         "bool": lambda: np.arange(m) % 2 == 0, "uint64": lambda: np.full(m, 2**64 - 1, np.uint64),
         "sparse": lambda: np.arange(m) % k * 999}[ykind]()
    cnames = draw(st.sampled_from([None, None, "k"] if "names" not in faults else ["fewer", "2d", "ints", "empty"]))
    class_names = {None: None, "k": np.array([f"class {i}" for i in range(k)]), "fewer": np.array(["a"]),
                   "2d": np.array([["a", "b"]]), "ints": np.arange(k), "empty": np.array([], "<U1")}[cnames]
    arrays = (("X", X),) + ((("y", y),) if y is not None else ()) + \
        ((("class_names", class_names),) if class_names is not None else ())
    with np.errstate(all="ignore"):
        finite = bool(np.isfinite(X.astype(np.float32)).all())
    names_ok = class_names is None or class_names.ndim == 1
    top = len(class_names) if class_names is not None else max(1000, n)  # labels must stay below it
    labels_ok = y is None or (y.ndim == 1 and len(y) == n and y.dtype.kind in "iuf" and n >= 1
                              and np.all(y >= 0) and np.all(y == np.round(y)) and y.max() < top)
    # images are scaled by their pixel convention: values outside [0, 65535] (negative, huge) are refused
    with np.errstate(all="ignore"):
        lo, hi = (float(X.astype(np.float32).min()), float(X.astype(np.float32).max())) if X.size else (0.0, 0.0)
        pixels_ok = X.ndim == 2 or X.dtype in (np.uint8, np.uint16) or not X.size or \
            (finite and ((-0.05 <= lo and hi <= 1.05) or (lo >= 0 and hi <= 65535)))
    # (n, h, w, 2) or (n, 2, h, w) with no 1/3/4-sized axis at either end: 2 channels, refused by name
    two_channels = X.ndim == 4 and 2 in (X.shape[1], X.shape[-1]) and not {1, 3, 4} & {X.shape[1], X.shape[-1]}
    must = finite and pixels_ok and X.ndim in (2, 3, 4) and n >= 1 and 0 not in X.shape and names_ok and labels_ok \
        and not two_channels
    return arrays, must


@st.composite
def npz_cases(draw) -> Case:
    kind = draw(st.sampled_from(["random", "forged", "forged", "forged", "savez", "savez", "savez"]))
    must = False
    if kind == "random":
        content: object = draw(st.sampled_from([b"", b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY"])) \
            + draw(st.binary(max_size=200))
    elif kind == "forged":
        content = draw(forged_npz())
    else:
        arrays, must = draw(savez_arrays())
        content = Savez(arrays)
    tail = draw(spec_tail(shifts=True))
    return Case({"d.npz": content}, "npz:{dir}/d.npz" + tail, max_samples=draw(max_samples),
                must_load=must and not tail)


_WIDE_RANGE = np.zeros((12, 2, 2), np.float32)
_WIDE_RANGE[0, 0, 0], _WIDE_RANGE[1, 0, 0] = -3e38, 3e38  # finite, far outside any pixel convention: refused


@fuzz(100)
@given(case=npz_cases())
@example(case=Case({"d.npz": Npz((("X.npy", Npy("<f4", (3, 2), Blob(24), text="{")),))}, "npz:{dir}/d.npz"))
@example(case=Case({"d.npz": Savez((("X", _WIDE_RANGE), ("y", np.arange(12) % 3)))}, "npz:{dir}/d.npz"))
@example(case=Case({"d.npz": Savez((("X", _WIDE_RANGE.clip(0, 255)), ("y", np.arange(12) % 3)))}, "npz:{dir}/d.npz",
                   must_load=True))
@example(case=Case({"d.npz": Savez((("X", np.full((23, 2, 1, 2), 2, np.int8)), ("y", np.arange(23) % 2)))},
                   "npz:{dir}/d.npz"))  # 2 channels (both ends of the shape): a clear refusal, not a must-load
def test_npz_reader_gives_a_domain_or_a_qianyi_error(traced, case):
    check_reader(case)


# --- idx -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Idx:
    """An IDX file: 4 magic bytes, big-endian uint32 dimensions, a payload; plain or gzipped, maybe damaged."""

    magic: bytes
    dims: tuple[int, ...]
    payload: Blob
    compress: str = "none"  # none, gzip, gzip-cut (truncated stream), gzip-trailing (junk after it)

    def render(self) -> bytes:
        raw = self.magic + b"".join(struct.pack(">I", d) for d in self.dims) + self.payload.render()
        if self.compress == "none":
            return raw
        z = gzip.compress(raw, 1)
        return {"gzip": z, "gzip-cut": z[:max(10, len(z) * 2 // 3)], "gzip-trailing": z + b"\x00junk"}[self.compress]


IDX_DIMS = [0, 1, 2, 3, 5, 28, 255, 2**16, 2**31, 2**32 - 1]


def idx_file(dims: tuple[int, ...], labels: bool, compress: str, fill: int | None) -> Idx:
    """A well-formed uint8 IDX file of shape ``dims``."""
    size = math.prod(dims)
    return Idx(bytes([0, 0, 8, len(dims)]), dims, Blob(size, labels="|u1") if labels else Blob(size, fill), compress)


@st.composite
def idx_fault(draw, f: Idx) -> Idx:
    kind = draw(st.sampled_from(["magic", "ndim", "dim", "dim", "payload", "payload", "compress"]))
    if kind == "magic":
        return replace(f, magic=draw(st.sampled_from([bytes([0, 0, 9, len(f.dims)]), b"\x1f\x8b\x08\x00", b"",
                                                      b"\x00\x00\x08", bytes([1, 0, 8, len(f.dims)])])))
    if kind == "ndim":
        return replace(f, magic=f.magic[:3] + bytes([draw(st.sampled_from([0, 1, 2, 3, 4, 5, 255]))]))
    if kind == "dim" and f.dims:
        i = draw(st.integers(0, len(f.dims) - 1))
        return replace(f, dims=f.dims[:i] + (draw(st.sampled_from(IDX_DIMS)),) + f.dims[i + 1:])
    if kind == "compress":
        return replace(f, compress=draw(st.sampled_from(["none", "gzip", "gzip-cut", "gzip-trailing"])))
    exact = f.payload.n
    n = draw(st.integers(0, 64) | st.integers(max(0, exact - 3), exact + 3))
    return replace(f, payload=replace(f.payload, n=n))


@st.composite
def idx_cases(draw) -> Case:
    """One or two image files (with their label files, mostly), well-formed, then 0-2 faults."""
    files: dict[str, Idx] = {}
    gz = draw(st.booleans())
    n = draw(st.integers(12, 40))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    for prefix in draw(st.sampled_from([["train"], ["train"], ["train", "t10k"]])):
        suffix = ".gz" if gz else ""
        compress = "gzip" if gz else "none"
        fill = draw(st.sampled_from([None, 1]))
        files[f"{prefix}-images-idx3-ubyte{suffix}"] = idx_file((n, h, w), False, compress, fill)
        if not draw(one_in(6)):
            files[f"{prefix}-labels-idx1-ubyte{suffix}"] = idx_file((n,), True, compress, None)
    extra: dict[str, object] = {}
    for _ in range(draw(some(2))):
        kind = draw(st.sampled_from(["file", "file", "file", "name", "stray"]))
        name = draw(st.sampled_from(sorted(files)))
        if kind == "file":
            files[name] = draw(idx_fault(files[name]))
        elif kind == "name":  # a suffix that lies, or a label file the images do not name
            new = name[:-3] if name.endswith(".gz") else name + ".gz"
            files[new] = files.pop(name)
        else:
            extra[draw(st.sampled_from(["junk-idx3-ubyte", "x-images-idx3-ubyte", "readme.txt"]))] = \
                DIR if draw(st.booleans()) else Blob(draw(st.integers(0, 64)), 3)
    return Case({**files, **extra}, "idx:{dir}" + draw(spec_tail(shifts=True)), max_samples=draw(max_samples))


@fuzz(60)
@given(case=idx_cases())
def test_idx_reader_gives_a_domain_or_a_qianyi_error(traced, case):
    check_reader(case)


# --- csv -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Text:
    """Text in an encoding, plain or gzipped (maybe a truncated gzip stream); with ``grow_to``, the lines
    after the first are repeated until the text has about that many characters (a big table)."""

    text: str
    encoding: str = "utf-8"
    compress: str = "none"
    grow_to: int = 0

    def render(self) -> bytes:
        text = self.text
        if self.grow_to:
            head, _, body = text.partition("\n")
            body = body or "0,1\n"
            text = head + "\n" + body * max(1, self.grow_to // len(body))
        raw = text.encode(self.encoding, "replace")
        if self.compress == "none":
            return raw
        z = gzip.compress(raw, 1)
        return z if self.compress == "gzip" else z[:max(10, len(z) // 2)]


LABEL_NAMES = ["label", "labels", "y", "class", "target"]
FEATURE_NAMES = ["a", "b", "x1", "id", "é", "f 2", "Z"]
HEADER_FAULTS = ["", " a", "a,b", '"q"', "nan", "LABEL ", "Label", "y", "target"]
GOOD_CELLS = [st.integers(0, 9).map(str), st.floats(-1e3, 1e3).map(repr),  # a table uses one style
              st.one_of(st.integers(-5, 5).map(str), st.floats(-1e3, 1e3).map(repr))]
BAD_CELLS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                      st.sampled_from(["", "nan", "inf", "-inf", "NA", "?", "cat", " 1 ", "1_0", "0x1F", "1e309",
                                       "1e39", "-1e300", "١", "null", "-0", '"', "a\nb"]))
LABEL_VALUES = {"ints": lambda i: str(i % 3), "floats": lambda i: f"{i % 3}.0", "words": lambda i: "cde"[i % 3],
                "big": lambda i: str(10**7 * (i % 2)), "negative": lambda i: str(i % 3 - 1),
                "fractions": lambda i: str(i / 2), "missing": lambda i: ["0", "1", "", "nan"][i % 4]}
CSV_TOKENS = list("0123456789.-,\"\n\r ") + ["nan", "inf", "label", "target", "y", "\ufeff", "\x00", "é", "a", "1e39",
                                              ",label\n", "label,a\n", "\r\n", '""', "1_0"]


@st.composite
def csv_tables(draw) -> tuple[str, list[str]]:
    """(text, column names): a header with a label column, numeric rows, then 0-3 faults."""
    cols = draw(st.lists(st.sampled_from(FEATURE_NAMES), min_size=1, max_size=4, unique=True))
    cols.insert(draw(st.integers(0, len(cols))), draw(st.sampled_from(LABEL_NAMES)))
    n = draw(st.integers(0, 3) if draw(one_in(8)) else st.integers(12, 40))  # enough rows to split, mostly
    cells = draw(st.sampled_from(GOOD_CELLS))
    rows = [[draw(cells) for _ in cols] for _ in range(n)]
    labels = "ints"
    for _ in range(draw(some(3))):
        kind = draw(st.sampled_from(["header", "cell", "cell", "ragged", "labels", "no-label"]))
        if kind == "header":
            cols[draw(st.integers(0, len(cols) - 1))] = draw(st.sampled_from(HEADER_FAULTS + cols))
        elif kind == "cell" and rows:
            rows[draw(st.integers(0, n - 1))][draw(st.integers(0, len(cols) - 1))] = draw(BAD_CELLS)
        elif kind == "ragged" and rows:
            r = rows[draw(st.integers(0, n - 1))]
            if draw(st.booleans()):
                r.append("1")
            else:
                r.pop()
        elif kind == "labels":
            labels = draw(st.sampled_from(sorted(LABEL_VALUES)))
        elif kind == "no-label":
            cols = [c if c not in LABEL_NAMES else "c" for c in cols]
    for i, r in enumerate(rows):
        for j, c in enumerate(cols[:len(r)]):
            if c in LABEL_NAMES:
                r[j] = LABEL_VALUES[labels](i)
    buf = io.StringIO()
    if not draw(one_in(5)):
        csv.writer(buf, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))).writerows([cols, *rows])
    else:  # joined naively: quotes and commas inside names and cells break the structure
        buf.write("".join(",".join(r) + "\n" for r in [cols, *rows]))
    return buf.getvalue(), cols


@st.composite
def csv_cases(draw) -> Case:
    if not draw(one_in(4)):
        text, cols = draw(csv_tables())
    else:
        head = draw(st.sampled_from(["", "a,label\n", "label,x,y\n", "x,target\n", "a,b,class\n"]))
        text, cols = head + "".join(draw(st.lists(st.sampled_from(CSV_TOKENS), max_size=80))), ["a", "label", "x"]
    options = []
    if draw(one_in(4)):
        options.append("label=" + draw(st.sampled_from(cols + ["nope", ""])))
    if draw(one_in(4)):
        options.append("drop=" + ",".join(draw(st.lists(st.sampled_from(cols + ["nope", " a", ""]), max_size=2))))
    limit, grow_to = MAX_BYTES, 0
    if draw(one_in(6)):  # a big file: its rows repeated up to a fraction of a smaller byte limit
        limit = SMALL_LIMIT
        grow_to = int(limit * draw(st.sampled_from([0.5, 0.9, 0.9, 1.2])))
    encoding = draw(st.sampled_from(["utf-8"] * 6 + ["utf-8-sig", "latin-1", "utf-16"]))
    compress = draw(st.sampled_from(["gzip", "gzip", "gzip-cut"])) if draw(one_in(5)) else "none"
    name = "d.csv.gz" if compress != "none" or draw(one_in(16)) else "d.csv"
    return Case({name: Text(draw(st.sampled_from(["", "", "", "\ufeff"])) + text, encoding, compress, grow_to)},
                f"csv:{{dir}}/{name}" + draw(spec_tail(options)), max_samples=draw(max_samples), max_bytes=limit)


@fuzz(80)
@given(case=csv_cases())
@example(case=Case({"d.csv": Text("a,label\n" + "".join(f"{i % 10},{i % 3}\n" for i in range(30)),
                                  grow_to=int(0.9 * SMALL_LIMIT))}, "csv:{dir}/d.csv", max_bytes=SMALL_LIMIT))
def test_csv_reader_gives_a_domain_or_a_qianyi_error(traced, case):
    check_reader(case)


# --- image folders ---------------------------------------------------------------------------

FORMATS = {"png": "PNG", "jpg": "JPEG", "bmp": "BMP", "gif": "GIF", "tif": "TIFF", "webp": "WEBP", "ppm": "PPM"}
LOSSLESS = {"png", "bmp", "tif", "ppm"}
MODES = ["L", "RGB", "RGBA", "P", "1", "I;16", "LA", "I", "F", "CMYK"]


@dataclass(frozen=True)
class Img:
    """A w x h image of ``mode`` with pseudo-random pixels (``seed``), saved as ``fmt``, maybe damaged."""

    fmt: str
    mode: str
    w: int
    h: int
    seed: int
    damage: Damage = Damage()

    def image(self) -> Image.Image:
        rng = np.random.default_rng(self.seed)
        if self.mode in ("L", "RGB", "RGBA", "LA", "CMYK"):
            return Image.frombytes(self.mode, (self.w, self.h), rng.bytes(self.w * self.h * len(self.mode)))
        if self.mode == "P":
            return Image.frombytes("RGB", (self.w, self.h), rng.bytes(self.w * self.h * 3)).quantize(16)
        if self.mode == "1":
            return Image.fromarray(rng.integers(0, 2, (self.h, self.w)).astype(bool))
        if self.mode == "F":
            return Image.fromarray(rng.random((self.h, self.w), np.float32))
        dtype = np.uint16 if self.mode == "I;16" else np.int32
        return Image.fromarray(rng.integers(0, np.iinfo(dtype).max, (self.h, self.w)).astype(dtype))

    def render(self) -> bytes:
        im, buf = self.image(), io.BytesIO()
        try:
            im.save(buf, FORMATS[self.fmt])
        except (OSError, ValueError, KeyError):  # the format cannot hold the mode: save its RGB version
            buf = io.BytesIO()
            im.convert("RGB").save(buf, FORMATS[self.fmt])
        return self.damage.apply(buf.getvalue())

    def must_keep_detail(self) -> bool:
        """Square, lossless and undamaged, and the saved file holds two distinct colours: it must not
        decode to a flat image. (Palette and CMYK images are left out: distinct values may share a colour.)"""
        if self.w != self.h or self.fmt not in LOSSLESS or self.damage != Damage():
            return False
        with Image.open(io.BytesIO(self.render())) as im:
            if im.mode in ("P", "PA", "CMYK"):
                return False
            raw = np.asarray(im)
            if im.mode in ("RGBA", "LA"):
                raw = raw[..., :-1]  # alpha is not colour
        return len(np.unique(raw.reshape(self.h * self.w, -1), axis=0)) > 1


@dataclass(frozen=True)
class PngBomb:
    """A PNG that declares w x h pixels but holds (almost) no data."""

    w: int
    h: int

    def render(self) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@st.composite
def images(draw) -> Img:
    side = st.integers(1, 40)
    w = draw(side)
    h = w if draw(st.booleans()) else draw(side)
    return Img(draw(st.sampled_from(list(FORMATS))), draw(st.sampled_from(MODES)), w, h, draw(st.integers(0, 9)))


CLASS_NAMES = ["cat", "dog", "emu", "a b", "é", "0"]
SIZES_GOOD = ["8", "9", "16", "31", "32", "64"]
SIZES_BAD = ["", "7", "0", "-8", "1025", "100000", "abc", "8.0", "1e1", " 16", "0x10", "١٦", "1_6", "nan"]


@st.composite
def folder_cases(draw) -> Case:
    """Two or three class folders of 3-6 valid images, then 0-3 faults."""
    classes = draw(st.lists(st.sampled_from(CLASS_NAMES), min_size=2, max_size=3, unique=True))
    files: dict[str, object] = {}
    for c in classes:
        files[c] = DIR
        for i in range(draw(st.integers(3, 6))):
            im = draw(images())
            files[f"{c}/{i}.{im.fmt}"] = im
    size, tail = draw(st.sampled_from(SIZES_GOOD)), ""
    for _ in range(draw(some(3))):
        c = draw(st.sampled_from(classes))
        kind = draw(st.sampled_from(["damaged", "junk", "bomb", "empty", "suffix", "nested", "hidden", "empty-class",
                                     "stray", "one-class", "one-image", "size", "tail"]))
        imgs = [r for r, v in files.items() if isinstance(v, Img)]
        if kind == "damaged" and imgs:
            rel = draw(st.sampled_from(imgs))
            files[rel] = replace(files[rel], damage=draw(damages()))
        elif kind in ("junk", "bomb", "empty"):
            big = st.sampled_from([0, 1, 1001, 2**16, 2**31 - 1])
            content = {"junk": lambda: Blob(draw(st.integers(0, 200)), draw(st.integers(0, 9))),
                       "bomb": lambda: PngBomb(draw(big), draw(big)), "empty": lambda: b""}[kind]()
            files[f"{c}/x{draw(st.sampled_from(sorted(IMAGE_SUFFIXES) + ['.PNG']))}"] = content
        elif kind == "suffix":  # an image under another image suffix, or one the reader skips
            files[f"{c}/s{draw(st.sampled_from(['.jpg', '.png', '.gif', '.txt', '', '.pngx']))}"] = draw(images())
        elif kind in ("nested", "hidden"):
            files[f"{c}/sub/n.png" if kind == "nested" else f"{c}/.h.png"] = draw(images())
        elif kind == "empty-class":
            files[draw(st.sampled_from(["zzz", ".hidden", "sub dir"]))] = DIR
        elif kind == "stray":
            files["stray.png"] = draw(images())  # beside the class folders
        elif kind == "one-class":
            files = {r: v for r, v in files.items() if r.split("/")[0] == c}
        elif kind == "one-image":  # a class with a single image: nothing to split
            first = next((r for r in files if r.startswith(f"{c}/")), None)
            files = {r: v for r, v in files.items() if r.split("/")[0] != c or r in (c, first)}
        elif kind == "size":
            size = draw(st.sampled_from(SIZES_BAD))
        else:
            tail = draw(st.sampled_from(["&name=x", "&bogus=1", "&size=8", "&"]))
    shift = draw(st.sampled_from(["+invert", "+rot90", "+noise0.5", "+blur2"])) if draw(one_in(6)) else ""
    return folder_case(files, f"?size={size}{tail}{shift}", draw(max_samples))


def folder_case(files: dict[str, object], tail: str = "?size=8", max_samples: int | None = None) -> Case:
    """A folder case; its details name the images that must keep their detail (none when a shift applies)."""
    details = {} if "+" in tail else {rel: c.must_keep_detail() for rel, c in files.items() if isinstance(c, Img)}
    return Case(files, "folder:{dir}" + tail, max_samples=max_samples, details=details)


def check_details(root: Path, d: Domain, details: dict[str, bool]) -> None:
    """Images that hold detail keep some: none decodes to a flat image (e.g. 16-bit values clipped)."""
    if not any(details.values()):
        return
    files = []
    for c in sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):  # the reader's order
        files += [f for f in sorted((root / c).rglob("*"))
                  if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") and f.is_file()]
    assert len(files) == len(d.X)
    for f, x in zip(files, d.X):
        rel = f.relative_to(root).as_posix()
        if details.get(rel):
            with Image.open(f) as im:
                mode = im.mode
            assert x.max() > x.min(), f"{rel} ({mode}): distinct pixel values decoded to a flat image ({x.max()})"


@fuzz(60)
@given(case=folder_cases())
@example(case=folder_case({"a": DIR, "a/0.png": Img("png", "I;16", 4, 4, 0), "a/1.png": Img("png", "L", 4, 4, 1),
                           "a/2.png": Img("png", "L", 4, 4, 2), "b": DIR, "b/0.tif": Img("tif", "F", 4, 4, 3),
                           "b/1.png": Img("png", "L", 4, 4, 4), "b/2.png": Img("png", "L", 4, 4, 5)}))
def test_folder_reader_gives_a_domain_or_a_qianyi_error(traced, case):
    check_reader(case)


# --- the CLI's run arguments -----------------------------------------------------------------

def _blobs(path: Path, seed: int, shift: float = 0.0) -> str:
    rng = np.random.default_rng(seed)
    y = np.arange(90) % 3
    X = rng.normal(0, 1, (90, 5)) + 3 * np.eye(3, 5)[y] + shift
    np.savez(path, X=X.astype(np.float32), y=y)
    return f"npz:{path}"


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    """Two small vector domains (90 x 5, 3 classes), a finished run (model.pt, checkpoint.pt), a regular file."""
    from qianyi.train import TrainConfig, run

    root = tmp_path_factory.mktemp("fuzz-cli")
    s, t = _blobs(root / "s.npz", 0), _blobs(root / "t.npz", 1, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run("dan", load_task(s, t), TrainConfig(epochs=1, steps_per_epoch=2, checkpoint_every=1, progress=False,
                                                keep_checkpoint=True),
            out=root / "done")
    (root / "file").write_text("not a folder")
    return {"root": root, "source": s, "target": t, "done": root / "done", "model": root / "done" / "model.pt",
            "checkpoint": root / "done" / "checkpoint.pt", "file": root / "file"}


BAD_NUMBER = st.one_of(st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e308", "1e-308", "abc", "", " 1", "1_000",
                                        "0x10", "2**63", "9" * 30, "-0", "1e400"]),
                       st.floats(allow_nan=True, allow_infinity=True).map(repr))
BAD_WHOLE = st.sampled_from(["-1", "0", "abc", "", "1.5", "1e3", "99999999999999999999", " 2"])
VALIDATORS = sorted(available_validators())
METHODS = sorted(available_methods())
CUDA = torch.cuda.is_available()
#: flag -> (strategy of good values, strategy of bad ones), as text the way a shell passes it
FLAGS = {
    "--lr": (st.sampled_from(["0.01", "0.1", "1e-4", "0.5", "1"]), BAD_NUMBER),
    "--momentum": (st.sampled_from(["0", "0.5", "0.9", "0.999"]), st.one_of(BAD_NUMBER, st.just("1"))),
    "--weight-decay": (st.sampled_from(["0", "5e-4", "0.1", "10"]), BAD_NUMBER),
    "--copied-lr-mult": (st.sampled_from(["0", "1", "0.1"]), BAD_NUMBER),
    "--l2sp": (st.sampled_from(["0", "0.01"]), BAD_NUMBER),
    "--batch-size": (st.sampled_from(["2", "3", "16", "64", "1000000000"]), st.one_of(BAD_WHOLE, st.just("1"))),
    "--seed": (st.sampled_from(["0", "1", "4294967295"]), st.one_of(BAD_WHOLE, st.just(str(2**32)))),
    "--threads": (st.sampled_from(["1", "2"]), st.sampled_from(["0", "-1", "x", "99999999999", "2**40"])),
    "--epochs": (st.sampled_from(["1", "2"]), st.sampled_from(["0", "-1", "x", "1.0"])),
    "--steps-per-epoch": (st.sampled_from(["1", "2"]), st.sampled_from(["0", "-1", "x"])),
    "--max-samples": (st.integers(2, 300).map(str), st.sampled_from(["-1", "0", "1", "x", "", "1e9"])),
    "--optimizer": (st.sampled_from(["sgd", "adam"]), st.sampled_from(["SGD", "", "rmsprop"])),
    "--lr-schedule": (st.sampled_from(["anneal", "constant"]), st.sampled_from(["x", "", "Anneal"])),
    "--select": (st.sampled_from(["last", *VALIDATORS]), st.sampled_from(["nope", "", "all", "LAST"])),
    "--validators": (st.sampled_from(["all", *VALIDATORS, ",".join(VALIDATORS[:2]), "all,dev"]),
                     st.sampled_from(["nope", "", ",", "all,nope", "dev,dev"])),
    "--device": (st.sampled_from(["cpu", "auto"]),
                 st.sampled_from(["foo", "", "CPU", "cpu:0", "meta", "cpu:99"]
                                 + ([] if CUDA else ["cuda", "cuda:7", "cuda:99999999999999999999", "mps"]))),
    "--selection-samples": (st.sampled_from(["1", "5", "1000000000"]), st.sampled_from(["0", "-1", "x"])),
    "--checkpoint-every": (st.sampled_from(["1", "3"]), st.sampled_from(["0", "-1", "x"])),
    "--freeze": (st.sampled_from(["0", "1", "2"]), st.one_of(BAD_WHOLE, st.just("99"))),
    "--init-layers": (st.sampled_from(["0", "1", "3"]), st.one_of(BAD_WHOLE, st.just("99"))),
}
# --set values, by the type of the setting's default. A width of 10**15 units must fail at once and
# safely (it cannot even be addressed); smaller huge widths would try to allocate for real.
HPARAM_VALUES = {bool: (st.sampled_from(["true", "false", "1", "0"]), st.sampled_from(["maybe", "", "2"])),
                 int: (st.sampled_from(["1", "2"]), st.sampled_from(["0", "-1", "1.5", "x", ""])),
                 float: (st.sampled_from(["0", "0.1", "1", "3"]), BAD_NUMBER),
                 tuple: (st.sampled_from(["1", "2,3", "fc1", "fc1,fc2", "features", "0.5,1", "16"]),
                         st.sampled_from(["", "0", "-1", "a,b", "logits,nope", "nan", "1000000000000000", ",,"])),
                 str: (st.sampled_from(["fc1", "fc2", "features", "logits", "gaussian", "linear", "target", "source",
                                        "both", "alternate", "dann", "mmd", "unbiased", "biased"]),
                       st.sampled_from(["", "x", "FC1", "nope"]))}
INIT_FROM = ["model", "model", "checkpoint", "missing", "folder", "random", "empty", "truncated", "non-tensor",
             "wrong-shape", "float64", "nan", "missing-key", "list", "npz"]
OUT_KINDS = ["none"] * 4 + ["fresh"] * 4 + ["finished", "", "under-file", "file"]


@st.composite
def flag_values(draw) -> list[str]:
    """0-4 training flags, each with a good value or (a fifth of the time) a bad one."""
    argv = []
    for flag in draw(st.lists(st.sampled_from(sorted(FLAGS)), max_size=4, unique=True)):
        good, bad = FLAGS[flag]
        value = draw(bad if draw(one_in(5)) else good)
        argv += [f"{flag}={value}"] if draw(st.booleans()) else [flag, value]
    return argv


@st.composite
def set_items(draw, method: str) -> list[str]:
    """0-2 ``--set NAME=VALUE`` items for ``method``'s settings (now and then an unknown name or no '=')."""
    defaults = available_methods()[method].hparam_defaults() if method in available_methods() else {}
    items = []
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        name = draw(st.sampled_from([*defaults] * 4 + ["nope", ""]))
        kind = next((k for k in (bool, int, float, tuple, str) if isinstance(defaults.get(name), k)), str)
        good, bad = HPARAM_VALUES[kind]
        value = draw(bad if draw(one_in(4)) else good)
        items.append(name if draw(one_in(16)) else f"{name}={value}")
    return ["--set", *items] if items else []


@st.composite
def run_argvs(draw) -> tuple[str, list[str], dict]:
    """(method, flags, where): ``where`` says which --out, --init-from, --source and --target to use."""
    method = draw(st.sampled_from(["", "DAN"]) if draw(one_in(16)) else st.sampled_from(METHODS + ["nope"]))
    flags = draw(flag_values()) + draw(set_items(method))
    rare = lambda usual, others: st.sampled_from([usual] * 6 * len(others) + others)  # noqa: E731
    where = {"out": draw(st.sampled_from(OUT_KINDS)), "init_from": draw(rare("none", INIT_FROM)),
             "source": draw(rare("source", ["target", "missing", "shifted", "wrong-reader", "option"])),
             "target": draw(rare("target", ["source", "named", "missing"]))}
    return method, flags, where


def write_init_from(kind: str, files: dict, tmp: Path) -> str:
    """A path for --init-from: a real model or checkpoint, or something that is not one."""
    if kind in ("model", "checkpoint"):
        return str(files[kind])
    p = tmp / "init.pt"
    if kind == "missing":
        return str(tmp / "absent.pt")
    if kind == "folder":
        return str(tmp)
    if kind == "npz":
        return files["source"].removeprefix("npz:")
    if kind == "random":
        p.write_bytes(np.random.default_rng(0).bytes(500))
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "truncated":
        p.write_bytes(files["model"].read_bytes()[:3000])
    else:
        state = torch.load(files["model"], weights_only=True)
        first = sorted(state)[0]
        mutate = {"non-tensor": lambda s: {**s, first: 1}, "wrong-shape": lambda s: {**s, first: torch.zeros(2, 2)},
                  "float64": lambda s: {k: v.double() for k, v in s.items()},
                  "nan": lambda s: {k: torch.full_like(v, math.nan) if v.is_floating_point() else v
                                    for k, v in s.items()},
                  "missing-key": lambda s: {k: v for k, v in s.items() if k != first}, "list": lambda s: [1, 2]}
        torch.save(mutate[kind](state), p)
    return str(p)


def _spec(kind: str, files: dict) -> str:
    return {"source": files["source"], "target": files["target"], "missing": "npz:/nonexistent/x.npz",
            "shifted": files["source"] + "+invert", "wrong-reader": "csv:" + files["source"][4:],
            "named": files["target"] + "?name=t", "option": files["source"] + "?size=8"}[kind]


def run_cli(argv: list[str]) -> tuple[int | str, str, str]:
    """``main(argv)`` in-process: (exit status, stdout, stderr); argparse's own exit is returned as 'argparse'."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                rc = main(argv)
            except SystemExit as exc:
                assert exc.code == 2, f"argparse exited with {exc.code!r}: {err.getvalue()[-2000:]}"
                rc = "argparse"
    finally:
        torch.set_num_threads(1)  # --threads changes them for the whole process
    return rc, out.getvalue(), err.getvalue()


def check_cli(rc, err: str, out_dir: str | None) -> None:
    event(f"exit {rc}")
    assert rc in (0, 2, "argparse"), f"exit status {rc!r}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    if rc == 2:
        assert "qianyi: error:" in err, err[-3000:]
        event("qianyi: error: " + gist(err.split("qianyi: error: ", 1)[1]))
    if rc == 0 and out_dir:
        result = json.loads((Path(out_dir) / "result.json").read_text())
        acc = result["target_accuracy"]
        assert isinstance(acc, float) and math.isfinite(acc) and 0.0 <= acc <= 1.0, acc
    check_rss("qianyi run")


PLAIN = {"out": "none", "init_from": "none", "source": "source", "target": "target"}


@fuzz(150)
@given(case=run_argvs())
@example(case=("dan", ["--threads", "99999999999"], PLAIN))
@example(case=("dann", ["--set", "hidden=1000000000000000"], PLAIN))
@example(case=("dan", ["--lr", "1e30", "--select", "dev"], PLAIN))
@example(case=("mean-teacher", ["--lr", "1e30", "--steps-per-epoch", "2"], PLAIN))
@example(case=("dan", ["--lr", "1e308"], PLAIN))
@example(case=("dan", [], {**PLAIN, "init_from": "non-tensor"}))
def test_cli_run_exits_0_or_2_for_any_arguments(cli_files, case):
    method, flags, where = case
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out = {"none": None, "fresh": str(tmp / "run"), "finished": str(tmp / "run"), "": "",
               "under-file": str(cli_files["file"] / "run"), "file": str(cli_files["file"])}[where["out"]]
        if where["out"] == "finished":  # the folder of another, finished run: resume from it or refuse
            shutil.copytree(cli_files["done"], out)
        argv = ["run", method, "--source", _spec(where["source"], cli_files),
                "--target", _spec(where["target"], cli_files),
                "--epochs", "1", "--steps-per-epoch", "1", "--no-progress", *flags]
        if out is not None:
            argv += ["--out", out]
        if where["init_from"] != "none":
            argv += ["--init-from", write_init_from(where["init_from"], cli_files, tmp)]
        rc, _, err = run_cli(argv)
        check_cli(rc, err, out)


# --- resuming from a tampered checkpoint -----------------------------------------------------

class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()
CHECKPOINT_KEYS = ["fingerprint", "step", "elapsed", "model", "method", "optimizers", "rng", "history", "best", "sums",
                   "counts", "format"]


@dataclass(frozen=True)
class Tamper:
    """Delete (``DELETE``) or replace the checkpoint entry at ``path``: a top-level key, then indices into
    the sorted keys of the dicts below it (as deep as they go)."""

    path: tuple
    value: object = DELETE

    def apply(self, state: dict) -> str:
        """Tamper with ``state`` in place; return the path of the entry, by name."""
        node, key = state, self.path[0]
        names = [key]
        for i in self.path[1:]:
            if not isinstance(node.get(key), dict) or not node[key]:
                break
            node = node[key]
            key = sorted(node, key=str)[i % len(node)]
            names.append(key)
        if self.value is DELETE:
            node.pop(key, None)
        else:
            node[key] = self.value
        return "/".join(map(str, names))


def junk():
    """Values that do not belong in a checkpoint. Numbers are at least -3: a step of -10**6 would make the
    run train a million steps before failing (the same bug as -1, which an explicit example pins)."""
    tensors = st.builds(lambda shape, dtype: torch.zeros(shape, dtype=dtype),
                        st.lists(st.integers(0, 3), max_size=3).map(tuple),
                        st.sampled_from([torch.float32, torch.int64, torch.uint8, torch.bool, torch.float64]))
    return st.one_of(st.none(), st.integers(-3, 10**20), st.floats(-3, None), st.just(float("nan")), st.text(max_size=5),
                     tensors, st.lists(st.integers(0, 3), max_size=3), st.just({}), st.just({"x": 1}))


tamperings = st.builds(Tamper, st.tuples(st.sampled_from(CHECKPOINT_KEYS)).flatmap(
    lambda top: st.lists(st.integers(0, 50), max_size=3).map(lambda rest: top + tuple(rest))),
    st.one_of(st.just(DELETE), junk()))


@fuzz(60)
@given(tamper=tamperings)
@example(tamper=Tamper(("step",), None))
@example(tamper=Tamper(("step",), -1.0))
@example(tamper=Tamper(("fingerprint",), ""))
@example(tamper=Tamper(("model", 0), DELETE))
@example(tamper=Tamper(("sums",), DELETE))
def test_resuming_from_a_tampered_checkpoint_exits_0_or_2(cli_files, tamper):
    """The finished run's checkpoint with one entry (at any depth) deleted or replaced: resume or refuse."""
    state = torch.load(cli_files["checkpoint"], weights_only=True)
    note(f"tampered with {tamper.apply(state)}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        out.mkdir()
        torch.save(state, out / "checkpoint.pt")
        rc, _, err = run_cli(["run", "dan", "--source", cli_files["source"], "--target", cli_files["target"],
                              "--epochs", "1", "--steps-per-epoch", "2", "--checkpoint-every", "1", "--no-progress",
                              "--out", str(out)])
        check_cli(rc, err, str(out))


# --- the module's memory ---------------------------------------------------------------------

@pytest.mark.skipif(not LINUX, reason="ru_maxrss is in KiB on Linux only")
def test_peak_rss_of_this_module_is_bounded():
    """Runs last in this file: the fuzzing above did not grow the process's peak RSS by more than 1 GiB."""
    check_rss("this module")
