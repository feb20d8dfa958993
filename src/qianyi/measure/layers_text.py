"""Which layers transfer (E / H / O): Mou et al.'s INIT / MULT experiment, on the one training engine.

Mou, Meng, Yan, Li, Xu, Zhang & Jin, "How Transferable are Neural Networks in NLP Applications?",
EMNLP 2016. A network with an embedding group ``E``, a hidden group ``H`` and an output group ``O``
(``logits``) is transferred from a labelled source task S to a target task T that has a **small
labelled training set** (supervised transfer, not domain adaptation):

* **INIT**: train a network on S; a network for T copies its first k groups, frozen or fine-tuned,
  the groups above start fresh, and it trains on T's labelled split. ``source-only`` with
  :class:`TrainConfig` ``init_from`` / ``init_layers`` / ``freeze`` (as in :mod:`.transferability`).
* **MULT**: train T and S at once, the groups up to ``shared`` common to both, loss
  λ·CE(T batch) + (1 − λ)·CE(S batch): the method ``mult`` (:mod:`qianyi.methods.mult`).
  λ is chosen per seed from a grid on T's **validation** split (never the test split).
* **INIT+MULT**: MULT whose shared groups start from the S-trained network.

Every target network keeps the epoch with the best accuracy on T's validation split (``select``
``source-val``: the engine's validation split *is* T's validation split here) and is scored once on
T's test split. Rows (``ROWS``) are the layer settings; a row without MULT (frozen layers) has INIT
only. Runs live in ``out/runs/PAIR/COLUMN/ROW/lamL/seedS`` and are reused when finished with the same
settings (:func:`qianyi.train.store.finished`), so a killed experiment resumes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._io import write_json, write_text
from .._report import markdown_table, save_figure, subplots
from ..data.domain import Domain, TransferTask, stratified_split
from ..errors import DataError
from ..train.config import TrainConfig, normalise_seeds
from ..train.result import RunResult
from .transferability import cached_run, runs_root

#: The columns: how the source task is used.
COLUMNS = ("INIT", "MULT", "INIT+MULT")
#: Default λ grid of MULT and INIT+MULT (λ weighs the target loss; λ = 1 would be target-only).
LAMBDAS = (0.25, 0.5, 0.75)
#: The row of the network that copies every group frozen: the S network applied to T as it is.
SOURCE_AS_IS = "EHO-frozen"


@dataclass(frozen=True)
class Row:
    """One layer setting: the first ``k`` groups copied (INIT), the first ``frozen`` of them frozen;
    ``shared``: MULT's highest shared group index (1-based, None: no MULT for this row)."""

    key: str
    label: str
    k: int
    frozen: int
    shared: int | None


#: E, H, O each fresh (·), frozen (❄) or fine-tuned / shared (✓). O is the output group ``logits``.
ROWS = (
    Row("fresh", "E· H· O·  (target only)", 0, 0, None),
    Row("E-frozen", "E❄ H· O·", 1, 1, None),
    Row("E", "E✓ H· O·", 1, 0, 1),
    Row("EH-frozen", "E❄ H❄ O·", 2, 2, None),
    Row("EH", "E✓ H✓ O·", 2, 0, 2),
    Row("EHO", "E✓ H✓ O✓", 3, 0, 3),
    Row(SOURCE_AS_IS, "E❄ H❄ O❄  (S network as is)", 3, 3, None),
)


@dataclass(frozen=True, eq=False)
class TextPair:
    """A supervised transfer pair: labelled S (train + val), T's small labelled train split, T's
    validation split, T's unused rest (inputs only), T's test split; one vocabulary (``preprocessing``)."""

    name: str
    source: Domain
    source_val: Domain
    target_train: Domain
    target_val: Domain
    target_rest: Domain
    target_test: Domain
    preprocessing: dict | None = None

    def describe(self) -> str:
        return (f"{self.name}: S {len(self.source)} train + {len(self.source_val)} val; T {len(self.target_train)} "
                f"labelled train + {len(self.target_val)} val + {len(self.target_test)} test "
                f"({len(self.target_rest)} unused)")

    def _task(self, source: Domain, val: Domain, target: Domain, what: str) -> TransferTask:
        return TransferTask(source, val, target, self.target_test, f"{self.name} [{what}]", self.preprocessing)

    def source_task(self) -> TransferTask:
        """Train on S (labelled), select on S's validation split; scored on T's test split."""
        return self._task(self.source, self.source_val, self.target_rest.replace(y=None), "S")

    def target_task(self) -> TransferTask:
        """Train on T's labelled split, select on T's validation split (INIT and the fresh baseline)."""
        return self._task(self.target_train, self.target_val, self.target_rest.replace(y=None), "T")

    def mult_task(self) -> TransferTask:
        """MULT's view: the engine's source = S, its target = T's labelled split (labels handed to ``mult``),
        its validation split = T's validation split."""
        return self._task(self.source, self.target_val, self.target_train, "S+T")


