"""Label-free hyper-parameter selection: ``qianyi select``.

Each candidate setting of a method (its documented ``grid``, or a user's) is trained on every pair
and seed through the run store (cached: a rerun trains only what is missing) and its final model is
scored by a named validator (:mod:`qianyi.select`), which sees labelled source data and the
unlabelled target train split only.

**The ranking rule** (one, for every method and validator): per pair, average each candidate's
validator score over seeds and rank the candidates (1 = best; ties share the mean rank); the
candidate with the lowest mean rank over the pairs wins; a tie goes to the better mean score.

Target-test accuracy is recorded in every run (``oracle_target_acc``) but chooses nothing; with
``show_oracle`` the report adds it in a column marked ORACLE, with the candidate an oracle would
pick, to show what honesty costs.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._io import write_json, write_text
from .._report import md_cell
from ..data.domain import TransferTask
from ..data.tasks import load_task
from ..errors import ConfigError, DataError, QianyiWarning, TrainingError
from ..methods.registry import available_methods, get_method
from ..select import available_validators, get_validator
from ..select.validators import builtin_validators
from ..train.config import LAST, TrainConfig, normalise_seeds
from ..train.result import RunResult
from ..train.weights import check_starting_model
from ..train.run import (BackboneSpec, _caller_stacklevel, _for_task, _health_warnings, _tokenised_for,
                         check_shallow_settings, model_names, run, run_fingerprint)
from ..train.store import RunStore, shared_run
from .runner import (_network_name, check_backbone_spec, diverged_note, pair_identity, parse_pair, read_again,
                     split_cap)


#: Training settings a candidate may set besides the method's own (``{"lr": 0.03, "optimizer": "sgd"}``).
TRAIN_KEYS = ("optimizer", "lr", "momentum", "weight_decay", "lr_schedule", "epochs", "steps_per_epoch",
              "batch_size")


def split_candidate(cand: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the method's settings, the training settings) of a candidate."""
    train = {k: v for k, v in cand.items() if k in TRAIN_KEYS}
    return {k: v for k, v in cand.items() if k not in TRAIN_KEYS}, train


