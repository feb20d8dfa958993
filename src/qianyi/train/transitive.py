"""Transfer through intermediate domains: source -> via_1 -> ... -> via_k -> target, one run per stage.

Like crossing a river on stepping stones: a network adapted to the nearest unlabelled domain starts
the next stage, so no single step has to bridge the whole shift (gradual self-training, Kumar, Ma,
Liang, ICML 2020; transitive transfer, Tan et al., KDD 2015). Each stage is an ordinary run on the
one engine (:func:`qianyi.train.run`) whose target is the stage's domain and whose starting weights
are the previous stage's model (``init_from``); stage 0 trains source-only. ``mode="all"`` instead
adapts once to every unlabelled domain pooled (the "all unlabelled data" baseline), and no ``via``
is direct adaptation to the target from the source model.

Stages live in ``OUT/stages/NN-NAME/`` (each a complete run folder: a killed run resumes at the
stage it was in, finished stages are reused); the final stage is ``OUT`` itself, so ``qianyi
predict OUT`` applies the final model. ``OUT/stages.csv`` and ``OUT/stages.png`` show what each
stage did.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._io import write_text
from ..data.domain import Domain, TransferTask
from ..errors import DataError
from ..methods.registry import get_method
from .config import TrainConfig
from .engine import FitResult
from .result import MODEL_FILE, RunResult
from .run import ORACLE_KEY, BackboneSpec, run

#: ``mode``: adapt through the intermediate domains one after another, or to all of them pooled at once.
VIA_MODES = ("gradual", "all")


@dataclass
class Stage:
    """One stage of a transitive run: its name, what it adapted to, and its result."""

    index: int
    name: str
    method: str
    domain: str
    n_target: int
    result: RunResult
    fit: FitResult | None = None

    def row(self) -> dict[str, Any]:
        last = self.result.history[-1] if self.result.history else {}
        return {"stage": self.index, "name": self.name, "method": self.method, "adapts_to": self.domain,
                "samples": self.n_target, "pseudo_share": last.get("pseudo_share"),
                "target_top_share": last.get("target_top_share"), "source_val_acc": self.result.source_accuracy,
                "oracle_target_acc": last.get(ORACLE_KEY)}


def _pooled(domains: Sequence[Domain], name: str) -> Domain:
    return Domain(np.concatenate([np.asarray(d.X) for d in domains]), None, name, class_names=domains[0].class_names)


def run_via(method: str, task: TransferTask, via: Sequence[Domain], config: TrainConfig | None = None,
            out: str | Path | None = None, mode: str = "gradual", track_target_test: bool = False,
            backbone: BackboneSpec | None = None, **hparams: Any) -> tuple[RunResult, list[Stage]]:
    """Train ``method`` from ``task.source`` to ``task.target`` through the unlabelled domains ``via``
    (in order); return the final stage's result and every stage.

    ``via`` domains must already be in the task's input form (:func:`qianyi.data.load_via`). Their
    labels, if any, are dropped. ``track_target_test`` records each stage's accuracy on the final
    target's test split (``oracle_target_acc``, reports only; nothing is chosen on it).
    """
    if mode not in VIA_MODES:
        raise DataError(f"via mode must be one of {', '.join(VIA_MODES)}, got {mode!r}")
    config = config or TrainConfig()
    get_method(method, **hparams)  # refuse a bad method or setting before any stage trains
    tmp = tempfile.TemporaryDirectory() if out is None else None
    root = Path(out) if out is not None else Path(tmp.name)  # type: ignore[union-attr]
    plan: list[tuple[str, str, Domain]] = []  # (name, method, domain adapted to)
    start = config.init_from
    if start is None:
        plan.append(("source", "source-only", task.target))
    unlabelled = [d.replace(y=None) for d in via]
    if mode == "gradual":
        plan += [(f"via-{d.name}", method, d) for d in unlabelled]
    elif unlabelled:
        plan.append(("via-all", method, _pooled([*unlabelled, task.target], "all unlabelled (via + target)")))
    if mode == "gradual" or not unlabelled:
        plan.append(("target", method, task.target))
    stages: list[Stage] = []
    try:
        for i, (name, m, domain) in enumerate(plan):
            last = i == len(plan) - 1
            folder = root if last else root / "stages" / f"{i:02d}-{_safe(name)}"
            stage_task = task if domain is task.target else replace(task, target=domain, name=f"{task.source.name}->{domain.name}")
            cfg = replace(config, init_from=start)
            hp = hparams if m == method else {}
            # a finished stage resumes from its last checkpoint at once (nothing trains again)
            result, fit = run(m, stage_task, cfg, out=folder, track_target_test=track_target_test, backbone=backbone,
                              **hp)
            stages.append(Stage(i, name, m, domain.name, len(domain), result, fit))
            start = str(folder / MODEL_FILE)
        if out is not None:
            write_stages(root, stages)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return stages[-1].result, stages


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


def stages_table(stages: Sequence[Stage]) -> str:
    """The stages as a Markdown table (ORACLE column only when it was recorded)."""
    rows = [s.row() for s in stages]
    oracle = any(r["oracle_target_acc"] is not None for r in rows)

    def pct(v: Any) -> str:
        return "–" if v is None else f"{100 * v:.1f}"
    head = "| stage | adapts to | method | samples | pseudo-labelled | target top class | source val acc |"
    head += " target acc after stage (ORACLE, reports only) |" if oracle else ""
    lines = [head, "|" + "---|" * (7 + oracle)]
    for r in rows:
        line = (f"| {r['stage']} {r['name']} | {r['adapts_to']} | {r['method']} | {r['samples']} | "
                f"{pct(r['pseudo_share'])} | {pct(r['target_top_share'])} | {pct(r['source_val_acc'])} |")
        lines.append(line + (f" {pct(r['oracle_target_acc'])} |" if oracle else ""))
    return "\n".join(lines)


def write_stages(out: Path, stages: Sequence[Stage]) -> list[Path]:
    """``stages.csv``, ``stages.md`` and ``stages.png`` in ``out``."""
    from .._report import save_figure, subplots

    rows = [s.row() for s in stages]
    cols = list(rows[0])
    csv = "\n".join([",".join(cols)] + [",".join("" if r[c] is None else str(r[c]) for c in cols) for r in rows])
    paths = [write_text(out / "stages.csv", csv + "\n"), write_text(out / "stages.md", stages_table(stages) + "\n")]
    fig, ax = subplots(figsize=(max(5.0, 1.1 * len(rows)), 3.4))
    x = np.arange(len(rows))
    for key, label, style in (("pseudo_share", "share of the stage's data pseudo-labelled", "o-"),
                              ("target_top_share", "share in the most frequent predicted class", "s--"),
                              ("oracle_target_acc", "final target accuracy (ORACLE, reports only)", "^:")):
        ys = np.array([np.nan if r[key] is None else r[key] for r in rows], float)
        if not np.isnan(ys).all():
            ax.plot(x, ys, style, label=label)
    ax.set_xticks(x, [f"{r['stage']}\n{r['name'][:18]}" for r in rows], fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.set_title("stages of the transitive run")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    paths.append(save_figure(fig, out / "stages.png"))
    return paths