def split_pair(task: TransferTask, n_labels: int = 200, n_val: int = 200, seed: int = 0,
               name: str | None = None) -> TextPair:
    """A :class:`TextPair` from a task whose target is labelled (``load_task``'s split): its target
    training split becomes ``n_val`` validation + ``n_labels`` labelled training samples (stratified,
    from ``seed``) + the rest; S's splits and T's test split stay as they are."""
    t = task.target
    if t.y is None or task.target_test is None:
        raise DataError(f"{task.name}: supervised transfer needs a labelled target (for its training, validation "
                        "and test splits)")
    if task.source.class_names != t.class_names:
        raise DataError(f"{task.name}: source classes {task.source.class_names} and target classes "
                        f"{t.class_names} differ; MULT here shares one output layer and needs one label set")
    if n_labels < 2 or n_val < 2 or n_labels + n_val > len(t):
        raise DataError(f"{task.name}: {n_labels} labelled + {n_val} validation target samples requested, the "
                        f"target's training split holds {len(t)} (each must be at least 2): lower --n-labels/--n-val, "
                        "or raise --max-samples if you capped the domains")
    rest, val = stratified_split(t.y, len(t), n_val / len(t), seed + 2)
    pool = t.subset(rest)
    if n_labels < len(pool):
        other, lab = stratified_split(pool.y, len(pool), n_labels / len(pool), seed + 3)
    else:
        other, lab = np.empty(0, np.int64), np.arange(len(pool))
    return TextPair(name or task.name, task.source, task.source_val, pool.subset(lab, name=f"{t.name} (labelled)"),
                    t.subset(val, name=f"{t.name} (val)"), pool.subset(other, name=f"{t.name} (rest)"),
                    task.target_test, task.preprocessing)


def load_pair(spec: str, n_labels: int = 200, n_val: int = 200, split_seed: int = 0,
              data_dir: str | None = None, max_samples: int | None = None) -> TextPair:
    """``'amazon/books->amazon/kitchen'``: ``load_task``'s splits (S 90/10 train/val, T 70/30, one
    vocabulary fitted on S's and T's training texts), then :func:`split_pair`."""
    from ..data.tasks import load_task

    source, sep, target = spec.partition("->")
    if not sep or not source.strip() or not target.strip():
        raise DataError(f"pair {spec!r}: write it as 'SOURCE->TARGET'")
    task = load_task(source.strip(), target.strip(), data_dir=data_dir, split_seed=split_seed,
                     max_samples=max_samples)
    return split_pair(task, n_labels, n_val, split_seed, f"{source.strip()}->{target.strip()}")