def method_grid(method: str, grid: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The candidates for ``method``: ``grid`` if given, else the method's documented default grid.

    A candidate may also set training settings (:data:`TRAIN_KEYS`, e.g. ``{"lr": 0.03}``): they
    replace the corresponding :class:`TrainConfig` settings for that candidate's runs."""
    cls = available_methods().get(method)
    if cls is None:
        get_method(method)  # raises with the list of names
    cands = [dict(c) for c in (grid if grid is not None else cls.grid)]  # type: ignore[union-attr]
    if not cands:
        raise DataError(f"the grid given for {method!r} is empty; list one candidate or more, e.g. '[{{}}, "
                        "{\"trade_off\": 3}]' ({} is the defaults)" if grid is not None else
                        f"method {method!r} has no hyper-parameter grid to select from; pass one with --grid")
    if not cls.trains_classifier or cls.uses_target_labels:  # type: ignore[union-attr]
        raise ConfigError(f"select {method}: " + ("it trains no classifier, so a validator has nothing to score "
                          "(every candidate would score alike)" if not cls.trains_classifier else  # type: ignore[union-attr]
                          "it trains on target labels, which a label-free selection is there to avoid; tune an "
                          "oracle (an upper bound) by its own target validation split instead"))
    for c in cands:
        hp, train = split_candidate(c)
        if train and getattr(cls, "shallow", False):  # each would be a new run (fingerprint) fitting the same model
            raise ConfigError(f"select {method}: a shallow method fits no network, so the training settings "
                              f"{sorted(train)} of candidate {json.dumps(c)} play no part; leave them out")
        get_method(method, **hp)  # unknown settings fail before any training
        replace(TrainConfig(), **train)  # so do bad training settings
    return cands


def rank_candidates(scores: np.ndarray, higher_is_better: bool) -> tuple[np.ndarray, int]:
    """Mean rank over pairs of each candidate (``scores``: candidates x pairs, seed means; NaN ranks last) and the
    winner: the lowest mean rank; a tie goes to the better mean score, then to the earlier candidate in the grid."""
    util = scores if higher_is_better else -scores
    util = np.where(np.isfinite(util), util, -np.inf)  # a score that is NaN ranks last
    ranks = np.zeros_like(util, dtype=float)
    for j in range(util.shape[1]):
        col = -util[:, j]
        order = col.argsort(kind="stable")
        r = np.empty(len(col))
        r[order] = np.arange(1, len(col) + 1)
        for v in np.unique(col):  # ties share the mean rank
            r[col == v] = r[col == v].mean()
        ranks[:, j] = r
    mean_rank = ranks.mean(1)
    # to the tolerances tie_break_note tells ties by: a mean score one ulp better does not decide
    tied = np.flatnonzero(np.isclose(mean_rank, mean_rank.min()))
    mean_util = util[tied].mean(1)
    top = mean_util.max()
    best = int(tied[(mean_util == top) | np.isclose(mean_util, top, rtol=1e-9, atol=0)].min())
    return mean_rank, best


def tie_break_note(scores: np.ndarray, mean_rank: np.ndarray, best: int, pairs: Sequence[str]) -> str | None:
    """A sentence when the winner shares its mean rank with another candidate (``scores``: candidates x
    pairs, seed means): the tie went to the mean raw score, in which the pair whose scores spread widest
    among the tied candidates weighs most. ``None`` when the ranks alone decided."""
    tied = np.flatnonzero(np.isclose(mean_rank, mean_rank[best]))
    if len(tied) < 2:
        return None
    spread = np.ptp(scores[tied], axis=0)
    if not np.isfinite(scores[tied]).all():
        return (f"{len(tied)} candidates tie at mean rank {mean_rank[best]:.2f}; the better mean score decided (a NaN "
                "score counting as the worst), then the order of the grid.")
    if np.allclose(scores[tied].mean(1), scores[best].mean(), rtol=1e-9, atol=0):
        return (f"{len(tied)} candidates tie at mean rank {mean_rank[best]:.2f} and in mean score: the earlier "
                "candidate in the grid was taken.")
    j = int(spread.argmax())
    share = float(spread[j] / spread.sum()) if spread.sum() > 0 else 0.0
    return (f"{len(tied)} candidates tie at mean rank {mean_rank[best]:.2f}; the better mean score over pairs decided, "
            f"and {pairs[j]} makes {100 * share:.0f}% of the spread of their scores (validator scores are not on one "
            "scale across pairs: read the per-pair columns).")


def indistinct_note(scores: np.ndarray, best: int, candidates: Sequence[dict[str, Any]]) -> str | None:
    """A sentence when other candidates score the same as the winner on every pair to six significant
    digits (``scores``: candidates x pairs, seed means): the validator cannot tell them apart, and ranks
    that differ by float noise decided. ``None`` otherwise."""
    same = [i for i in range(len(scores)) if i != best
            and np.allclose(scores[i], scores[best], rtol=1e-6, atol=1e-12)]
    if not same:
        return None
    return (f"The validator scores {', '.join(json.dumps(candidates[i]) for i in same)} the same as the chosen "
            "candidate on every pair (to six digits): it cannot tell them apart, so the choice among them is "
            "noise (runs too short to differ, or collapsed ones).")


@dataclass
class SelectionResult:
    method: str
    validator: str
    pairs: list[str]
    candidates: list[dict[str, Any]]
    #: candidates x pairs x seeds
    scores: np.ndarray
    target_accuracy: np.ndarray
    mean_rank: np.ndarray
    chosen: int
    files: dict[str, Path] = field(default_factory=dict)
    #: The training settings the runs shared (one line of the report): what another select in the same --out changed.
    settings: str = ""
    #: The chosen candidate's run folder per pair and seed (its model.pt: ``qianyi predict FOLDER``; a shallow
    #: method's folder holds model.npz, which ``qianyi predict`` does not load).
    chosen_runs: dict[str, str] = field(default_factory=dict)
    #: Per pair, the ``qianyi run`` line that trains the chosen candidate with the runs' settings (another pair:
    #: change --source/--target); empty for a network of your own, which no command line names.
    commands: dict[str, str] = field(default_factory=dict)
    #: Whether the method is shallow (fits no network: no model.pt, no epochs).
    shallow: bool = False
    #: The runs that diverged (one line each): no result, so their scores are NaN and rank last on their pair.
    diverged: list[str] = field(default_factory=list)

    @property
    def choice(self) -> dict[str, Any]:
        return self.candidates[self.chosen]

    @property
    def tie_break(self) -> str | None:
        """:func:`tie_break_note` for this result (``None`` when the ranks alone decided)."""
        return tie_break_note(self.scores.mean(2), self.mean_rank, self.chosen, self.pairs)

    @property
    def indistinct(self) -> str | None:
        """:func:`indistinct_note` for this result (``None`` when the winner's scores stand apart)."""
        return indistinct_note(self.scores.mean(2), self.chosen, self.candidates)

    def oracle_choice(self) -> int | None:
        """The candidate with the best mean target-test accuracy (ORACLE: for reports only); None when no run had a
        labelled target test split."""
        if not np.isfinite(self.target_accuracy).any():
            return None
        means = [np.mean(a[np.isfinite(a)]) if np.isfinite(a).any() else -np.inf for a in self.target_accuracy]
        return int(np.argmax(means))

    def _acc(self, i: int) -> str:
        acc = self.target_accuracy[i][np.isfinite(self.target_accuracy[i])]
        return f"{100 * acc.mean():.1f}%" if len(acc) else "–"

    def table(self, show_oracle: bool = False) -> str:
        v = get_validator(self.validator)
        sense = "higher is better" if v.higher_is_better else "lower is better"
        head = ["candidate", *[f"{md_cell(p)} {self.validator}" for p in self.pairs], "mean rank"]
        if show_oracle:
            head.append("ORACLE: mean target acc. (%), not used")
        lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        o = self.oracle_choice() if show_oracle else None
        for i, c in enumerate(self.candidates):
            label = md_cell(", ".join(f"{k}={v}" for k, v in c.items()) or "defaults") \
                + (" **chosen**" if i == self.chosen else "")
            cells = [f"{x:.4f}" for x in self.scores[i].mean(1)] + [f"{self.mean_rank[i]:.2f}"]
            if show_oracle:
                acc = self.target_accuracy[i][np.isfinite(self.target_accuracy[i])]
                cells.append(f"{100 * acc.mean():.1f}" if len(acc) else "–")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", f"{self.method}: validator {self.validator} ({sense}; {v.paper}); seed means per pair, lowest "
                      f"mean rank over pairs wins. Chosen: {json.dumps(self.choice)}."]
        lines += [note for note in (self.tie_break, self.indistinct) if note]
        if self.scores.shape[2] == 1 and len(self.candidates) > 1:  # small score gaps read as a verdict
            lines.append("One seed per candidate: nothing here tells a difference in score from seed noise; "
                         "--seeds 3 shows the spread.")
        if self.chosen_runs:
            saved = ("each folder holds model.npz, the fitted arrays; `qianyi predict` does not rebuild shallow "
                     "models" if self.shallow else "each folder's model.pt serves `qianyi predict FOLDER`")
            lines.append(f"The chosen candidate's runs ({saved}): "
                         + "; ".join(f"{k}: {v}" for k, v in self.chosen_runs.items()) + ".")
        missing = [f"{(', '.join(f'{k}={v}' for k, v in c.items()) or 'defaults')} on {p} "
                   f"({int(np.isnan(self.scores[i, j]).sum())} of {self.scores.shape[2]} seeds)"
                   for i, c in enumerate(self.candidates) for j, p in enumerate(self.pairs)
                   if np.isnan(self.scores[i, j]).any()]
        if missing:
            gone = (", or they diverged", " (a diverged run has none: below)") if self.diverged else ("", "")
            lines.append(f"nan: {self.validator} did not score some seeds' runs{gone[0]} ({'; '.join(missing)}), so "
                         f"their seed mean is NaN and ranks last on that pair; each run's result.json says why{gone[1]}.")
        lines += [f"Diverged: {d}." for d in self.diverged]
        if self.commands:
            pair, line = next(iter(self.commands.items()))
            lines.append(f"To train the chosen setting on a pair of your own (here {md_cell(pair)}; other pairs: "
                         f"--source/--target, and another --out), e.g. in a shell: `{line}`")
        if self.settings:
            lines.append(f"Runs: {self.settings}.")
        if show_oracle and o is None:
            lines.append("ORACLE: no run had a labelled target test split, so there is no oracle choice to show.")
        elif show_oracle:
            lines.append(f"ORACLE choice (best on target-test labels, not used): {json.dumps(self.candidates[o])}, "
                         f"{self._acc(o)} vs {self._acc(self.chosen)} "
                         "for the label-free choice.")
        return "\n".join(lines)


