"""Hostile and careless inputs to the ``qianyi`` command line: a reproduction catalogue.

Each case builds a few small files in its own temporary folder (numpy, PIL, gzip; nothing is
downloaded), runs ``qianyi run ...`` in a subprocess under a timeout and a memory limit, and
records what happened: exit code, whether a Python traceback was printed, the last stderr line,
the reported target accuracy, warning lines, elapsed time and peak memory. The catalogue backs
the table "case -> behaviour before -> behaviour after" in docs/robustness.md, and the after run
is the check that every case now ends correctly::

    # the code before the hardening work (a checkout's src/ folder), then the installed package
    .venv/bin/python benchmarks/hostile_inputs.py --src /work/before/src --json runs/hostile/before.json
    .venv/bin/python benchmarks/hostile_inputs.py --json runs/hostile/after.json
    # the markdown table for the docs (one file: before only; two files: before and after)
    .venv/bin/python benchmarks/hostile_inputs.py --table runs/hostile/before.json runs/hostile/after.json

Options: ``--only ID[,ID]`` runs a subset, ``--jobs N`` cases in parallel (default 2),
``--timeout S`` per qianyi process (default 120), ``--mem-gb G`` address-space limit per process
(default 6; a few cases set their own), ``--keep`` keeps the temporary folders, ``--list``
lists the cases. The JSON holds, per case, every run's record and the case's facts.

Every qianyi process is started as ``python -c "import sys; from qianyi.cli import main;
sys.exit(main())" ARGS`` with PYTHONPATH=<--src> when given (the imported ``qianyi.__file__`` is
printed first, and the script stops if it is not under --src), cwd the case's folder,
OMP_NUM_THREADS=1 and QIANYI_DATA unset. Its address space is capped with ``prlimit`` (an
allocation beyond the cap raises MemoryError in the child) and a watchdog polls its RSS in /proc
and kills it above the same limit ("killed: memory > G GB").

A run is classified as ``ok`` (exit 0), ``qianyi error`` (exit 2 with a ``qianyi: error: ...`` or
``qianyi run: error: ...`` line and no traceback), ``traceback``, ``memory`` (MemoryError, a
refused allocation, or killed by the watchdog), ``timeout`` or ``other exit N``. A case's
``expect`` is one of

* ``error``: the last run ends in a qianyi error (exit 2, no traceback); some cases also name
  phrases the message must not contain (``forbid``) or must contain (``require``);
* ``ok``: every run exits 0 without a traceback; ``ok+warning``: and prints a warning line;
* ``ok|error``, ``ok+warning|error``: either, but never a traceback, timeout or memory kill;
* ``retrained``, ``removed``, ``one in use``: exit 0 and a case-specific check of the output folder.

The script prints one line per case and a final line "N/M cases as expected"; it exits 1 if any
case is not as expected (meaningful for the code after the hardening work).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import platform
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

ENTRY = "import sys; from qianyi.cli import main; sys.exit(main())"
PROBE = "import sys, qianyi, torch; print(qianyi.__file__); print(torch.cuda.is_available())"
TRACEBACK = "Traceback (most recent call last)"
ERROR_LINE = re.compile(r"^qianyi(?: [\w-]+)?: error: ")
WARNING_LINE = re.compile(r"\bwarning\b", re.IGNORECASE)
ACCURACY = re.compile(r"target accuracy ([0-9.]+|nan)%")
MEMORY_HINTS = ("MemoryError", "can't allocate memory", "DefaultCPUAllocator", "std::bad_alloc",
                "Cannot allocate memory", "Unable to allocate")
#: Training flags of every case unless it overrides them: tiny, quick, quiet, one thread.
EPOCHS, BATCH, THREADS = 1, 16, 1


# -- one qianyi process ------------------------------------------------------------------------------
@dataclass
class RunRecord:
    """What one qianyi process did."""

    args: list[str]
    rc: int | None = None
    elapsed: float = 0.0
    peak_rss_mb: float = 0.0
    killed: str | None = None  # "timeout" / "memory > G GB" when the harness killed it
    traceback: bool = False
    exception: str | None = None  # "ValueError: ..." from a traceback
    error_line: str | None = None  # the first "qianyi: error: ..." line
    last_line: str = ""
    accuracy: float | None = None  # target accuracy in percent, from `qianyi run`'s summary line
    warnings: list[str] = field(default_factory=list)
    category: str = ""
    stdout_tail: str = ""
    stderr_tail: str = ""
    stderr: str = field(default="", repr=False)  # all of it, for the case's checks; not saved


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def classify(r: RunRecord, stdout: str, stderr: str) -> None:
    """Fill in the parsed fields and the category of a finished run."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    r.last_line = _short(lines[-1]) if lines else ""
    r.traceback = TRACEBACK in stderr
    if r.traceback:
        tail = stderr[stderr.rindex(TRACEBACK):].splitlines()
        exc = [ln for ln in tail[1:] if ln and not ln.startswith((" ", "\t")) and not ln.startswith("During ")]
        r.exception = _short(exc[-1] if exc else r.last_line)
    r.error_line = next((_short(ln) for ln in lines if ERROR_LINE.match(ln)), None)
    in_tb = False
    for ln in lines:
        in_tb = in_tb or ln.startswith(TRACEBACK)
        if not in_tb and WARNING_LINE.search(ln):
            r.warnings.append(_short(ln))
    m = ACCURACY.search(stdout)
    r.accuracy = float(m.group(1)) if m else None
    r.stdout_tail, r.stderr_tail, r.stderr = stdout[-1500:], stderr[-3000:], stderr
    if r.killed == "timeout":
        r.category = "timeout"
    elif r.killed:
        r.category = "memory"
    elif r.traceback and any(h in (r.exception or "") or h in stderr[-2000:] for h in MEMORY_HINTS):
        r.category = "memory"
    elif r.traceback:
        r.category = "traceback"
    elif r.rc == 0:
        r.category = "ok"
    elif r.rc == 2 and r.error_line:
        r.category = "qianyi error"
    elif r.rc is not None and r.rc < 0 and any(h in stderr for h in MEMORY_HINTS):
        r.category = "memory"
    else:
        r.category = f"other exit {r.rc}"


