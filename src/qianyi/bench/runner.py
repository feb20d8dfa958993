"""Benchmarks: tasks x methods x seeds -> results.csv, results.md, results.png.

Every table reports source-only and the target oracle beside each method, and the fraction of that
gap the method closes: (acc - source_only) / (oracle - source_only), computed on the seed means.
Runs are resumable: each writes its own result.json atomically and is skipped when present.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._io import atomic_write, write_text
from ..data.domain import TransferTask
from ..data.tasks import load_task
from ..errors import DataError
from ..methods.base import Method
from ..methods.registry import get_method
from ..train.engine import TrainConfig
from ..train.run import RESULT_FILE, RunResult, run

BASELINES = ("source-only", "oracle")


def parse_pair(text: str) -> tuple[str, str]:
    """``"mnist->digits"`` or ``"mnist,digits"`` -> ("mnist", "digits")."""
    for sep in ("->", ","):
        if sep in text:
            s, t = (x.strip() for x in text.split(sep, 1))
            if s and t:
                return s, t
    raise DataError(f"cannot read the pair {text!r}; write SOURCE->TARGET (quoted in a shell) or SOURCE,TARGET")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


@dataclass
class BenchResult:
    runs: list[RunResult]
    pairs: list[tuple[str, str]]
    methods: list[str]
    out: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def accuracies(self, method: str, pair: tuple[str, str]) -> np.ndarray:
        return np.array([r.target_accuracy for r in self.runs
                         if r.method == method and (r.source, r.target) == pair])

    def gap_closed(self, method: str, pair: tuple[str, str]) -> float | None:
        so, orc, acc = (self.accuracies(m, pair) for m in ("source-only", "oracle", method))
        if not len(so) or not len(orc) or not len(acc):
            return None
        denom = orc.mean() - so.mean()
        return float((acc.mean() - so.mean()) / denom) if abs(denom) > 1e-12 else None

    def table(self) -> str:
        """Markdown: one row per method; per pair, target accuracy mean ± std (%) and gap closed."""
        head = "| method | " + " | ".join(f"{s}→{t} acc. (%) | gap closed" for s, t in self.pairs) + " | train s |"
        lines = [head, "|---|" + "---:|---:|" * len(self.pairs) + "---:|"]
        for m in self.methods:
            cells = []
            secs = [r.train_seconds for r in self.runs if r.method == m]
            for pair in self.pairs:
                a = 100 * self.accuracies(m, pair)
                if not len(a):
                    cells += ["–", "–"]
                    continue
                std = f" ± {a.std(ddof=1):.1f}" if len(a) > 1 else ""
                cells.append(f"{a.mean():.1f}{std}")
                g = None if m in BASELINES else self.gap_closed(m, pair)
                cells.append("–" if g is None else f"{100 * g:.0f}%")
            label = f"{m} (ORACLE: target labels)" if m == "oracle" else m
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {np.mean(secs):.0f} |")
        n = sorted({r.seed for r in self.runs})
        lines.append("")
        lines.append(f"Seeds {n}; mean ± sample std over seeds. Gap closed = (acc − source-only) / (oracle − "
                     "source-only) on the means. Models are the last epoch's; no target labels chose anything "
                     "except in the oracle row.")
        return "\n".join(lines)

    def write(self, out: str | Path) -> dict[str, Path]:
        out = Path(out)
        fields_ = ["method", "source", "target", "seed", "target_accuracy", "source_accuracy", "train_seconds",
                   "oracle", "selection"]

        def write_csv(fh: Any) -> None:
            w = csv.writer(fh)
            w.writerow(fields_)
            for r in self.runs:
                w.writerow([getattr(r, f) for f in fields_])
        self.files = {"csv": atomic_write(out / "results.csv", write_csv),
                      "md": write_text(out / "results.md", self.table() + "\n")}
        try:
            self.files["png"] = self.plot(out / "results.png")
        except ImportError:  # matplotlib missing: tables are still written
            pass
        return self.files

    def plot(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(self.pairs), figsize=(4.5 * len(self.pairs), 3.6), squeeze=False)
        for ax, pair in zip(axes[0], self.pairs):
            means = [100 * self.accuracies(m, pair).mean() if len(self.accuracies(m, pair)) else 0 for m in self.methods]
            stds = [100 * self.accuracies(m, pair).std(ddof=1) if len(self.accuracies(m, pair)) > 1 else 0
                    for m in self.methods]
            colors = ["#999999" if m == "source-only" else "#2ca02c" if m == "oracle" else "#1f77b4" for m in self.methods]
            ax.bar(range(len(self.methods)), means, yerr=stds, color=colors, capsize=3)
            ax.set_xticks(range(len(self.methods)), self.methods, rotation=30, ha="right")
            lo = max(0.0, min(means) - 10)
            ax.set_ylim(lo, 102)
            ax.set_title(f"{pair[0]} → {pair[1]}")
            ax.set_ylabel("target accuracy (%)")
            for i, (v, e) in enumerate(zip(means, stds)):
                ax.text(i, min(v + e, 100) + 0.4, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        return atomic_write(path, lambda fh: fh.write(buf.getvalue()), mode="wb")


def bench(methods: Sequence[str], pairs: Sequence[str | tuple[str, str]], seeds: int | Sequence[int] = 3,
          out: str | Path | None = None, config: TrainConfig | None = None, data_dir: str | None = None,
          hparams: dict[str, dict[str, Any]] | None = None, max_samples: int | None = None,
          log: Callable[[str], None] | None = print) -> BenchResult:
    """Run every method on every pair for every seed; source-only and oracle are always included.

    With ``out``, each run lives in ``out/runs/PAIR/METHOD/seedN-KEY`` (checkpoint + result.json; KEY
    hashes the hyper-parameters, training settings and task sizes) and is reused if finished, so a
    killed benchmark resumes where it stopped and a changed setting starts a fresh run.
    """
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    pairs_ = [parse_pair(p) if isinstance(p, str) else tuple(p) for p in pairs]
    methods_ = [m for m in BASELINES if m not in methods] + list(methods)
    methods_ = ["source-only"] + [m for m in methods_ if m not in ("source-only", "oracle")] + ["oracle"]
    hparams = hparams or {}
    base = config or TrainConfig()
    for m in methods_:
        get_method(m, **hparams.get(m, {}))  # fail fast on a bad name before any training
    runs: list[RunResult] = []
    for s, t in pairs_:
        task = load_task(s, t, data_dir=data_dir, max_samples=max_samples)
        if log:
            log(task.describe())
        for m in methods_:
            for seed in seeds:
                cfg = TrainConfig(**{**base.__dict__, "seed": seed})
                method = get_method(m, **hparams.get(m, {}))
                rdir = result = None
                if out is not None:
                    base_dir = Path(out) / "runs" / _slug(f"{s}->{t}") / m
                    rdir = base_dir / f"seed{seed}-{_run_key(method, cfg, task)}"
                    # the plain seedN folder is the layout of earlier versions: reuse it if it matches
                    result = (_load_finished(rdir, method, seed, cfg, task)
                              or _load_finished(base_dir / f"seed{seed}", method, seed, cfg, task))
                if result is None:
                    result, _ = run(method, task, cfg, out=rdir)
                    if log:
                        log("  " + result.summary())
                elif log:
                    log("  (done earlier) " + result.summary())
                runs.append(result)
    res = BenchResult(runs, pairs_, methods_, Path(out) if out is not None else None)
    if out is not None:
        res.write(out)
    return res


def _run_key(method: Method, cfg: TrainConfig, task: TransferTask) -> str:
    """Short hash of what defines a run, so changed settings never meet an old checkpoint."""
    ident = {"hparams": method.hparams(), "config": cfg.fingerprint(),
             "sizes": [len(task.source), len(task.source_val), len(task.target), len(task.target_test)]}
    return hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _load_finished(rdir: Path | None, method: Method, seed: int, cfg: TrainConfig,
                   task: TransferTask) -> RunResult | None:
    """A finished run of exactly this method, settings and task (sizes included), or None."""
    if rdir is None or not (rdir / RESULT_FILE).exists():
        return None
    try:
        data = json.loads((rdir / RESULT_FILE).read_text())
        result = RunResult(**data)
    except (json.JSONDecodeError, TypeError):
        return None  # unreadable: run again (the checkpoint, if any, still resumes it)
    same = (result.method == method.name and result.seed == seed
            and result.config == json.loads(json.dumps(cfg.fingerprint()))
            and result.hparams == json.loads(json.dumps(method.hparams()))
            and (result.n_source, result.n_target_train, result.n_target_test)
            == (len(task.source), len(task.target), len(task.target_test)))
    if not same:
        return None
    return result