def run_commands(method: str, candidate: dict[str, Any], config: TrainConfig, pairs: Sequence[str],
                 max_samples: int | None = None, backbone: Any = None, text: dict | None = None,
                 data_dir: str | Path | None = None, shallow: bool = False) -> dict[str, str]:
    """Per pair, the ``qianyi run`` line that trains ``candidate`` with ``config`` (a shell line, quoted); empty
    when the network is one of your own (a module or factory no flag names). ``data_dir`` becomes the global
    ``--data-dir``; a ``shallow`` method's line has no training flags (it trains no network)."""
    import shlex

    from ..train.config import config_flags

    name = backbone if isinstance(backbone, str) else getattr(backbone, "name", None)
    if backbone is not None and name is None:
        return {}
    weights = getattr(backbone, "weights", None)
    hp, train = split_candidate(candidate)

    def value(v: Any) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else \
            ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
    common = [*(["--set", *(f"{k}={value(v)}" for k, v in hp.items())] if hp else []),
              *([] if shallow else config_flags(replace(config, **train))),
              *(["--backbone", str(name)] if name else []), *(["--weights", str(weights)] if weights else []),
              *(["--text", ",".join(f"{k}={value(v)}" for k, v in text.items())] if text else [])]
    out = {}
    for pair in pairs:
        pair_text, cap = split_cap(pair)
        source, target = parse_pair(pair_text)
        cap = cap if cap is not None else max_samples
        argv = ["qianyi", *(["--data-dir", str(data_dir)] if data_dir is not None else []), "run", method, "--source", source, "--target", target, *common,
                *(["--max-samples", str(cap)] if cap is not None else []), "--out", f"runs/{method}-chosen"]
        out[pair] = " ".join(shlex.quote(a) for a in argv)
    return out