@dataclass
class LayerTransferResult:
    """Target-test accuracy of every (pair, row, column, seed); MULT runs for every λ, ``chosen`` marks
    the λ kept for that seed (best target-validation accuracy)."""

    pairs: list[str]
    seeds: list[int]
    lambdas: list[float]
    n_labels: int
    group_names: list[str]
    runs: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def accuracies(self, pair: str, row: str, column: str) -> np.ndarray:
        return np.array([r["test_accuracy"] for r in self.runs if r["pair"] == pair and r["row"] == row
                         and r["column"] == column and r["chosen"]])

    def chosen_lambdas(self, pair: str, row: str, column: str) -> list[float]:
        return [r["lam"] for r in self.runs if r["pair"] == pair and r["row"] == row and r["column"] == column
                and r["chosen"] and r["lam"] is not None]

    def mean(self, pair: str, row: str, column: str = "INIT") -> float:
        a = self.accuracies(pair, row, column)
        return float(a.mean()) if len(a) else float("nan")

    def findings(self) -> dict[str, dict[str, float]]:
        """Per pair (points of target-test accuracy, means over seeds): each INIT row minus fresh; what
        copying O adds (E✓H✓O✓ − E✓H✓O·); MULT − INIT and INIT+MULT − the better of the two, mean over rows."""
        out = {}
        for p in self.pairs:
            fresh = self.mean(p, "fresh")
            f = {"fresh": 100 * fresh}
            for r in ROWS[1:]:
                f[f"INIT {r.key} - fresh"] = 100 * (self.mean(p, r.key) - fresh)
            f["O copied (EHO - EH), INIT"] = 100 * (self.mean(p, "EHO") - self.mean(p, "EH"))
            f["O copied (EHO - EH), MULT"] = 100 * (self.mean(p, "EHO", "MULT") - self.mean(p, "EH", "MULT"))
            shared = [r.key for r in ROWS if r.shared is not None]
            f["MULT - INIT"] = 100 * float(np.mean([self.mean(p, k, "MULT") - self.mean(p, k) for k in shared]))
            f["INIT+MULT - max(INIT, MULT)"] = 100 * float(np.mean(
                [self.mean(p, k, "INIT+MULT") - max(self.mean(p, k), self.mean(p, k, "MULT")) for k in shared]))
            out[p] = f
        return out

    def table(self) -> str:
        def cell(p: str, r: Row, c: str) -> str:
            a = self.accuracies(p, r.key, c)
            if not len(a):
                return "–"
            s = f"{100 * a.mean():.1f} ± {100 * a.std(ddof=1):.1f}" if len(a) > 1 else f"{100 * a.mean():.1f}"
            lams = self.chosen_lambdas(p, r.key, c)
            return s + (f" (λ {', '.join(f'{x:g}' for x in lams)})" if lams else "")
        blocks = []
        for p in self.pairs:
            rows = [[r.label, *(cell(p, r, c) for c in COLUMNS)] for r in ROWS]
            blocks.append(f"{p}\n\n" + markdown_table(["E H O", *COLUMNS], rows))
        f = self.findings()
        keys = ["fresh", "INIT E - fresh", "INIT EH - fresh", "INIT EHO - fresh", "O copied (EHO - EH), INIT",
                "O copied (EHO - EH), MULT", "MULT - INIT", "INIT+MULT - max(INIT, MULT)"]
        summary = markdown_table(["pair", *keys], [[p, *(v[k] for k in keys)] for p, v in f.items()], digits=1)
        note = (f"Target-test accuracy (%), mean ± std over seeds {self.seeds}; T has {self.n_labels} labelled "
                f"training samples. · fresh, ❄ copied from the S network and frozen, ✓ copied and fine-tuned "
                f"(INIT) or shared with S (MULT); groups E, H, O = {', '.join(self.group_names)}. MULT's λ "
                f"(weight of the T loss) from {self.lambdas} by T-validation accuracy, per seed (in brackets). "
                "Summary in points.")
        return "\n\n".join(blocks + [summary, note])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "findings": self.findings()}

    def write(self, out: str | Path) -> dict[str, str]:
        out = Path(out)
        self.files = {"json": str(out / "layers.json"), "md": str(out / "layers.md"), "png": str(out / "layers.png")}
        write_text(self.files["md"], self.table() + "\n")
        self.plot(self.files["png"])
        write_json(self.files["json"], self.to_dict())
        return self.files

    def plot(self, path: str | Path) -> Path:
        """Per pair: accuracy per row, one marker per column, dots per seed; the fresh network as a line."""
        style = {"INIT": ("#1f3fbf", "o"), "MULT": ("#c0122e", "D"), "INIT+MULT": ("#2a9d4b", "^")}
        n = len(self.pairs)
        fig, axes = subplots(1, n, figsize=(6.2 * n, 4.2), squeeze=False)
        x = np.arange(len(ROWS))
        for ax, p in zip(axes[0], self.pairs):
            ax.axhline(100 * self.mean(p, "fresh"), color="black", linewidth=0.8, linestyle=":", label="fresh (T only)")
            for j, c in enumerate(COLUMNS):
                color, marker = style[c]
                xs, ms = [], []
                for i, r in enumerate(ROWS):
                    a = self.accuracies(p, r.key, c)
                    if len(a):
                        ax.scatter(np.full(len(a), i + (j - 1) * 0.18), 100 * a, color=color, marker=marker, s=12,
                                   alpha=0.5)
                        xs.append(i + (j - 1) * 0.18)
                        ms.append(100 * a.mean())
                ax.scatter(xs, ms, color=color, marker=marker, s=60, edgecolors="black", label=c, zorder=3)
            ax.set_xticks(x, [r.label.split("  ")[0] for r in ROWS], fontsize=7, rotation=30)
            ax.set_xlabel("layers from S: E embedding, H hidden, O output; · fresh, ❄ frozen, ✓ copied and tuned",
                          fontsize=7)
            ax.set_title(f"{p} ({self.n_labels} T labels)", fontsize=9)
            ax.set_ylabel("target-test accuracy (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        return save_figure(fig, path)


def layer_transfer(pairs: Sequence[TextPair], seeds: int | Sequence[int] = (0, 1, 2), lambdas: Sequence[float] = LAMBDAS,
                   config: TrainConfig | None = None, out: str | Path | None = None, backbone: str | None = None,
                   log: Callable[[str], None] | None = print) -> LayerTransferResult:
    """Run the E/H/O experiment on ``pairs`` (see the module docstring); write layers.{md,json,png} to ``out``.
    ``seeds``: a count N (seeds 0..N-1) or distinct seeds."""
    seeds = normalise_seeds(seeds, "layer_transfer")
    if not pairs:
        raise DataError("layer_transfer needs at least one pair")
    names = [p.name for p in pairs]
    if len(set(names)) != len(names):
        raise DataError(f"pair names must be unique, got {names}")
    lambdas = sorted({float(x) for x in lambdas})
    if not lambdas or any(not 0 < x < 1 for x in lambdas):
        raise DataError(f"λ values must lie strictly between 0 and 1 (1 is target-only, 0 source-only), got {lambdas}")
    base = replace(config or TrainConfig(), checkpoint_dir=None)
    groups = _group_names(pairs[0], backbone)
    result = LayerTransferResult(names, seeds, lambdas, len(pairs[0].target_train), groups)
    with runs_root(out, "qianyi-layers-") as top:
        for seed in seeds:
            for pair in pairs:
                result.runs.extend(_pair_seed(top / "runs", pair, seed, lambdas, base, backbone, groups, log))
        if out is not None:
            result.write(out)
    return result


def _group_names(pair: TextPair, backbone: str | None) -> list[str]:
    from ..train.run import _factory, _for_task

    task = pair.target_task()
    names = list(_factory(_for_task(backbone, task))(task.sample_shape, task.n_classes).group_names)
    if len(names) != 3:
        raise DataError(f"the E/H/O experiment needs a network of three layer groups (E, H, O), this one has "
                        f"{names}; use a text task (embbag or textcnn)")
    return names


def _pair_seed(root: Path, pair: TextPair, seed: int, lambdas: list[float], base: TrainConfig,
               backbone: str | None, groups: list[str], log: Callable[[str], None] | None) -> list[dict[str, Any]]:
    """Every run of one pair and seed: the S network, INIT rows, MULT and INIT+MULT for each λ."""
    pdir = _named_folder(root, pair.name)
    src, src_model = cached_run(pdir / "S" / f"seed{seed}", "source-only", pair.source_task(),
                                replace(base, seed=seed), backbone, log, f"{pair.name} S network seed {seed}")
    tcfg = replace(base, seed=seed, select="source-val")  # the epoch with the best T-validation accuracy
    rows: list[dict[str, Any]] = []

    def add(row: Row, column: str, lam: float | None, res: RunResult) -> dict[str, Any]:
        r = {"pair": pair.name, "row": row.key, "column": column, "seed": seed, "lam": lam,
             "val_accuracy": res.source_accuracy, "test_accuracy": res.target_accuracy, "chosen": lam is None,
             "train_seconds": res.train_seconds}
        rows.append(r)
        return r

    for row in ROWS:
        if row.key == SOURCE_AS_IS:  # every group copied and frozen: the S network itself, no T training
            add(row, "INIT", None, replace(src, source_accuracy=None))
            continue
        cfg = tcfg if row.k == 0 else replace(tcfg, init_from=str(src_model), init_layers=row.k, freeze=row.frozen)
        res, _ = cached_run(pdir / "INIT" / row.key / f"seed{seed}", "source-only", pair.target_task(), cfg,
                            backbone, log, f"{pair.name} INIT {row.key} seed {seed}")
        add(row, "INIT", None, res)
        if row.shared is None:
            continue
        for column in ("MULT", "INIT+MULT"):
            cfg = tcfg if column == "MULT" else replace(tcfg, init_from=str(src_model), init_layers=row.shared)
            got = []
            for lam in lambdas:
                res, _ = cached_run(pdir / column / row.key / f"lam{lam:g}" / f"seed{seed}", "mult", pair.mult_task(),
                                    cfg, backbone, log, f"{pair.name} {column} {row.key} λ={lam:g} seed {seed}",
                                    lam=lam, shared=groups[row.shared - 1])
                got.append(add(row, column, lam, res))
            best = max(got, key=lambda r: r["val_accuracy"])  # first of the best: the smallest such λ
            best["chosen"] = True
    return rows


def _named_folder(root: Path, name: str) -> Path:
    from ..train.store import named_folder

    return named_folder(root, name)