@dataclass
class Env:
    python: str
    env: dict[str, str]
    timeout: float
    mem_gb: float
    logs: Path


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for ln in fh:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_qianyi(env: Env, cwd: Path, arg_lists: list[list[str]], tag: str, mem_gb: float | None = None,
               timeout: float | None = None, extra_env: dict[str, str] | None = None) -> list[RunRecord]:
    """Start one qianyi process per argument list (all at once), wait for all, return their records."""
    mem_gb = mem_gb or env.mem_gb
    timeout = timeout or env.timeout
    limit = int(mem_gb * 2**30)
    procs = []
    for i, args in enumerate(arg_lists):
        out, err = env.logs / f"{tag}-{i}.out", env.logs / f"{tag}-{i}.err"
        with open(out, "wb") as fo, open(err, "wb") as fe:
            p = subprocess.Popen([env.python, "-c", ENTRY, *args], cwd=cwd, stdout=fo, stderr=fe,
                                 stdin=subprocess.DEVNULL, env={**env.env, **(extra_env or {})},
                                 start_new_session=True)
        try:  # the cap applies from here on; the child is still starting Python
            import resource

            resource.prlimit(p.pid, resource.RLIMIT_AS, (limit, limit))
        except (OSError, ValueError):
            pass
        procs.append((p, RunRecord(list(args)), out, err, time.perf_counter()))
    pending = list(procs)
    while pending:
        for item in list(pending):
            p, rec, _, _, t0 = item
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                p.returncode = rec.rc = os.waitstatus_to_exitcode(status)
                rec.elapsed = round(time.perf_counter() - t0, 2)
                rec.peak_rss_mb = round(max(rec.peak_rss_mb, usage.ru_maxrss / 1024), 1)
                pending.remove(item)
                continue
            rec.peak_rss_mb = max(rec.peak_rss_mb, _rss_mb(p.pid))
            if rec.peak_rss_mb * 2**20 > limit:
                rec.killed = f"memory > {mem_gb:g} GB"
            elif time.perf_counter() - t0 > timeout:
                rec.killed = "timeout"
            if rec.killed:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.05)
    records = []
    for _, rec, out, err, _ in procs:
        classify(rec, out.read_text(errors="replace"), err.read_text(errors="replace"))
        records.append(rec)
    return records


# -- building blocks for cases -----------------------------------------------------------------------
def qrun(method: str, source: str, target: str, *extra: str, out: str | None = None, epochs: int | None = EPOCHS,
         batch_size: int | None = BATCH, threads: int | None = THREADS) -> list[str]:
    """``qianyi run`` arguments with the tiny default training (a flag set to None is left out)."""
    args = ["run", method, "--source", source, "--target", target, "--no-progress"]
    for flag, value in (("--epochs", epochs), ("--batch-size", batch_size), ("--threads", threads)):
        if value is not None:
            args += [flag, str(value)]
    if out is not None:
        args += ["--out", out]
    return args + list(extra)


@dataclass
class Together:
    """A step that starts several qianyi processes at once."""

    arg_lists: list[list[str]]