def select_hparams(method: str, pairs: Sequence[str], validator: str = "dev", grid: Sequence[dict] | None = None,
                   seeds: int | Sequence[int] = (0,), out: str | Path = "runs/select", config: TrainConfig | None = None,
                   data_dir: str | None = None, max_samples: int | None = None, show_oracle: bool = False,
                   log: Callable[[str], None] | None = print, backbone: BackboneSpec | None = None,
                   text: dict | None = None) -> SelectionResult:
    """Train every candidate of ``method`` on every pair and seed, score it with ``validator``, rank.
    ``seeds``: a count (seeds 0..N-1, as ``bench`` and ``qianyi select --seeds N``) or the seeds themselves (distinct).
    ``backbone`` and ``text``: every run's network and text settings, as in :func:`~qianyi.bench.runner.bench`
    (a named backbone is part of each run's fingerprint, so the cache tells networks apart)."""
    check_backbone_spec(backbone, "select")
    seeds = normalise_seeds(seeds, "select")
    if validator not in available_validators():
        get_validator(validator)  # raises with the list of names
    if getattr(get_method(method), "shallow", False) and validator != "source-val":
        raise ConfigError(f"select {method}: a shallow method has no network outputs to score, so of the validators "
                          f"only source-val applies (asked {validator!r}): use --validator source-val")
    cands = method_grid(method, grid)
    parsed = [parse_pair(split_cap(p)[0]) for p in pairs]
    twice = [f"{s}->{t}" for i, (s, t) in enumerate(parsed) if (s, t) in parsed[:i]]
    if twice:  # it would count twice in the mean rank
        raise ConfigError(f"select: the pair {twice[0]} is given twice; give each pair once")
    # every validator of qianyi's is recorded, so one cached run serves any later choice among them (a plugin's
    # validator is recorded when asked: installing one changes no cached run's key)
    base = replace(config or TrainConfig(), validators=tuple(sorted({*builtin_validators(), validator})))
    # the ranking reads the kept epoch's scores only: with the last kept, the validators score that epoch alone
    every = base
    base = replace(base, score_every_epoch=base.select != LAST)
    check_shallow_settings(get_method(method), base)  # before any candidate trains
    store = RunStore(Path(out) / "runs")
    n = len(cands) * len(pairs) * len(seeds)
    scores = np.full((len(cands), len(pairs), len(seeds)), np.nan)
    accs = np.full_like(scores, np.nan)
    folders: dict[tuple[int, int, int], str] = {}  # each run's folder: its model.pt (shallow: model.npz)
    diverged: list[str] = []  # the runs that diverged (no result: their scores stay NaN, ranking last)
    last: RunResult | None = None  # the last finished run
    k = 0

    def load(pair: str) -> TransferTask:
        return load_task(*parse_pair(split_cap(pair)[0]), data_dir=data_dir, text=text,
                         max_samples=max_samples if split_cap(pair)[1] is None else split_cap(pair)[1])

    checked = []  # every pair read and checked before any training, none kept: each is read again for its runs
    for pair in pairs:
        task = load(pair)
        # a network that cannot read a pair (--backbone mlp on texts): said before any training
        _for_task(backbone, _tokenised_for(backbone, task))
        check_starting_model(base.init_from, task)  # one --init-from for a pair and its reverse: said now
        checked.append(pair_identity(task, backbone))
        del task
    for j, (pair, identity) in enumerate(zip(pairs, checked)):
        task = read_again(lambda: load(pair), identity, backbone, split_cap(pair)[0], "select")
        for i, cand in enumerate(cands):
            for s, seed in enumerate(seeds):
                k += 1
                hp, train = split_candidate(cand)
                m, cfg = get_method(method, **hp), replace(base, seed=seed, **train)
                fp = run_fingerprint(m, cfg, task, backbone)  # as the run records it
                # (a run that scored every epoch, as select's did before, serves as well)
                names = model_names(task, backbone)
                result: RunResult | None = store.get(fp, names) or store.get(
                    run_fingerprint(m, replace(every, seed=seed, **train), task, backbone), names)
                if result is not None:  # reused: its health flags said again, as `qianyi run` says them
                    _health_warnings(m, task, cfg, store.path(fp), result)
                else:
                    try:
                        with shared_run(store.path(fp)):
                            result, _ = run(m, task, cfg, out=store.path(fp), track_target_test=True,
                                            backbone=backbone)
                    except TrainingError as exc:  # a setting that diverges ranks last; the others still train
                        diverged.append(diverged_note(f"{method} {json.dumps(cand)}", pair, seed, exc,
                                                      store.path(fp), "its seed mean on that pair is NaN, which "
                                                      "ranks last"))
                        warnings.warn(f"select: {diverged[-1]}", QianyiWarning, stacklevel=_caller_stacklevel())
                        if log:
                            log(f"  [{k}/{n}] {pair} {method} {json.dumps(cand)} seed {seed}: DIVERGED, ranks last")
                        continue
                if log:
                    log(f"  [{k}/{n}] {pair} {method} {json.dumps(cand)} seed {seed}: "
                        f"{validator} {result.scores[validator]:.4f}")
                scores[i, j, s] = result.scores[validator]
                accs[i, j, s] = result.target_accuracy
                folders[i, j, s] = str(store.path(fp))
                last = result
        del task  # (before the next pair is read)
    if not folders:
        raise TrainingError(f"select {method}: every run diverged, so nothing can be chosen: " + "; ".join(diverged[:3]))
    mean_rank, best = rank_candidates(scores.mean(2), get_validator(validator).higher_is_better)
    runs_config = base.fingerprint()
    shallow = bool(getattr(get_method(method), "shallow", False))
    # a shallow fit has no epochs, batches or optimiser: the settings line says so instead of listing them
    shared = {} if shallow else {k: runs_config.get(k) for k in ("epochs", "steps_per_epoch", "batch_size", "lr",
                                                                  "optimizer", "select")}
    network = (last.fingerprint or {}).get("backbone") if last is not None else None  # the last run's: every run's
    settings = ", ".join(["shallow fits (no network: no epochs, batch size or optimiser)"] * shallow
                         + [f"{k} {v}" for k, v in shared.items() if v is not None]
                         + [f"max_samples {max_samples}"] * (max_samples is not None)
                         + [f"network {_network_name(network)}"] * (network is not None))
    res = SelectionResult(method, validator, list(pairs), cands, scores, accs, mean_rank, best, settings=settings,
                          shallow=shallow)
    res.chosen_runs = {f"{pair} seed {seed}": folders[best, j, s] for j, pair in enumerate(pairs)
                       for s, seed in enumerate(seeds) if (best, j, s) in folders}
    res.diverged = diverged
    res.commands = run_commands(method, cands[best], base, pairs, max_samples, backbone, text, data_dir, shallow)
    out = Path(out)
    res.files = {"md": write_text(out / f"select-{method}-{validator}.md", res.table(show_oracle) + "\n"),
                 "json": write_json(out / f"select-{method}-{validator}.json",
                                    {"method": method, "validator": validator, "pairs": list(pairs),
                                     "seeds": list(seeds), "candidates": cands, "chosen": res.choice,
                                     "config": runs_config, "max_samples": max_samples, "network": network,
                                     "mean_rank": mean_rank.tolist(),  # (NaN, an unscored run: null, valid JSON)
                                     "scores": np.where(np.isfinite(scores), scores, None).tolist(),
                                     "tie_break": res.tie_break, "indistinct": res.indistinct, "diverged": diverged,
                                     "chosen_runs": res.chosen_runs, "commands": res.commands,
                                     "ORACLE_target_accuracy_not_used": np.where(np.isfinite(accs), accs, None).tolist()})}
    return res