def blobs(n: int = 120, d: int = 6, seed: int = 0, classes: int = 3, shift: float = 0.0
          ) -> tuple[np.ndarray, np.ndarray]:
    """Vectors with ``classes`` balanced classes; class k has feature k raised by 3."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    rng.shuffle(y)
    X = rng.normal(size=(n, d)).astype(np.float32) + shift
    X[np.arange(n), y % d] += 3.0
    return X, y


def save_npz(path: Path, X: np.ndarray, y: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:  # a file handle: np.savez would append .npz to a name without it
        np.savez(fh, X=X, **({} if y is None else {"y": y}))
    return path


def vec_npz(path: Path, n: int = 120, seed: int = 0, **kw: Any) -> Path:
    return save_npz(path, *blobs(n, seed=seed, **kw))


def write_csv(path: Path, header: list[str], rows: list[list[Any]], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=encoding) as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def vec_csv(path: Path, n: int = 120, seed: int = 0, label: str = "y", classes: int = 3,
            labels: list[Any] | None = None, encoding: str = "utf-8") -> Path:
    X, y = blobs(n, d=5, seed=seed, classes=classes)
    ys = list(y) if labels is None else labels
    rows = [[f"{v:.4f}" for v in x] + [yy] for x, yy in zip(X, ys)]
    return write_csv(path, [f"f{i}" for i in range(5)] + [label], rows, encoding)


def img_folder(path: Path, per_class: int = 20, size: int = 8, seed: int = 0, classes: int = 3) -> Path:
    """One sub-folder of small grey PNGs per class; class k is brighter in the k-th band of rows."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    band = max(size // classes, 1)
    for k in range(classes):
        (path / f"class{k}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = rng.integers(0, 80, (size, size))
            a[k * band:(k + 1) * band] += 150
            Image.fromarray(a.clip(0, 255).astype(np.uint8), "L").save(path / f"class{k}" / f"{i:03d}.png")
    return path


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """An .npy (version 1.0) header, written by hand so that it can declare any shape."""
    h = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode("latin1")
    h += b" " * (63 - (10 + len(h)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def idx_header(dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)


def write_idx(path: Path, a: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb") as fh:
        fh.write(idx_header(a.shape) + a.astype(np.uint8).tobytes())
    return path


def random_bytes(path: Path, n: int = 4096, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).bytes(n))
    return path


def result_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class Fixtures:
    """Inputs too costly to build per case, built once (lazily, thread-safely) and shared read-only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _once(self, name: str, make: Callable[[Path], None]) -> Path:
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        path = self.root / name
        with lock:
            if not path.exists():
                tmp = self.root / f".{name}.part"
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                make(tmp)
                tmp.rename(path)
        return path

    def big_jpegs(self) -> Path:
        """60 JPEGs of 3000x3000 (3 classes of 20; one solid colour per class, so they build in a second)."""
        def make(d: Path) -> None:
            from PIL import Image

            for k, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
                (d / f"class{k}").mkdir()
                first = d / f"class{k}" / "000.jpg"
                Image.new("RGB", (3000, 3000), colour).save(first, quality=90)
                for i in range(1, 20):
                    shutil.copyfile(first, d / f"class{k}" / f"{i:03d}.jpg")
        return self._once("big_jpegs", make)

    def small_rgb(self) -> Path:
        """60 RGB 28x28 PNGs in 3 classes (a target for the big-JPEG source)."""
        def make(d: Path) -> None:
            from PIL import Image

            rng = np.random.default_rng(5)
            for k in range(3):
                (d / f"class{k}").mkdir()
                for i in range(20):
                    a = rng.integers(0, 60, (28, 28, 3))
                    a[..., k] += 180
                    Image.fromarray(a.astype(np.uint8), "RGB").save(d / f"class{k}" / f"{i:03d}.png")
        return self._once("small_rgb", make)

    def idx_bomb(self) -> Path:
        """An IDX folder whose images .gz (~3.4 MB) expands to 60000x240x240 = 3.46 GB of zeros.

        Written by streaming 16 MB chunks of zeros through gzip. (Deflate cannot compress better
        than about 1:1030, so a 3.5 GB payload needs about 3.4 MB, not 300 KB.)"""
        def make(d: Path) -> None:
            n, h, w = 60000, 240, 240
            chunk = bytes(1 << 24)
            with gzip.open(d / "train-images-idx3-ubyte.gz", "wb", compresslevel=9) as fh:
                fh.write(idx_header((n, h, w)))
                left = n * h * w
                while left:
                    fh.write(chunk[: min(left, len(chunk))])
                    left -= min(left, len(chunk))
            write_idx(d / "train-labels-idx1-ubyte.gz", np.arange(n) % 10)
        return self._once("idx_bomb", make)


# -- the catalogue ----------------------------------------------------------------------------------
Check = Callable[[Path, list[RunRecord]], dict[str, Any]]


@dataclass
class Case:
    """One hostile input. ``build(folder, fixtures)`` writes the inputs and returns the steps, run in
    order in that folder: a list of ``qianyi`` arguments (one process), :class:`Together` (several
    processes at once) or a callable (e.g. overwrite a file between two runs)."""

    id: str
    what: str
    expect: str
    group: str
    build: Callable[[Path, Fixtures], list[Any]]  # writes the inputs into the folder, returns the steps
    check: Check | None = None  # facts about the outcome; "note" is shown in the table, "problem" fails the case
    forbid: tuple[str, ...] = ()  # regexes that must not occur in any run's stderr
    require: tuple[str, ...] = ()  # regexes the last run's error line must match
    mem_gb: float | None = None
    timeout: float | None = None
    skip: Callable[[], str | None] | None = None


CASES: list[Case] = []
_GROUP = ["silent wrong results"]


def case(id: str, what: str, expect: str, **kw: Any) -> Callable[[Callable[[Path, Fixtures], list[Any]]], None]:
    """Register the decorated build function as a case of the current group."""
    def deco(build: Callable[[Path, Fixtures], list[Any]]) -> None:
        CASES.append(Case(id, what, expect, _GROUP[0], build, **kw))
    return deco


def group(name: str) -> None:
    _GROUP[0] = name


def counts_intact(n_source: int, n_target: int) -> Check:
    """The run's sample counts must add up to the files' sizes (90% of the source trains)."""
    def check(d: Path, runs: list[RunRecord]) -> dict[str, Any]:
        res = result_json(d / "out" / "result.json")
        if res is None:
            return {}
        facts = {k: res.get(k) for k in ("n_source", "n_target_train", "n_target_test")}
        t = (res["n_target_train"] or 0) + (res["n_target_test"] or 0)
        if t != n_target or res["n_source"] < 0.8 * n_source:
            facts["note"] = (f"silently wrong: trained on {res['n_source']} source + {res['n_target_train']}/"
                             f"{res['n_target_test']} target train/test of {n_source} + {n_target} samples")
            facts["problem"] = "sample counts do not add up to the files' sizes"
        return facts
    return check


COMMON_VEC = ("npz:src.npz", "npz:tgt.npz")


def two_npz(d: Path, n: int = 120) -> tuple[str, str]:
    vec_npz(d / "src.npz", n, seed=1)
    vec_npz(d / "tgt.npz", n, seed=2, shift=0.3)
    return COMMON_VEC


# ---- silent wrong results
@case("same-stem-folders", "folder:A/images and folder:B/images (same stem), 60 images each", "ok",
      check=counts_intact(60, 60))
def _(d: Path, fx: Fixtures) -> list[Any]:
    img_folder(d / "A/images", seed=1)
    img_folder(d / "B/images", seed=2)
    return [qrun("source-only", "folder:A/images?size=8", "folder:B/images?size=8", out="out")]


@case("same-stem-folders-sizes", "folder:A/images (60) and folder:B/images (45), same stem", "ok",
      check=counts_intact(60, 45))
def _(d: Path, fx: Fixtures) -> list[Any]:
    img_folder(d / "A/images", seed=1)
    img_folder(d / "B/images", per_class=15, seed=2)
    return [qrun("source-only", "folder:A/images?size=8", "folder:B/images?size=8", out="out")]


@case("same-stem-npz", "npz:a/data.npz and npz:b/data.npz (same stem), 120 samples each", "ok",
      check=counts_intact(120, 120))
def _(d: Path, fx: Fixtures) -> list[Any]:
    vec_npz(d / "a/data.npz", 120, seed=1)
    vec_npz(d / "b/data.npz", 120, seed=2, shift=0.3)
    return [qrun("source-only", "npz:a/data.npz", "npz:b/data.npz", out="out")]


@case("same-stem-npz-sizes", "npz:a/data.npz (120) and npz:b/data.npz (90), same stem", "ok",
      check=counts_intact(120, 90))
def _(d: Path, fx: Fixtures) -> list[Any]:
    vec_npz(d / "a/data.npz", 120, seed=1)
    vec_npz(d / "b/data.npz", 90, seed=2, shift=0.3)
    return [qrun("source-only", "npz:a/data.npz", "npz:b/data.npz", out="out")]


def _retrained(d: Path, runs: list[RunRecord]) -> dict[str, Any]:
    first, second = result_json(d / "result-first.json"), result_json(d / "out" / "result.json")
    if first is None or second is None:
        return {}
    facts = {"first": {k: first.get(k) for k in ("target_accuracy", "train_seconds")},
             "second": {k: second.get(k) for k in ("target_accuracy", "train_seconds")},
             "data_hash": [first["fingerprint"].get("data"), second["fingerprint"].get("data")]}
    if runs[-1].rc == 0 and first == second:
        facts["note"] = "silently wrong: the finished run was reused, result.json unchanged"
        facts["problem"] = "not retrained"
    elif runs[-1].rc == 0:
        facts["note"] = "retrained"
    return facts


@case("changed-data-same-out", "rerun with the same --out after the target npz was overwritten with other data",
      "error", check=_retrained, require=(r"data: saved",))  # a finished run is never reused for other data (bench/select retrain elsewhere)
def _(d: Path, fx: Fixtures) -> list[Any]:
    args = qrun("source-only", *two_npz(d), out="out")

    def overwrite() -> None:
        shutil.copyfile(d / "out" / "result.json", d / "result-first.json")
        X, y = blobs(120, seed=7, shift=-1.0)
        save_npz(d / "tgt.npz", X[::-1].copy(), (y[::-1] + 1) % 3)  # other samples, permuted labels
    return [args, overwrite, args]


for _id, _flag, _value, _method in [("lr-nan", "--lr", "nan", "source-only"), ("lr-inf", "--lr", "inf", "source-only"),
                                    ("copied-lr-mult-nan", "--copied-lr-mult", "nan", "source-only"),
                                    ("trade-off-nan", "--set", "trade_off=nan", "dan")]:
    @case(_id, f"{_method} {_flag} {_value}", "error")
    def _(d: Path, fx: Fixtures, flag: str = _flag, value: str = _value, method: str = _method) -> list[Any]:
        return [qrun(method, *two_npz(d), flag, value)]


CSV_COLUMNS = ["signal_a", "signal_b", "signal_c", "age", "income"]


def order_csv(path: Path, n: int, seed: int, order: list[str]) -> Path:
    """Features with a meaning: signal_k is high for class k; age and income are noise of other scales."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    rng.shuffle(y)
    cols = {"signal_a": rng.normal(size=n) + 3 * (y == 0), "signal_b": rng.normal(size=n) + 3 * (y == 1),
            "signal_c": rng.normal(size=n) + 3 * (y == 2), "age": rng.normal(0, 2, n), "income": rng.normal(1, 1, n)}
    rows = [[f"{cols[c][i]:.4g}" for c in order] + [int(y[i])] for i in range(n)]
    return write_csv(path, order + ["label"], rows)


def _order_check(d: Path, runs: list[RunRecord]) -> dict[str, Any]:
    same, other = runs[0].accuracy, runs[1].accuracy
    facts: dict[str, Any] = {"acc_same_order": same, "acc_other_order": other}
    if same is not None and other is not None:
        facts["note"] = f"{same:.0f}% with the columns in the source's order"
        if other < same - 15:
            facts["note"] = f"silently wrong: {same:.0f}% with the source's column order"
            facts["problem"] = "columns matched by position, not by name"
    return facts


@case("csv-column-order", "target CSV with the source's columns in another order (matched by name?)", "ok",
      check=_order_check)
def _(d: Path, fx: Fixtures) -> list[Any]:
    order_csv(d / "src.csv", 200, 1, CSV_COLUMNS)
    order_csv(d / "tgt.csv", 200, 2, CSV_COLUMNS)
    order_csv(d / "tgt_reordered.csv", 200, 2, ["age", "signal_c", "signal_a", "income", "signal_b"])
    return [qrun("source-only", "csv:src.csv", "csv:tgt.csv", out="o1"),
            qrun("source-only", "csv:src.csv", "csv:tgt_reordered.csv", out="o2")]


def _leak(d: Path, runs: list[RunRecord]) -> dict[str, Any]:
    acc = runs[-1].accuracy  # chance is 33%: every other feature is noise
    return {"note": "silently wrong: the 'target' column, a copy of 'label', was a feature"} \
        if acc is not None and acc > 60 else {}


@case("csv-label-and-target", "CSV with both a 'label' and a 'target' column (= label: a leak)", "error",
      check=_leak)
def _(d: Path, fx: Fixtures) -> list[Any]:
    for name, seed in (("src", 1), ("tgt", 2)):
        rng = np.random.default_rng(seed)
        y = np.arange(150) % 3
        rows = [[f"{v:.4f}" for v in rng.normal(size=5)] + [int(c), int(c)] for c in y]  # features are pure noise
        write_csv(d / f"{name}.csv", [f"f{i}" for i in range(5)] + ["label", "target"], rows)
    return [qrun("source-only", "csv:src.csv", "csv:tgt.csv", epochs=3)]


@case("csv-bom", "CSV saved with a UTF-8 BOM, label in the first column", "ok")
def _(d: Path, fx: Fixtures) -> list[Any]:
    for name, seed in (("src", 1), ("tgt", 2)):
        X, y = blobs(120, d=5, seed=seed)
        rows = [[int(c)] + [f"{v:.4f}" for v in x] for x, c in zip(X, y)]
        write_csv(d / f"{name}.csv", ["label"] + [f"f{i}" for i in range(5)], rows, encoding="utf-8-sig")
    return [qrun("source-only", "csv:src.csv", "csv:tgt.csv")]


@case("csv-label-nan", "CSV whose label column is 'nan' in a few rows", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    labels = [str(int(c)) for c in blobs(120)[1]]
    for i in (3, 50, 77):
        labels[i] = "nan"
    vec_csv(d / "src.csv", 120, seed=1, labels=labels)
    vec_csv(d / "tgt.csv", 120, seed=2)
    return [qrun("source-only", "csv:src.csv", "csv:tgt.csv")]


@case("csv-unknown-option", "csv:src.csv?lable=y (misspelt option)", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    vec_csv(d / "src.csv", 120, seed=1)
    vec_csv(d / "tgt.csv", 120, seed=2)
    return [qrun("source-only", "csv:src.csv?lable=y", "csv:tgt.csv")]


def _out_empty(d: Path, runs: list[RunRecord]) -> dict[str, Any]:
    litter = sorted(p.name for p in d.iterdir() if p.name in ("model.pt", "result.json", "checkpoint.pt"))
    return {"written_in_cwd": litter, **({"note": f"wrote {', '.join(litter)} into the current folder"}
                                          if litter else {})}


@case("out-empty", '--out ""', "error", check=_out_empty)
def _(d: Path, fx: Fixtures) -> list[Any]:
    return [qrun("source-only", *two_npz(d), out="")]


@case("threads-0", "--threads 0", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    return [qrun("source-only", *two_npz(d), threads=0)]


@case("one-class", "source and target with a single class", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    save_npz(d / "src.npz", blobs(120, seed=1)[0], np.zeros(120, np.int64))
    save_npz(d / "tgt.npz", blobs(120, seed=2)[0], np.zeros(120, np.int64))
    return [qrun("source-only", *COMMON_VEC)]


def _test_size(d: Path, runs: list[RunRecord]) -> dict[str, Any]:
    res = result_json(d / "out" / "result.json")
    return {} if res is None else {"n_target_test": res["n_target_test"],
                                   "note": f"scored on {res['n_target_test']} target samples"}


@case("tiny-target-test", "target CSV of 4 rows: 2 target test samples", "ok+warning|error", check=_test_size)
def _(d: Path, fx: Fixtures) -> list[Any]:
    vec_csv(d / "src.csv", 120, seed=1)
    vec_csv(d / "tgt.csv", 4, seed=2, classes=2)
    return [qrun("source-only", "csv:src.csv", "csv:tgt.csv", out="out")]


# ---- memory and crashes
group("memory and crashes")


@case("npz-label-1e9", "npz whose y holds one label 1e9", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    X, y = blobs(120, seed=1)
    y[5] = 10**9
    save_npz(d / "src.npz", X, y)
    vec_npz(d / "tgt.npz", 120, seed=2)
    return [qrun("source-only", *COMMON_VEC)]


@case("idx-gzip-bomb", "idx: folder whose images .gz (3.4 MB) expands to 3.5 GB", "error", timeout=240)
def _(d: Path, fx: Fixtures) -> list[Any]:
    vec = fx.idx_bomb()
    img_folder(d / "small", size=28)
    return [qrun("source-only", f"idx:{vec}", "folder:small?size=28")]


@case("npz-huge-header", "npz whose X.npy header declares 1e12 float32 elements (4 TB)", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    with zipfile.ZipFile(d / "src.npz", "w") as z:
        z.writestr("X.npy", npy_header((1_000_000, 1_000_000)) + bytes(4096))
        z.writestr("y.npy", npy_bytes(np.arange(120) % 3))
    vec_npz(d / "tgt.npz", 120, seed=2)
    return [qrun("source-only", *COMMON_VEC)]


@case("png-14000", "a 14000x14000 PNG among the images of a folder dataset", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    from PIL import Image

    img_folder(d / "src", size=28, seed=1)
    img_folder(d / "tgt", size=28, seed=2)
    Image.new("L", (14000, 14000), 0).save(d / "src" / "class0" / "huge.png", compress_level=1)
    return [qrun("source-only", "folder:src?size=28", "folder:tgt?size=28")]


def _peak(d: Path, runs: list[RunRecord]) -> dict[str, Any]:
    return {"peak_rss_mb": runs[-1].peak_rss_mb, "note": f"peak RSS {runs[-1].peak_rss_mb / 1024:.1f} GB"}


@case("folder-big-jpegs", "folder of 60 JPEGs of 3000x3000 (?size=28)", "ok", check=_peak)
def _(d: Path, fx: Fixtures) -> list[Any]:
    return [qrun("source-only", f"folder:{fx.big_jpegs()}?size=28&name=big", f"folder:{fx.small_rgb()}?size=28")]


@case("folder-big-jpegs-2gb", "60 JPEGs of 3000x3000 under a 2 GB memory limit", "ok", check=_peak, mem_gb=2)
def _(d: Path, fx: Fixtures) -> list[Any]:
    return [qrun("source-only", f"folder:{fx.big_jpegs()}?size=28&name=big", f"folder:{fx.small_rgb()}?size=28")]


@case("folder-big-jpegs-max-samples", "60 JPEGs of 3000x3000 with --max-samples 12", "ok", check=_peak)
def _(d: Path, fx: Fixtures) -> list[Any]:
    return [qrun("source-only", f"folder:{fx.big_jpegs()}?size=28&name=big", f"folder:{fx.small_rgb()}?size=28",
                 "--max-samples", "12")]


@case("idx-dims-overflow", "IDX header dims 2^22 x 2^21 x 2^21 (product 2^64 wraps to 0 in int64)", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    (d / "bad").mkdir()
    (d / "bad" / "train-images-idx3-ubyte").write_bytes(idx_header((2**22, 2**21, 2**21)))
    write_idx(d / "bad" / "train-labels-idx1-ubyte", np.arange(60) % 3)
    img_folder(d / "small", size=28)
    return [qrun("source-only", "idx:bad", "folder:small?size=28")]


@case("csv-latin1", "CSV in latin-1 with non-ASCII bytes (header 'température', values 'é')", "ok|error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    X, y = blobs(120, d=5, seed=1)
    rows = [[f"{v:.4f}" for v in x] + [["rouge", "vert", "bleu-é"][c]] for x, c in zip(X, y)]
    write_csv(d / "src.csv", ["température", "f1", "f2", "f3", "f4", "label"], rows, encoding="latin-1")
    vec_csv(d / "tgt.csv", 120, seed=2)
    return [qrun("source-only", "csv:src.csv", "csv:tgt.csv")]


@case("csv-random-bytes", "a CSV file of random bytes", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    random_bytes(d / "src.csv")
    vec_csv(d / "tgt.csv", 120, seed=2)
    return [qrun("source-only", "csv:src.csv", "csv:tgt.csv")]


@case("idx-given-file", "idx: given a file instead of a folder", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    write_idx(d / "train-images-idx3-ubyte", np.zeros((60, 28, 28)))
    img_folder(d / "small", size=28)
    return [qrun("source-only", "idx:train-images-idx3-ubyte", "folder:small?size=28")]


@case("folder-given-file", "folder: given a file", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    from PIL import Image

    Image.new("L", (28, 28)).save(d / "img.png")
    img_folder(d / "small", size=28)
    return [qrun("source-only", "folder:img.png", "folder:small?size=28")]


@case("csv-given-folder", "csv: given a folder", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    (d / "table").mkdir()
    vec_csv(d / "tgt.csv", 120, seed=2)
    return [qrun("source-only", "csv:table", "csv:tgt.csv")]


for _size in ("abc", "0", "-4", "100000"):
    @case(f"folder-size-{_size.replace('-', 'neg')}", f"folder:DIR?size={_size}", "error")
    def _(d: Path, fx: Fixtures, size: str = _size) -> list[Any]:
        img_folder(d / "src", seed=1)
        img_folder(d / "tgt", seed=2)
        return [qrun("source-only", f"folder:src?size={size}", "folder:tgt?size=8")]


@case("seed-2^63", "--seed 9223372036854775808 (2**63)", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    return [qrun("source-only", *two_npz(d), "--seed", str(2**63))]


@case("threads-neg", "--threads -1", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    return [qrun("source-only", *two_npz(d), threads=-1)]


CUDA = {"available": False}


@case("device-cuda", "--device cuda on a machine without CUDA", "error",
      skip=lambda: "CUDA is available here" if CUDA["available"] else None)
def _(d: Path, fx: Fixtures) -> list[Any]:
    return [qrun("source-only", *two_npz(d), "--device", "cuda")]


@case("device-foo", "--device foo", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    return [qrun("source-only", *two_npz(d), "--device", "foo")]


@case("lr-negative", "--lr -1", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    return [qrun("source-only", *two_npz(d), "--lr", "-1")]


@case("hidden-0", "dann --set hidden=0 (a zero-width discriminator)", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    return [qrun("dann", *two_npz(d), "--set", "hidden=0")]


@case("drcn-noise-1.5", "drcn --set noise=1.5 (a dropout-style rate above 1)", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    return [qrun("drcn", *two_npz(d), "--set", "noise=1.5")]


@case("ddc-kernel-x", "ddc --set kernel=x", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    return [qrun("ddc", *two_npz(d), "--set", "kernel=x")]


@case("batch-size-1", "--batch-size 1", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    return [qrun("source-only", *two_npz(d), batch_size=1)]


for _method in ("dsn", "oracle"):
    @case(f"{_method}-1-target-sample", f"{_method} with a target of 2 samples (1 train, 1 test)", "error")
    def _(d: Path, fx: Fixtures, method: str = _method) -> list[Any]:
        vec_npz(d / "src.npz", 120, seed=1)
        save_npz(d / "tgt.npz", blobs(2, seed=2)[0], np.zeros(2, np.int64))
        return [qrun(method, *COMMON_VEC)]


@case("images-2x2", "2x2 images (npz X of shape (60, 2, 2)) through the default CNN", "error")
def _(d: Path, fx: Fixtures) -> list[Any]:
    rng = np.random.default_rng(0)
    save_npz(d / "src.npz", rng.integers(0, 255, (60, 2, 2)).astype(np.uint8), np.arange(60) % 3)
    save_npz(d / "tgt.npz", rng.integers(0, 255, (60, 2, 2)).astype(np.uint8), np.arange(60) % 3)
    return [qrun("source-only", *COMMON_VEC)]


#: A run with a few seconds of training, to tell an error before training from one after it.
LONG = ("--steps-per-epoch", "8000")


def _before_training(d: Path, runs: list[RunRecord]) -> dict[str, Any]:
    """Compare with the same run into a good --out: an error before training saves most of its training time."""
    control, bad = runs[0], runs[-1]
    good = result_json(d / "good" / "result.json")
    facts: dict[str, Any] = {"control_seconds": control.elapsed, "error_seconds": bad.elapsed}
    if good is not None and bad.rc != 0:
        train = good["train_seconds"]
        late = bad.elapsed > control.elapsed - 0.5 * train
        facts.update(control_train_seconds=train,
                     note=f"{'after' if late else 'before'} training: {bad.elapsed:.0f}s; a good --out takes "
                          f"{control.elapsed:.0f}s, {train:.0f}s of it training")
        if late:
            facts["problem"] = "the error comes after training"
    return facts


@case("out-is-file", "--out naming an existing file", "error", check=_before_training)
def _(d: Path, fx: Fixtures) -> list[Any]:
    (d / "taken").write_text("a file\n")
    return [qrun("source-only", *two_npz(d), *LONG, out="good"), qrun("source-only", *COMMON_VEC, *LONG, out="taken")]


@case("out-under-file", "--out a path under a file (taken/sub)", "error", check=_before_training)
def _(d: Path, fx: Fixtures) -> list[Any]:
    (d / "taken").write_text("a file\n")
    return [qrun("source-only", *two_npz(d), *LONG, out="good"),
            qrun("source-only", *COMMON_VEC, *LONG, out="taken/sub")]


@case("out-read-only", "--out a read-only folder (chmod 555)", "error", check=_before_training,
      skip=lambda: "running as root: read-only folders are writable" if os.geteuid() == 0 else None)
def _(d: Path, fx: Fixtures) -> list[Any]:
    (d / "ro").mkdir()
    (d / "ro").chmod(0o555)
    return [qrun("source-only", *two_npz(d), *LONG, out="good"), qrun("source-only", *COMMON_VEC, *LONG, out="ro")]


# ---- races and litter
group("races and litter")


def _race(d: Path, runs: list[RunRecord]) -> dict[str, Any]:
    res = result_json(d / "shared" / "result.json")
    facts: dict[str, Any] = {"exit_codes": [r.rc for r in runs], "result_seed": res and res.get("seed")}
    in_use = [r for r in runs if r.category == "qianyi error" and re.search(r"in use|locked|another",
                                                                             r.error_line or "", re.I)]
    ok = [r for r in runs if r.rc == 0]
    if len(ok) == 1 and len(in_use) == 1:
        facts["note"] = f"one ran (seed {res and res.get('seed')}), the other: {in_use[0].error_line}"
    else:
        facts["problem"] = "expected one run to finish and the other to refuse the folder as in use"
        facts["note"] = (f"exit codes {' and '.join(str(r.rc) for r in runs)}; result.json from seed "
                         f"{res and res.get('seed')}")
    return facts


@case("race-same-out", "two `qianyi run` on one --out started at once (seeds 0 and 1)", "one in use", check=_race)
def _(d: Path, fx: Fixtures) -> list[Any]:
    src, tgt = two_npz(d, 200)
    return [Together([qrun("source-only", src, tgt, "--seed", str(s), "--steps-per-epoch", "600", out="shared",
                           epochs=2) for s in (0, 1)])]


STALE = ".checkpoint.pt.k3j9x_2a.tmp"


def _stale(d: Path, runs: list[RunRecord]) -> dict[str, Any]:
    left = (d / "out" / STALE).exists()
    return {"stale_left": left, "note": "stale temp file left in place" if left else "stale temp file removed",
            **({"problem": "stale temp file left"} if left else {})}


@case("stale-tmp-checkpoint", f"a stale {STALE} (from a killed run) in --out", "removed", check=_stale)
def _(d: Path, fx: Fixtures) -> list[Any]:
    random_bytes(d / "out" / STALE, 1 << 16)
    old = time.time() - 3 * 86400
    os.utime(d / "out" / STALE, (old, old))
    return [qrun("source-only", *two_npz(d), out="out")]


# ---- messages
group("messages")


@case("npz-random-bytes", "an npz file of random bytes (the message must not mention pickled data)", "error",
      forbid=(r"pickle",))
def _(d: Path, fx: Fixtures) -> list[Any]:
    random_bytes(d / "src.npz")
    vec_npz(d / "tgt.npz", 120, seed=2)
    return [qrun("source-only", *COMMON_VEC)]


@case("npz-truncated", "an npz cut in half (no 'object arrays' hint)", "error", forbid=(r"object arrays",))
def _(d: Path, fx: Fixtures) -> list[Any]:
    vec_npz(d / "full.npz", 120, seed=1)
    data = (d / "full.npz").read_bytes()
    (d / "src.npz").write_bytes(data[: len(data) // 2])
    vec_npz(d / "tgt.npz", 120, seed=2)
    return [qrun("source-only", *COMMON_VEC)]


@case("npz-truncated-member", "an intact zip whose X.npy is cut short (no 'object arrays' hint)", "error",
      forbid=(r"object arrays",))
def _(d: Path, fx: Fixtures) -> list[Any]:
    X, y = blobs(120, seed=1)
    with zipfile.ZipFile(d / "src.npz", "w") as z:
        z.writestr("X.npy", npy_bytes(X)[:400])
        z.writestr("y.npy", npy_bytes(y))
    vec_npz(d / "tgt.npz", 120, seed=2)
    return [qrun("source-only", *COMMON_VEC)]


@case("corrupt-checkpoint", "random bytes as checkpoint.pt in --out (no advice to use weights_only=False)", "error",
      forbid=(r"weights_only\W*(=|set to)\W*False",))
def _(d: Path, fx: Fixtures) -> list[Any]:
    random_bytes(d / "out" / "checkpoint.pt", 1 << 16)
    return [qrun("source-only", *two_npz(d), out="out")]


for _n in ("0", "1"):
    @case(f"max-samples-{_n}", f"--max-samples {_n} (the message must name --max-samples)", "error",
          require=(r"max.samples",))
    def _(d: Path, fx: Fixtures, n: str = _n) -> list[Any]:
        return [qrun("source-only", *two_npz(d), "--max-samples", n)]


# -- running the catalogue ------------------------------------------------------------------------------
BASE_RULES: dict[str, Callable[[list[RunRecord]], bool]] = {
    "error": lambda runs: runs[-1].category == "qianyi error",
    "ok": lambda runs: all(r.rc == 0 and not r.traceback for r in runs),
    "ok+warning": lambda runs: all(r.rc == 0 and not r.traceback for r in runs) and bool(runs[-1].warnings),
    "ok|error": lambda runs: runs[-1].category in ("ok", "qianyi error") and not runs[-1].traceback,
    "ok+warning|error": lambda runs: (runs[-1].category == "ok" and not runs[-1].traceback and bool(runs[-1].warnings))
    or runs[-1].category == "qianyi error",
    "retrained": lambda runs: all(r.rc == 0 and not r.traceback for r in runs),
    "removed": lambda runs: all(r.rc == 0 and not r.traceback for r in runs),
    "one in use": lambda runs: True,  # judged by the case's check alone
}


def describe(r: RunRecord) -> str:
    """A short account of one run for the table."""
    if r.category == "timeout":
        return f"timeout ({r.elapsed:.0f}s)"
    if r.killed:
        return f"killed: {r.killed}"
    if r.traceback:
        exc = r.exception or r.last_line
        return "traceback: " + _short(exc, 90)
    if r.category == "qianyi error":
        return _short(r.error_line or "", 110)
    if r.rc == 0:
        text = "exit 0" + (f", {r.accuracy:.0f}%" if r.accuracy is not None else "")
        if r.warnings:
            text += ", warning: " + _short(r.warnings[0], 80)
        return text
    return f"exit {r.rc}: " + _short(r.last_line, 90)


def run_case(c: Case, env: Env, fx: Fixtures, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"id": c.id, "what": c.what, "expect": c.expect, "group": c.group}
    reason = c.skip() if c.skip else None
    if reason:
        return {**out, "category": "skipped", "short": f"skipped ({reason})", "as_expected": None,
                "problem": None, "runs": [], "facts": {}}
    d = root / "cases" / c.id
    d.mkdir(parents=True)
    t0 = time.perf_counter()
    runs: list[RunRecord] = []
    last_step: list[RunRecord] = []  # the records of the last step (two for a Together step)
    try:
        steps = c.build(d, fx)
        for i, step in enumerate(steps):
            if callable(step):
                step()
            else:
                arg_lists = step.arg_lists if isinstance(step, Together) else [step]
                last_step = run_qianyi(env, d, arg_lists, f"{c.id}-{i}", c.mem_gb, c.timeout)
                runs += last_step
        facts = c.check(d, runs) if c.check else {}
    except Exception as exc:  # a harness failure is reported, not hidden
        facts = {"problem": f"harness error: {type(exc).__name__}: {exc}"}
    finally:
        for p in d.rglob("*"):  # read-only folders (out-read-only) must not stop the clean-up
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
    problems = [facts.get("problem")] if facts.get("problem") else []
    if runs:
        last = runs[-1]
        if not BASE_RULES[c.expect](runs):
            problems.append(f"expected {c.expect}, got {last.category}")
        for pattern in c.forbid:
            if any(re.search(pattern, r.stderr) for r in runs):
                problems.append(f"message contains {pattern!r}")
        for pattern in c.require:
            if last.category == "qianyi error" and not re.search(pattern, last.error_line or ""):
                problems.append(f"message lacks {pattern!r}")
        short = " + ".join(describe(r) for r in last_step)
        if c.expect == "error" and last.category == "ok" and "note" not in facts:
            facts["note"] = "accepted silently"
        if facts.get("note"):
            short += f" ({facts['note']})"
        category = last.category
    else:
        problems = problems or ["no run"]
        short, category = problems[0], "harness error"
    return {**out, "category": category, "short": short, "as_expected": not problems,
            "problem": "; ".join(problems) or None, "seconds": round(time.perf_counter() - t0, 1),
            "runs": [{k: v for k, v in asdict(r).items() if k != "stderr"} for r in runs], "facts": {k: v for k, v in facts.items() if k != "problem"}}


def probe(env: Env, src: str | None) -> tuple[str, bool]:
    """Which qianyi the children import (and whether CUDA is there); stop if it is not the one asked for."""
    r = subprocess.run([env.python, "-c", PROBE], env=env.env, capture_output=True, text=True, cwd=env.logs)
    if r.returncode != 0:
        sys.exit(f"cannot import qianyi in a child process:\n{r.stderr}")
    qianyi_file, cuda = r.stdout.split()[:2]
    print(f"qianyi imported from {qianyi_file}", flush=True)
    if src and not Path(qianyi_file).resolve().is_relative_to(Path(src).resolve()):
        sys.exit(f"--src {src} given but the children import {qianyi_file}")
    return qianyi_file, cuda == "True"


def run_all(args: argparse.Namespace) -> int:
    cases = CASES
    if args.only:
        wanted = [x.strip() for x in args.only.split(",") if x.strip()]
        unknown = [x for x in wanted if x not in {c.id for c in CASES}]
        if unknown:
            sys.exit(f"unknown case ids {unknown}; known: {', '.join(c.id for c in CASES)}")
        cases = [c for c in CASES if c.id in wanted]
    root = Path(tempfile.mkdtemp(prefix="qianyi-hostile-"))
    (root / "logs").mkdir()
    env_vars = {k: v for k, v in os.environ.items() if k not in ("QIANYI_DATA", "PYTHONPATH")}
    env_vars.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    if args.src:
        env_vars["PYTHONPATH"] = str(Path(args.src).resolve())
    env = Env(sys.executable, env_vars, args.timeout, args.mem_gb, root / "logs")
    qianyi_file, CUDA["available"] = probe(env, args.src)
    fx = Fixtures(root / "fixtures")
    t0 = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def one(c: Case) -> None:
        res = run_case(c, env, fx, root)
        with lock:
            results[c.id] = res
            mark = {True: "as expected", False: "NOT as expected", None: "skipped"}[res["as_expected"]]
            print(f"[{len(results):2d}/{len(cases)}] {c.id:30s} {mark:16s} {res['short']}"
                  + (f"  <- {res['problem']}" if res["problem"] else ""), flush=True)

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(one, sorted(cases, key=lambda c: c.timeout is None)))  # slow cases first
    runtime = time.perf_counter() - t0
    ordered = [results[c.id] for c in cases]
    judged = [r for r in ordered if r["as_expected"] is not None]
    good = sum(r["as_expected"] for r in judged)
    meta = {"qianyi_file": qianyi_file, "src": args.src, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "runtime_s": round(runtime, 1), "jobs": args.jobs,
            "timeout_s": args.timeout, "mem_gb": args.mem_gb, "cuda": CUDA["available"]}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "cases": ordered}, indent=1) + "\n")
        print(f"written: {args.json}")
    if args.keep:
        print(f"kept: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    skipped = len(ordered) - len(judged)
    print(f"runtime {runtime:.0f}s")
    print(f"{good}/{len(judged)} cases as expected" + (f" ({skipped} skipped)" if skipped else ""))
    return 0 if good == len(judged) else 1


def table(paths: list[str]) -> str:
    """Markdown: case | what | before | after (one file: case | what | before)."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    labels = ["before", "after"][: len(runs)]
    by_id = [{c["id"]: c for c in r["cases"]} for r in runs]
    ids = list(dict.fromkeys(c["id"] for r in runs for c in r["cases"]))

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| case | what | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for i in ids:
        first = next(b[i] for b in by_id if i in b)
        cells = []
        for k, b in enumerate(by_id):
            c = b.get(i)
            text = "—" if c is None else c["short"]
            if c is not None and k == len(by_id) - 1 and len(by_id) > 1 and c["as_expected"] is False:
                text = "**NOT AS EXPECTED:** " + text
            cells.append(cell(text))
        lines.append(f"| `{i}` | {cell(first['what'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=None, help="a src/ folder to import qianyi from (default: the installed one)")
    ap.add_argument("--json", default=None, help="write the records here")
    ap.add_argument("--table", nargs="+", default=None, metavar="JSON", help="print the markdown table of 1-2 records")
    ap.add_argument("--only", default=None, metavar="ID[,ID]", help="run only these cases")
    ap.add_argument("--jobs", type=int, default=2, help="cases run in parallel (default 2)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per qianyi process (default 120)")
    ap.add_argument("--mem-gb", type=float, default=6, help="memory limit per qianyi process in GB (default 6)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders (their path is printed)")
    ap.add_argument("--list", action="store_true", help="list the case ids and stop")
    args = ap.parse_args()
    if args.table:
        if len(args.table) > 2:
            ap.error("--table takes one or two JSON files (before [after])")
        print(table(args.table))
        return 0
    if args.list:
        for c in CASES:
            print(f"{c.id:30s} {c.expect:18s} {c.what}")
        return 0
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
