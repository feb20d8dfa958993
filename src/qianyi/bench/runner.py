"""Benchmarks: tasks x methods x seeds -> results.csv, results.md, results.png.

Every table reports source-only and the target oracle beside each method, and the fraction of that
gap the method closes: (acc - source_only) / (oracle - source_only), computed on the seed means (none where
the oracle is not above source-only beyond seed noise).
Beside the label-free choice of weights (``--select``, default the last epoch) the report shows,
clearly marked, the accuracy an oracle choice of epoch would give (the best epoch on target test
labels): the cost of honesty. Runs are found in one :class:`~qianyi.train.store.RunStore`, so a
killed benchmark resumes and a changed setting or data file starts a fresh run.
"""
from __future__ import annotations

import re

import csv
from collections import Counter
import json
import math
import warnings
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Collection, Sequence

import numpy as np
from torch import nn

from .._io import atomic_write, write_text
from .._report import md_cell, save_figure, subplots
from ..data.domain import TransferTask
from ..data.tasks import load_task
from ..errors import ConfigError, DataError, QianyiError, QianyiWarning, TrainingError, UnknownNameError
from ..methods.registry import get_method
from ..select import get_validator
from ..train.config import LAST, TrainConfig, normalise_seeds
from ..train.engine import DIVERGED_ADVICE, caller_rng_kept
from ..train.result import RunResult, read_failure_record
from ..train.weights import check_starting_model
from ..train.run import (ORACLE_KEY, BackboneSpec, _caller_stacklevel, _for_task, _health_warnings, _tokenised_for,
                         check_shallow_settings, model_names, run, run_fingerprint)
from ..train.store import RunStore, key as store_key, shared_run
from ..train.transitive import is_bare_last_stage

BASELINES = ("source-only", "oracle")
#: The oracle choice of epoch: the one with the best target-test accuracy (reports only).
ORACLE_CHOICE = "oracle-choice"
#: The results.csv column of each row's stored run (its fingerprint's key; the run folder is ``seedN-KEY``).
RUN_COLUMN = "run"


def _folder_key(folder: Path) -> str:
    """The run key of a store's run folder ``seedN-KEY`` (:meth:`~qianyi.train.store.RunStore.path`)."""
    return folder.name.rpartition("-")[2]


def _tabulated_keys(results_csv: Path) -> set[str] | None:
    """The keys of the runs a results.csv lists (:data:`RUN_COLUMN`), or None when it lists none for some row
    (written before they were recorded, or of runs without a fingerprint) or cannot be read. Read as it is written
    (UTF-8, undecodable file-name bytes as surrogates), whatever the locale."""
    try:
        with open(results_csv, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    keys = [(r.get(RUN_COLUMN) or "").strip() for r in rows]
    return set(keys) if keys and all(keys) else None


def _codes(r: RunResult) -> list[str]:
    """The code digests a run's steps were trained under (``versions["codes"]``, written where they are not just
    the code that finished it), distinct and in order; [] where it records none."""
    codes = (r.versions or {}).get("codes")
    return list(dict.fromkeys(c for c in codes if isinstance(c, str))) if isinstance(codes, list) else []


def drawable(text: str) -> str:
    """``text`` as a figure can draw it. matplotlib refuses the surrogates Python reads an undecodable file-name
    byte as (a path under a Latin-1 folder, or any non-ASCII path under an ASCII locale): they are taken back to
    their bytes and read as UTF-8, a byte that is no UTF-8 drawn as U+FFFD (the tables and CSV keep the bytes).
    The bench figures' one helper (bench/runner.py, html.py, run_report.py)."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate of another kind (from JSON, say)
        return text.encode("utf-8", "replace").decode("utf-8")


def parse_pair(text: str) -> tuple[str, str]:
    """``"mnist->digits"`` or ``"mnist,digits"`` -> ("mnist", "digits")."""
    for sep in ("->", ","):
        if sep in text:
            s, t = (x.strip() for x in text.split(sep, 1))
            if s and t:
                return s, t
    raise DataError(f"cannot read the pair {text!r}; write SOURCE->TARGET (quoted in a shell) or SOURCE,TARGET")


def split_cap(text: str) -> tuple[str, int | None]:
    """``"mnist->mnist-m@5000"`` -> ("mnist->mnist-m", 5000): a pair with its own cap on the samples of each
    domain (the bench protocol caps the 28x28 pairs and not the UCI ones); without ``@N``, (text, None).
    A trailing ``@`` and ASCII digits always read as a cap (a target path ending so needs renaming)."""
    pair, sep, cap = text.rpartition("@")
    if sep and "->" in pair and re.fullmatch(r"[-+]?[0-9]*(\.[0-9]*)?([eE][-+]?[0-9]+)?", cap) and not cap.isdigit():
        raise ConfigError(f"{text!r}: the cap after @ is a whole number of samples per domain, at least 2 "
                          f"(e.g. {pair}@5000), got {cap!r}")
    if not sep or not re.fullmatch(r"[0-9]+", cap):
        return text, None
    if int(cap) < 2:
        raise ConfigError(f"{text!r}: the cap after @ must be at least 2 samples per domain")
    return pair, int(cap)


def _asked(r: RunResult) -> dict[str, Any]:
    """A run's training settings as asked (its fingerprint's: a staged run's config names its teacher stage)."""
    return (r.fingerprint or {}).get("config", r.config) or {}


def _check_one_setting(runs: Sequence[RunResult]) -> None:
    """Refuse to tabulate runs of one pair trained with different settings (a folder reused with other
    --epochs, say): their gap closed would compare unlike runs. Seeds differ by design; the rule that chose
    each model is checked apart (the oracle keeps its last epoch whatever the others do), and with it the
    validators recorded; the data were made alike before (:func:`_newest_data_version`)."""
    ignore = {"seed", "select", "validators", "selection_samples"}
    by_pair: dict[tuple[str, str], dict[str, list[str]]] = {}
    for r in runs:  # the settings as asked (the fingerprint's: a staged run's config names its teacher stage)
        asked = _asked(r)
        cfg = json.dumps({k: v for k, v in asked.items() if k not in ignore}, sort_keys=True)
        by_pair.setdefault((r.source, r.target), {}).setdefault(cfg, []).append(r.method)
    for (s, t), cfgs in by_pair.items():
        if len(cfgs) > 1:
            (a, ma), (b, mb) = list(cfgs.items())[:2]
            da, db = json.loads(a), json.loads(b)
            diff = ", ".join(f"{k} {da.get(k)!r} ({ma[0]}) vs {db.get(k)!r} ({mb[0]})"
                             for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k))
            raise DataError(f"{s}->{t}: the runs were trained with different settings ({diff}); a table would compare "
                            "unlike runs. Rerun them alike (`qianyi bench` with one set of options), or give each "
                            "setting its own --out folder")
    # the network asked for (--backbone, --weights, --text vectors=...): a method's own text encoder (AMN's) aside
    networks: dict[tuple[str, str], dict[str, list[str]]] = {}
    for r in runs:
        net = (r.fingerprint or {}).get("backbone")
        if isinstance(net, dict) and net.get("name") is not None and net.get("name") == _own_encoder(r.method):
            continue
        networks.setdefault((r.source, r.target), {}).setdefault(json.dumps(net, sort_keys=True), []).append(r.method)
    for (s, t), nets in networks.items():
        if len(nets) > 1:
            named = " vs ".join(f"{_network_name(json.loads(n))} ({ms[0]})" for n, ms in list(nets.items())[:2])
            raise DataError(f"{s}->{t}: the runs were trained on different networks ({named}); a table would compare "
                            "unlike runs. Give each network its own --out folder (and `qianyi summary` one of them)")
    # a validator that chose each run's epoch scored it on selection_samples rows: other counts, other choices
    chosen_by = {}
    for r in runs:
        if not r.oracle and _selection_name(r) != LAST:
            chosen_by.setdefault((r.source, r.target), {}).setdefault((r.config or {}).get("selection_samples"),
                                                                      []).append(r.method)
    for (s, t), counts in chosen_by.items():
        if len(counts) > 1:
            raise DataError(f"{s}->{t}: the runs' epochs were chosen by a validator scoring different numbers of "
                            f"samples ({', '.join(f'{n} ({ms[0]})' for n, ms in counts.items())}); rerun them alike "
                            "(one --selection-samples), or give each its own --out folder")


def _setting(r: RunResult) -> dict[str, Any]:
    """A run's settings as asked, its seed aside, with its network and method settings."""
    fp = r.fingerprint or {}
    cfg = {k: v for k, v in _asked(r).items()
           if k not in ("seed", "validators", "selection_samples")}  # what is recorded, not how the run trained
    return {**cfg, "network": fp.get("backbone"), "hparams": r.hparams}


def _warn_replaced(kept: list[tuple[float, RunResult]], found: dict[tuple, tuple[float, RunResult]],
                   where: str) -> None:
    """Of two runs of one (method, pair, seed) the newer counts; say so when the older was made otherwise
    (a folder of 2-epoch runs read beside one of 20-epoch runs: the 2-epoch numbers left out silently)."""
    replaced = []
    for mtime, r in kept:
        newer = found[(r.method, r.source, r.target, r.seed)][1]
        if newer is not r and _setting(newer) != _setting(r):
            replaced.append((r, newer))
    if replaced:
        old, new = _setting(replaced[0][0]), _setting(replaced[0][1])
        diff = ", ".join(f"{k} {old.get(k)!r} vs {new.get(k)!r}" for k in sorted(set(old) | set(new))
                         if old.get(k) != new.get(k))
        warnings.warn(f"{where}: left out {len(replaced)} older run{'s' * (len(replaced) != 1)} that newer runs of the "
                      f"same method, pair and seed replace, made with other settings ({diff}); give each setting "
                      "its own --out folder to keep both", QianyiWarning, stacklevel=3)


def _own_encoder(method: str) -> str | None:
    """The text encoder ``method`` brings (AMN: its memory network), if any."""
    try:
        return getattr(get_method(method), "text_encoder", None)
    except (UnknownNameError, ConfigError, TypeError):
        return None


def _network_name(spec: Any) -> str:
    if spec is None or (isinstance(spec, str) and spec.startswith("default")):
        return "the default network"
    if isinstance(spec, dict):
        extra = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name" and not isinstance(v, (dict, list)))
        return f"{spec.get('name')}" + (f" ({extra})" if extra else "")
    return str(spec)


#: What a run's data were, from its fingerprint (runs of one pair are tabulated together only when alike).
_DATA_KEYS = ("data", "sizes", "shape", "classes")


def _data_version(r: RunResult) -> str:
    """What a run's data were (:data:`_DATA_KEYS` of its fingerprint)."""
    fp = r.fingerprint or {}  # not the network: methods may bring their own (AMN's memory network on text)
    return json.dumps({k: fp.get(k) for k in _DATA_KEYS}, sort_keys=True)


def _newest_data_version(kept: list[tuple[float, RunResult]], where: str) -> list[tuple[float, RunResult]]:
    """Of the runs of each pair, those on the data of the pair's newest run (a folder reused with another
    --max-samples holds runs on two test sets: averaged together they would mean nothing); a warning names
    what is left out."""
    newest: dict[tuple[str, str], tuple[float, str]] = {}
    for t, r in kept:
        v = (t, _data_version(r))
        if (r.source, r.target) not in newest or t > newest[(r.source, r.target)][0]:
            newest[(r.source, r.target)] = v
    out, dropped = [], {}
    for t, r in kept:
        if _data_version(r) == newest[(r.source, r.target)][1]:
            out.append((t, r))
        else:
            dropped[(r.source, r.target)] = dropped.get((r.source, r.target), 0) + 1
    for (s, tg), n in dropped.items():
        sizes = json.loads(newest[(s, tg)][1]).get("sizes")
        warnings.warn(f"{where}: {s}->{tg} has runs on other data too (another --max-samples or file); tabulating "
                      f"those on the data of its newest run (split sizes {sizes}), leaving out {n} other run(s). "
                      "Give each data setting its own --out folder", QianyiWarning, stacklevel=3)
    return out


def _warn_same_data(runs: Sequence[RunResult], where: str) -> None:
    """Warn when two pairs' runs are on the same data (one data hash, sizes, shape and classes): the same files
    spelled by other paths (``x.npz`` and ``./x.npz``, a bench run from another folder) are filed as two pairs,
    and then count twice in the means and counts over pairs."""
    pairs: dict[str, list[tuple[str, str]]] = {}
    for r in runs:
        if (r.fingerprint or {}).get("data") is not None:
            seen = pairs.setdefault(_data_version(r), [])
            if (r.source, r.target) not in seen:
                seen.append((r.source, r.target))
    for same in pairs.values():
        if len(same) > 1:
            names = " and ".join(f"{s}->{t}" for s, t in same)
            warnings.warn(f"{where}: the pairs {names} are the same data (the same files named by other paths, "
                          f"e.g. a bench run from another folder?): they are tabulated as {len(same)} pairs and each "
                          "counts in the means and counts over pairs; name the files one way (run bench from one "
                          "folder, or with absolute paths) to train and tabulate them once", QianyiWarning,
                          stacklevel=3)


def _selection_name(r: RunResult) -> str:
    """The ``--select`` rule a run was made with: 'last' or the validator's name (from its config; runs
    that record none, from the ``selection`` text). A validator that scored no epoch kept the last epoch
    (:func:`fell_back`) but the rule stays its own: such a run is not one of another rule."""
    asked = (r.config or {}).get("select")
    if isinstance(asked, str) and asked:
        return asked
    m = re.search(r"validator '([^']+)'", r.selection)
    return m.group(1) if m else LAST


def fell_back(r: RunResult) -> bool:
    """Whether the run's validator scored no epoch, so the run kept its last epoch."""
    return _selection_name(r) != LAST and not re.search(r"best by validator", r.selection)


def _utilities(hist: list[dict[str, float]], validator: str) -> list[float] | None:
    """Per epoch, ``validator``'s utility (higher is better; NaN where it did not score), or None when the
    history does not record it."""
    key = f"score_{validator}"
    if not hist or any(key not in row for row in hist):  # (select's runs score their last epoch alone)
        return None
    v = get_validator(validator)
    return [v.utility(row.get(key, math.nan)) for row in hist]


def _scored_none(r: RunResult, validator: str) -> bool:
    """Whether ``validator`` scored no epoch of the run's history (its choice falls back to the last)."""
    utility = _utilities(r.history, validator)
    return utility is not None and not any(math.isfinite(u) for u in utility)


def choice_accuracy(result: RunResult, choice: str) -> float | None:
    """Target accuracy of the epoch a rule would have chosen in this run.

    ``choice`` is ``"last"``, a validator name recorded in the run's history (its best epoch, ties to
    the earliest), or ``"oracle-choice"`` (the epoch with the best target-test accuracy). Needs the
    per-epoch target accuracy that bench records; None when the run lacks what is asked.
    """
    hist = result.history
    if not hist or ORACLE_KEY not in hist[-1]:
        return None
    accs = [row[ORACLE_KEY] for row in hist]
    if choice == ORACLE_CHOICE:
        return float(max(accs))
    if choice == LAST:
        return float(accs[-1])
    utility = _utilities(hist, choice)
    if utility is None:
        return None
    # as the engine chooses: the best finite score, ties to the earliest; no epoch scored, the last
    scored = [i for i, u in enumerate(utility) if math.isfinite(u)]
    best = max(scored, key=lambda i: (utility[i], -i)) if scored else len(hist) - 1
    return float(accs[best])


@dataclass
class BenchResult:
    runs: list[RunResult]
    pairs: list[tuple[str, str]]
    methods: list[str]
    out: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    select: str = LAST
    #: ``(a, b)`` method pairs whose paired difference :meth:`report` adds (``qianyi summary --compare``).
    comparisons: list[tuple[str, str]] = field(default_factory=list)
    #: The command that made the table (the CLI sets it): the first line of :meth:`report`.
    command: str = ""
    #: What :meth:`from_dirs` left out and why (its warnings): said again under the tables it writes.
    notes: list[str] = field(default_factory=list)
    #: Which runs the tables are of, when read back from a folder (:meth:`from_bench`): said under the command.
    scope: str = ""
    #: The runs of ``bench`` that diverged (method, pair, seed): no result, so not in :attr:`runs`; their cells say so.
    diverged: list[tuple[str, tuple[str, str], int]] = field(default_factory=list)
    #: The run key (folder ``seedN-KEY``) of each diverged run where it is known: results.csv lists it (a row
    #: without accuracies, selection ``diverged``), so ``qianyi report DIR`` tabulates it as the bench did.
    diverged_keys: dict[tuple[str, tuple[str, str], int], str] = field(default_factory=dict)

    def _runs(self, method: str, pair: tuple[str, str]) -> list[RunResult]:
        return [r for r in self.runs if r.method == method and (r.source, r.target) == pair]

    def accuracies(self, method: str, pair: tuple[str, str], choice: str | None = None) -> np.ndarray:
        """Target accuracies over seeds: of the run's own model, or of the epoch ``choice`` would pick."""
        if choice is None:  # a run without a labelled target test split has no accuracy: not a number to average
            return np.array([r.target_accuracy for r in self._runs(method, pair) if r.target_accuracy is not None])
        vals = [choice_accuracy(r, choice) for r in self._runs(method, pair)]
        return np.array([v for v in vals if v is not None])

    def transductive(self) -> dict[tuple[str, str], tuple[int, int]]:
        """The pairs whose target trained on its test samples' inputs (``--target-tests T``): the test samples held
        and the test split's size, from the runs' ``test_in_target``."""
        out: dict[tuple[str, str], tuple[int, int]] = {}
        for r in self.runs:
            if r.test_in_target and (r.source, r.target) in self.pairs:
                out[(r.source, r.target)] = max(out.get((r.source, r.target), (0, 0)),
                                                (r.test_in_target, r.n_target_test))
        return out

    def uses_target_labels(self, method: str) -> bool:
        """The oracle, and any method whose runs trained on target labels (``mult``, a plugin that declares
        ``uses_target_labels``): marked ORACLE in every table and plot, with no gap closed of their own."""
        return method == "oracle" or any(getattr(r, "oracle", False) for r in self.runs if r.method == method)

    def label(self, method: str) -> str:
        """``method`` as rows and plots name it (``(ORACLE: target labels)`` after a method that used them)."""
        return f"{method} (ORACLE: target labels)" if self.uses_target_labels(method) else method

    def gap_closed(self, method: str, pair: tuple[str, str], choice: str | None = None) -> float | None:
        """(acc − source-only) / (oracle − source-only) on the seed means; None where a mean is missing, the
        oracle is not above source-only, or not beyond seed noise (:meth:`oracle_within_noise`: the ratio of
        two noises would be noise of any size and sign)."""
        so, orc = self.accuracies("source-only", pair), self.accuracies("oracle", pair)
        acc = self.accuracies(method, pair, choice)
        if not len(so) or not len(orc) or not len(acc):
            return None
        denom = orc.mean() - so.mean()  # no gap (the oracle no better than source-only): nothing to close
        if denom <= 1e-12 or self.oracle_within_noise(pair) is not None:
            return None
        return float((acc.mean() - so.mean()) / denom)

    def oracle_within_noise(self, pair: tuple[str, str]) -> "PairDifference | None":
        """Oracle − source-only on ``pair``, paired by seed, when its 95% interval reaches 0 (the oracle not
        above source-only beyond seed noise: no gap to measure a fraction of); None when the interval lies above
        0 or there is none (one shared seed, or no seed variation: nothing to tell noise by)."""
        d = self._pair_difference("source-only", "oracle", pair)
        ci = None if d is None else d.interval
        return d if ci is not None and ci[0] <= 0 else None

    def validators(self) -> list[str]:
        """Validators recorded every epoch in all runs (besides the oracle's)."""
        keys = None
        for r in self.runs:
            if r.oracle or not r.history:
                continue
            ks = set.intersection(*({k[len("score_"):] for k in row if k.startswith("score_")} for row in r.history))
            keys = ks if keys is None else keys & ks
        return sorted(keys or [])

    def table(self) -> str:
        """Markdown: one row per method; per pair, target accuracy mean ± std (%) and gap closed."""
        head = "| method | " + " | ".join(f"{md_cell(s)}→{md_cell(t)} acc. (%) | gap closed" for s, t in self.pairs) \
            + " | train s |"
        n_seeds = len({r.seed for r in self.runs})
        lines = [head, "|---|" + "---:|---:|" * len(self.pairs) + "---:|"]
        short_cells = False
        for m in self.methods:
            cells = []
            secs = [r.train_seconds for r in self.runs if r.method == m]
            gone = Counter(p for dm, p, _ in self.diverged if dm == m)
            if not secs and not gone:  # no run of it (an oracle without target labels to train on)
                continue
            for pair in self.pairs:
                a = 100 * self.accuracies(m, pair)
                if not len(a):
                    cells += [f"diverged ({gone[pair]}/{gone[pair]} seeds)" if gone[pair] else "–", "–"]
                    short_cells = short_cells or bool(gone[pair])
                    continue
                std = f" ± {a.std(ddof=1):.1f}" if len(a) > 1 else ""
                short = (f" (n={len(a)}{f'; {gone[pair]} diverged' if gone[pair] else ''})"
                         if len(a) < n_seeds or gone[pair] else "")  # fewer seeds finished than elsewhere
                short_cells = short_cells or bool(short)
                cells.append(f"{a.mean():.1f}{std}{short}")
                g = None if m in BASELINES or self.uses_target_labels(m) else self.gap_closed(m, pair)
                cells.append("–" if g is None else f"{100 * g:.0f}%")
            label = self.label(m)
            t = float(np.mean(secs)) if secs else None
            lines.append(f"| {label} | " + " | ".join(cells)
                         + (" | – |" if t is None else f" | {t:.1f} |" if t < 10 else f" | {t:.0f} |"))
        seeds = sorted({r.seed for r in self.runs})
        rule = "the last epoch's" if self.select == LAST else f"chosen by the label-free validator {self.select!r}"
        spread = "mean ± sample std over seeds" if len(seeds) > 1 else "one seed: no std"
        lines += ["", f"Seeds {seeds}; {spread}. Gap closed = (acc − source-only) / (oracle − "
                      f"source-only) on the means (– where the oracle is not above source-only, or not beyond seed "
                      f"noise). Models are {rule}; no target labels chose anything except in the rows marked ORACLE."]
        noise = self._noise_note()
        if noise:
            lines.append(noise)
        transductive = self.transductive()
        if transductive:
            lines.append("Transductive: on " + ", ".join(
                f"{md_cell(s)}->{md_cell(t)} ({k} of the {n} test samples)" for (s, t), (k, n) in transductive.items())
                + " the target's training inputs held the test samples, so every method trained on them (without "
                "labels) and the oracle was skipped: the target's labels are its test set's (leave out --target-tests "
                "for a held-out test split and an oracle).")
        no_oracle = [f"{s}->{t}" for s, t in self.pairs if not len(self.accuracies("oracle", (s, t)))
                     and any(len(self.accuracies(m, (s, t))) for m in self.methods) and (s, t) not in transductive]
        if no_oracle:  # a reader took the dashes for an oracle no better than source-only
            lines.append(f"No oracle run on {', '.join(no_oracle)} (e.g. a target whose training split has no labels "
                         "to train it on): no gap closed there.")
        if short_cells:
            lines.append("(n=k): only k seeds of that method finished on that pair (diverged: see the runs below "
                         "that diverged, which have no result); its means in every table, and "
                         "on that pair the gap closed of every method when source-only or the oracle is short, are "
                         "over the seeds each method has (`qianyi summary --compare A B` pairs them by seed).")
        back = [r for r in self.runs if not r.oracle and fell_back(r)]
        if back:
            lines.append(f"{len(back)} run{'s' * (len(back) != 1)} kept {'their' if len(back) != 1 else 'its'} last "
                         f"epoch because the validator {_selection_name(back[0])!r} scored no epoch: "
                         + ", ".join(f"{r.method} {r.source}->{r.target} seed {r.seed}" for r in back[:5])
                         + (" …" if len(back) > 5 else "") + ".")
        unscored = sorted({f"{r.source}->{r.target}" for r in self.runs if r.target_accuracy is None})
        if unscored:
            lines.append(f"No target accuracy (–) for {', '.join(unscored)}: those runs had no labelled target test "
                         "split (their label-free scores are in each run's result.json).")
        settings = self.settings_line()
        if settings:
            lines.append(settings)
        made = Counter((r.versions or {}).get("code") or "unrecorded" for r in self.runs)
        if len(made) > 1:  # stored runs are reused whatever the code (store.code_digest): say whose numbers these are
            lines[-1] += (" Runs made by " + str(len(made)) + " versions of qianyi's code: "
                          + ", ".join(f"{c} ({n} run{'s' * (n != 1)})" for c, n in made.most_common()) + ".")
        mixed = [r for r in self.runs if len(_codes(r)) > 1]
        if mixed:  # resumed under other code: counted above under the code that finished them
            lines[-1] += (f" {len(mixed)} run{'s' * (len(mixed) != 1)} partly trained by other code (resumed from a "
                          "checkpoint of other code; versions.codes in its result.json lists each): "
                          + ", ".join(f"{r.method} {r.source}->{r.target} seed {r.seed}" for r in mixed[:5])
                          + (" …" if len(mixed) > 5 else "") + ".")
        threads = Counter(str((r.versions or {}).get("threads")) for r in self.runs if (r.versions or {}).get("threads"))
        if len(threads) > 1:  # reductions split over threads round differently: not bit-comparable runs
            lines[-1] += (" Runs made with " + str(len(threads)) + " CPU thread counts: "
                          + ", ".join(f"{t} ({n} run{'s' * (n != 1)})" for t, n in threads.most_common()) + ".")
        honesty = self.honesty_table()
        if honesty:
            lines += ["", honesty]
        return "\n".join(lines)

    def honesty_table(self) -> str:
        """Markdown: per method and pair, the label-free choice next to the ORACLE choice of epoch."""
        methods = [m for m in self.methods if not self.uses_target_labels(m)]
        if not any(len(self.accuracies(m, p, ORACLE_CHOICE)) for m in methods for p in self.pairs):
            return ""
        own = "last epoch" if self.select == LAST else self.select
        head = "| method | " + " | ".join(f"{md_cell(s)}→{md_cell(t)}: {own} | ORACLE choice | cost"
                                          for s, t in self.pairs) + " |"
        lines = ["The cost of honesty: accuracy (%) of the label-free choice of epoch next to the best epoch on "
                 "target-test labels (ORACLE choice, a bound no honest run can use).", "",
                 head, "|---|" + "---:|---:|---:|" * len(self.pairs)]
        for m in methods:
            cells = []
            for pair in self.pairs:
                a, o = 100 * self.accuracies(m, pair), 100 * self.accuracies(m, pair, ORACLE_CHOICE)
                if not len(a) or not len(o):
                    cells += ["–"] * 3
                    continue
                a_, o_ = round(float(a.mean()), 1), round(float(o.mean()), 1)  # the cost of the cells as shown
                cells += [f"{a_:.1f}", f"{o_:.1f}", f"{o_ - a_:.1f}"]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def validator_table(self, pairs: Sequence[tuple[str, str]] | None = None) -> str:
        """Markdown: per method, the accuracy each validator's choice of epoch gives (mean over ``pairs``,
        default all), beside the ORACLE choice; the last rows say which validator comes closest."""
        vals = self.validators()
        if not vals:
            return ""
        pairs = list(pairs or self.pairs)
        choices = [LAST, *vals, ORACLE_CHOICE]
        methods = [m for m in self.methods if not self.uses_target_labels(m)]
        unscored = [p for p in pairs if not any(len(self.accuracies(m, p)) for m in methods)]
        pairs = [p for p in pairs if p not in unscored]  # (no labelled target test: nothing to compare the choices on)
        said = (f"Left out {', '.join(f'{s}->{t}' for s, t in unscored)}: no labelled target test split to score "
                "the choices on." if unscored else "")
        if not pairs:
            return "No validator table: " + said[0].lower() + said[1:]
        lines = ["| method | " + " | ".join(c if c != ORACLE_CHOICE else "ORACLE choice" for c in choices) + " |",
                 "|---|" + "---:|" * len(choices)]
        gaps: dict[str, list[float]] = {c: [] for c in choices}
        dropped, unscored_by = [], False
        for m in methods:
            per_choice = {c: [self.accuracies(m, p, c) for p in pairs] for c in choices}
            if not all(len(a) for accs in per_choice.values() for a in accs):
                dropped.append(m)
                continue
            means = {c: float(np.mean([a.mean() for a in accs])) for c, accs in per_choice.items()}
            for c in choices:
                gaps[c].append(means[ORACLE_CHOICE] - means[c])
            star = {c: any(_scored_none(r, c) for p in pairs for r in self._runs(m, p)) for c in vals}
            unscored_by = unscored_by or any(star.values())
            lines.append(f"| {m} | " + " | ".join(f"{100 * means[c]:.1f}" + ("*" if star.get(c) else "")
                                                  for c in choices) + " |")
        avg = {c: float(np.mean(g)) for c, g in gaps.items() if g and c != ORACLE_CHOICE}
        lines.append("| mean shortfall vs ORACLE choice (points) | " + " | ".join(
            f"{100 * avg[c]:.1f}" if c in avg else "–" for c in choices) + " |")
        where = ", ".join(f"{s}->{t}" for s, t in pairs)
        if unscored_by:
            lines += ["", "A figure marked * is not that validator's choice: it scored no epoch of at least one of the "
                          "method's runs, whose choice is then the last epoch (as the engine keeps it)."]
        if dropped:
            lines += ["", f"Not in this table: {', '.join(dropped)} (runs missing on "
                          f"{'a pair' if len(pairs) > 1 else 'this pair'}, or no per-epoch record)."]
        if avg:
            shown = {c: f"{100 * g:.1f}" for c, g in avg.items()}
            low = shown[min(avg, key=avg.get)]
            best = ", ".join(c for c in avg if shown[c] == low)  # every rule tied with it as shown
            lines += ["", f"Closest to the oracle choice on average: {best} ({low} points short). "
                          f"Target accuracy (%) at the epoch each rule picks, seed means, averaged over {where}; the "
                          "ORACLE column picks on target-test labels."]
        if said:
            lines.append(said)
        return "\n".join(lines)

    def _noise_note(self) -> str:
        """The pairs whose gap closed is – because the oracle is not above source-only beyond seed noise."""
        near = [(p, d) for p in self.pairs if (d := self.oracle_within_noise(p)) is not None and d.diff > 0]
        if not near:
            return ""
        return ("Gap closed – on " + ", ".join(
            f"{md_cell(p[0])}->{md_cell(p[1])} (oracle − source-only {d.diff:+.1f} points, 95% interval "
            f"[{d.interval[0]:+.1f}, {d.interval[1]:+.1f}] over {len(d.seeds)} seeds)" for p, d in near)
            + ": the oracle is not above source-only beyond seed noise there, so a fraction of that gap would be "
            "noise of any size and sign.")

    def summary_table(self) -> str:
        """Markdown over all pairs: per method, mean accuracy, mean gap closed (over the pairs where it is
        defined), the pairs where its mean is above source-only's as shown, and of those the pairs where it is
        ahead beyond seed noise (the paired 95% interval of its difference from source-only above 0)."""
        lines = ["| method | mean acc. over pairs (%) | mean gap closed | above source-only on | beyond seed noise on |",
                 "|---|---:|---:|---:|---:|"]
        dropped, partial_gap, untested = [], False, False
        n = len(self.pairs)
        for m in self.methods:
            accs = [self.accuracies(m, p) for p in self.pairs]
            if not all(len(a) for a in accs):
                dropped.append(m)
                continue
            so = [self.accuracies("source-only", p) for p in self.pairs]
            base = m in BASELINES or self.uses_target_labels(m)
            gaps = [g for p in self.pairs if (g := self.gap_closed(m, p)) is not None]
            gap = "–" if base or not gaps else f"{100 * float(np.mean(gaps)):.0f}%"
            if not base and gaps and len(gaps) < n:
                gap += f" ({len(gaps)}/{n} pairs)"
                partial_gap = True
            if base or not all(len(s) for s in so):  # no source-only runs: nothing to beat
                above = beyond = "–"
            else:  # as shown: a tie in the cells (58.0 vs 58.0) is no win
                won = [p for p, a, s in zip(self.pairs, accs, so) if float(f"{100 * a.mean():.1f}") >
                       float(f"{100 * s.mean():.1f}")]
                diffs = [self._pair_difference("source-only", m, p) for p in self.pairs]
                tested = [d for d in diffs if d is not None and d.interval is not None]
                above = f"{len(won)}/{n}"
                beyond = "–" if not tested else f"{sum(d.pair in won and d.interval[0] > 0 for d in tested)}/{n}"
                if tested and len(tested) < n:
                    beyond += f" ({n - len(tested)} untested)"
                untested = untested or len(tested) < n
            label = self.label(m)
            lines.append(f"| {label} | {100 * float(np.mean([a.mean() for a in accs])):.1f} | {gap} | {above} | "
                         f"{beyond} |")
        if len(lines) == 2:  # no method has an accuracy on every pair: a header alone said nothing
            unscored = [f"{s}->{t}" for s, t in self.pairs if not any(len(self.accuracies(m, (s, t))) for m in self.methods)]
            return ("No mean over pairs: " + (f"{', '.join(unscored)} had no labelled target test split, so no "
                                               "accuracy" if unscored else "no method has runs on every pair") + ".")
        lines += ["", f"Pairs: {', '.join(f'{md_cell(s)}->{md_cell(t)}' for s, t in self.pairs)}; seed means per pair, then the plain "
                      "mean over pairs. Above source-only: the pairs where the method's mean is above source-only's "
                      "as the table shows them (one decimal; a tie is no win). Beyond seed noise: of those, the pairs "
                      "where the 95% interval of its difference from source-only, paired by seed (`qianyi summary "
                      "--compare source-only METHOD`), lies above 0."]
        if untested:
            lines[-1] += (" Untested: pairs with no such interval (one shared seed, or the same difference on every "
                          "seed: no seed variation to measure); – where no pair has one.")
        if partial_gap:
            lines[-1] += (" (k/N pairs): the mean gap closed of the k pairs where gap closed is defined (– on a pair "
                          "where the oracle is not above source-only, or not beyond seed noise).")
        if dropped:
            lines[-1] += f" Not in this table (no target accuracy on every pair): {', '.join(dropped)}."
        return "\n".join(lines)

    def paired_difference(self, a: str, b: str) -> "PairedDifference":
        r"""``b`` minus ``a`` in target accuracy, paired by seed: per pair and for the mean over pairs.

        Only seeds both methods finished count. Per pair the difference of the seed means, with a 95%
        Student-t interval over the seeds' differences; over pairs the plain mean of those, its standard
        error :math:`\sqrt{\sum_p s_p^2}/P` and Welch-Satterthwaite's degrees of freedom. The intervals
        measure seed noise on these pairs (the pairs themselves are fixed, not sampled).
        """
        for m in (a, b):
            if m not in self.methods:
                raise DataError(f"compare: no finished runs of {m!r} here; methods found: {', '.join(self.methods)}")
        if a == b:
            raise ConfigError(f"compare: give two different methods, not {a!r} twice")
        rows: list[PairDifference] = []
        for pair in self.pairs:
            row = self._pair_difference(a, b, pair)
            if row is None:
                raise DataError(f"compare: {a!r} and {b!r} share no finished seed on {pair[0]}->{pair[1]}; "
                                "finish both (rerun the bench) or leave the pair out (--pairs)")
            rows.append(row)
        return PairedDifference(a, b, rows)

    def _pair_difference(self, a: str, b: str, pair: tuple[str, str]) -> "PairDifference | None":
        """``b`` minus ``a`` on one pair, over the seeds both finished with a target accuracy (None: no such seed)."""
        acc_a = {r.seed: r.target_accuracy for r in self._runs(a, pair) if r.target_accuracy is not None}
        acc_b = {r.seed: r.target_accuracy for r in self._runs(b, pair) if r.target_accuracy is not None}
        seeds = sorted(acc_a.keys() & acc_b.keys())
        if not seeds:
            return None
        d = 100 * np.array([acc_b[s] - acc_a[s] for s in seeds])
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None
        return PairDifference(pair, seeds, 100 * float(np.mean([acc_a[s] for s in seeds])),
                              100 * float(np.mean([acc_b[s] for s in seeds])), float(d.mean()), se)

    @classmethod
    def from_dirs(cls, dirs: Sequence[str | Path], select: str | None = None,
                  pairs: Sequence[str] | None = None, variants: bool = False,
                  keys: Collection[str] | None = None) -> "BenchResult":
        """Collect the finished runs of one or more bench folders (see :meth:`_from_dirs`); what it leaves
        out, it warns about and keeps in :attr:`notes`, so the tables written from it say so too."""
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = cls._from_dirs(dirs, select, pairs, variants, keys)
        finally:  # (also before an error: what was left out may be why)
            for w in caught:  # said again, from where they were said, to the caller's filters
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        result.notes = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, QianyiWarning)))
        return result

    @classmethod
    def _from_dirs(cls, dirs: Sequence[str | Path], select: str | None = None,
                   pairs: Sequence[str] | None = None, variants: bool = False,
                   keys: Collection[str] | None = None) -> "BenchResult":
        """Collect the finished runs of one or more bench folders (their run stores) into one result.
        ``keys``: only the runs of these fingerprint keys (:func:`~qianyi.train.store.key`; a run folder is
        ``seedN-KEY``), e.g. those a results.csv lists (:meth:`from_bench`); None: every finished run.

        Only runs with each method's current default settings are kept (a store may also hold runs of
        earlier defaults), unless ``variants``: then a run with other settings (``bench --set``) is a row
        of its own, named by them (:func:`variant_label`, e.g. ``self-train (pretrain=dann)``). Of repeated
        (method, pair, seed) runs the newest counts; a folder reused on other data for a pair (another
        ``--max-samples`` cap, another file) keeps the runs on the data of the pair's newest run, with a
        warning. ``select``: the rule the runs chose their models by
        (``last`` or a validator); None reads it from the runs (an error when they used several). Runs of one
        pair trained with different settings (other epochs, say) are refused: their table would compare
        unlike runs.
        """
        from ..select.validators import available_validators

        if select is not None and select != LAST and select not in available_validators():
            raise UnknownNameError(f"select must be 'last' or a validator ({', '.join(available_validators())}), "
                                   f"got {select!r}")
        kept: list[tuple[float, RunResult]] = []
        variant_runs: list[str] = []
        unfinished: list[str] = []  # staged runs killed between their last stage's record and their own
        no_result: list[str] = []  # run folders without a result: training now, or killed
        failed: list[str] = []  # run folders whose run stopped with an error (diverged): its failed.json says why
        failed_runs: list[tuple[tuple[str, tuple[str, str], int], str]] = []  # theirs: ((label, pair, seed), key)
        found_keys: set[str] = set()

        def listed(folder: Path) -> bool:  # a run folder is seedN-KEY
            return keys is None or _folder_key(folder) in keys

        for d in dirs:
            files = [f for f in sorted(Path(d).glob("runs/*/*/*/result.json")) if listed(f.parent)]
            if not files and not (Path(d) / "runs").is_dir() and (Path(d) / "results.csv").is_file():
                raise DataError(f"{str(d)!r} holds a results.csv but no runs/ (a `qianyi summary --out` folder?): its "
                                "table is of runs stored in other folders (the command atop its results.md, if any, "
                                "names them); report those bench folders, or pass them to `qianyi summary DIR... --out "
                                "OUT`")
            if not files:
                raise DataError(f"no finished runs under {str(d)!r}/runs; give the --out folder of `qianyi bench`"
                                if keys is None else f"none of the runs {str(d)!r}/results.csv lists is finished "
                                f"under {str(d)!r}/runs (deleted?); rerun the bench command that wrote it")
            found_keys |= {_folder_key(f.parent) for f in files}
            for p in sorted(Path(d).glob("runs/*/*/*")):
                if p.is_dir() and listed(p) and not (p / "result.json").exists():
                    name, record = str(p.relative_to(Path(d) / "runs")), read_failure_record(p)
                    why = record.get("message")
                    if not isinstance(why, str) or not why:
                        no_result.append(name)
                        continue
                    try:
                        label = variant_label(record["method"], record["hparams"], int(record.get("revision", 1)))
                        entry = (label, (str(record["source"]), str(record["target"])), int(record["seed"]))
                    except Exception:  # noqa: BLE001 (a record of an older qianyi may lack these: said, not tabulated)
                        label, entry = None, None
                    if label is not None and not variants and label != record["method"]:
                        variant_runs.append(f"{label} (diverged)")  # left out as its finished siblings are
                        continue
                    failed.append(f"{name} ({why.replace(DIVERGED_ADVICE, '').strip().rstrip('.')})")
                    if entry is not None:
                        failed_runs.append((entry, _folder_key(p)))
                        found_keys.add(_folder_key(p))
            for f in files:
                r = RunResult.read(f)
                if is_bare_last_stage(f.parent, {"staged": r.staged, "config": r.config}):
                    unfinished.append(str(f.parent))
                    continue
                label = variant_label(r.method, r.hparams, (r.fingerprint or {}).get("revision", 1))
                if label != r.method:
                    if not variants:
                        variant_runs.append(label)
                        continue
                    r = replace(r, method=label)
                kept.append((f.stat().st_mtime, r))
        where = ", ".join(repr(str(d)) for d in dirs)
        gone = len(set(keys) - found_keys) if keys is not None else 0
        if gone:
            warnings.warn(f"{where}: {gone} run{'s' * (gone != 1)} that results.csv lists {'are' if gone != 1 else 'is'} "
                          "not in runs/ (deleted, or tabulated from another folder by `qianyi summary --out`), not in "
                          "these tables; rerun the bench command to make them again", QianyiWarning, stacklevel=3)
        if no_result:
            warnings.warn(f"{where}: {len(no_result)} run folder{'s' * (len(no_result) != 1)} without a result "
                          f"(still training, or killed), not in these tables: "
                          f"{', '.join(no_result[:5])}{' …' * (len(no_result) > 5)}; rerun the bench command to "
                          "finish them (a run that failed says why again)", QianyiWarning, stacklevel=3)
        if failed:
            warnings.warn(f"{where}: {len(failed)} run{'s' * (len(failed) != 1)} stopped with an error (diverged), so "
                          f"{'they have' if len(failed) != 1 else 'it has'} no result: "
                          f"{'; '.join(failed[:3])}{' …' * (len(failed) > 3)}. {DIVERGED_ADVICE}",
                          QianyiWarning, stacklevel=3)
        if unfinished:
            warnings.warn(f"{where}: left out {len(unfinished)} staged run(s) killed before they finished "
                          f"({', '.join(unfinished[:3])}); rerun the bench command to finish them", QianyiWarning,
                          stacklevel=3)
        if variant_runs:  # said, not silent: a `bench --set` folder otherwise showed source-only and the oracle only
            warnings.warn(f"{where}: left out {len(variant_runs)} run{'s' * (len(variant_runs) != 1)} of other "
                          "settings or loss revisions "
                          f"({', '.join(dict.fromkeys(variant_runs))}); --variants tabulates each as a row of its own",
                          QianyiWarning, stacklevel=3)
        selections = sorted({_selection_name(r) for _, r in kept if not r.oracle})
        if select is None:  # the rule the runs were made with
            if len(selections) > 1:
                raise DataError(f"the runs in {where} chose their models by different rules ({', '.join(selections)}); "
                                "pass one as --select")
            select = selections[0] if selections else LAST
        other_rule = [r for _, r in kept if not r.oracle and _selection_name(r) != select]
        if other_rule:
            rules = ", ".join(dict.fromkeys(_selection_name(r) for r in other_rule))
            warnings.warn(f"{where}: left out {len(other_rule)} run{'s' * (len(other_rule) != 1)} whose models were "
                          f"chosen by {rules}, not "
                          f"{select!r} ({', '.join(dict.fromkeys(r.method for r in other_rule))}); --select {rules.split(',')[0]} "
                          "tabulates them", QianyiWarning, stacklevel=3)
        kept = [(t, r) for t, r in kept if r.oracle or _selection_name(r) == select]
        kept = _newest_data_version(kept, where)
        found: dict[tuple[str, str, str, int], tuple[float, RunResult]] = {}
        for mtime, r in kept:
            key = (r.method, r.source, r.target, r.seed)
            if key not in found or mtime > found[key][0]:
                found[key] = (mtime, r)
        runs = [r for _, r in found.values()]
        _warn_replaced(kept, found, where)
        _warn_same_data(runs, where)
        if not any(not r.oracle for r in runs):
            if variant_runs and not selections:  # every run was one of other settings: they were left out above
                raise DataError(f"every run in {where} besides the oracle is of other settings than the defaults "
                                f"({', '.join(dict.fromkeys(variant_runs))}); pass --variants to tabulate them")
            raise DataError(f"no runs in {where} chose their model by {select!r}; these runs chose by "
                            f"{', '.join(selections) or 'nothing (oracle runs only)'}: pass that as --select")
        _check_one_setting(runs)
        have = list(dict.fromkeys((r.source, r.target) for r in runs))
        if pairs:
            absent = [p for p in pairs if parse_pair(split_cap(p)[0]) not in have]
            if absent:
                raise DataError(f"no runs of {', '.join(absent)} in {where}; it holds "
                                f"{', '.join(f'{s}->{t}' for s, t in have)}")
        # ``pairs`` also selects and orders them (a bench command's S->T@N names the pair S->T)
        order = [parse_pair(split_cap(p)[0]) for p in pairs] if pairs else have
        twice = [f"{s}->{t}" for i, (s, t) in enumerate(order) if (s, t) in order[:i]]
        if twice:  # it would count twice in the mean over pairs
            raise ConfigError(f"the pair {twice[0]} is given twice; give each pair once")
        runs = [r for r in runs if (r.source, r.target) in order]
        pairs = [p for p in order if p in have]
        names = list(dict.fromkeys(r.method for r in runs))
        methods = ["source-only"] + sorted(m for m in names if m not in BASELINES) + ["oracle"]
        done = {(r.method, (r.source, r.target), r.seed) for r in runs}
        gone_keys = {f: k for f, k in failed_runs if f not in done and f[1] in pairs}  # (a later run of it finished)
        names += [m for m, _, _ in gone_keys if m not in names]
        methods = ["source-only"] + sorted(m for m in names if m not in BASELINES) + ["oracle"]
        return cls(runs, list(pairs), [m for m in methods if m in names], select=select, diverged=list(gone_keys),
                   diverged_keys=gone_keys)

    @classmethod
    def from_bench(cls, folder: str | Path, select: str | None = None) -> "BenchResult":
        """The tables of the bench folder ``folder`` again (``qianyi report DIR``): of the runs the last command
        that wrote its results.csv (a bench, or ``summary --out``) tabulated, by their keys (its ``run``
        column), every setting a row of its own and in its order, so they are the tables of its results.md. A
        results.csv without keys (written before they were recorded) or none (a select folder, a bench that has not
        finished): every finished run in ``folder/runs``, which may be more runs; :attr:`scope` says which it was."""
        folder = Path(folder)
        keys = _tabulated_keys(folder / "results.csv")
        res = cls.from_dirs([folder], select=select, variants=True, keys=keys)
        res.order_like(folder / "results.csv")  # the bench command's order, as its own tables
        res.out = folder
        csv_ = str(folder / "results.csv")
        every = f"Tabulated: every finished run in {str(folder / 'runs')!r} ({len(res.runs)})"
        if keys is not None:
            res.scope = (f"Tabulated: the {len(res.runs)} runs {csv_!r} lists, those the last `qianyi bench` (or "
                         "`summary --out`) into this folder tabulated, as its results.md does.")
        elif not (folder / "results.csv").exists():  # a select folder, or a bench killed before its tables
            res.scope = (f"{every}, as there is no {csv_!r} (a select folder, or a bench that has not finished).")
        else:
            res.scope = (f"{every}, as {csv_!r} does not list the runs its bench tabulated (a folder of a qianyi "
                         "before they were recorded): this table may hold more runs than its results.md; rerun that "
                         "bench command (its finished runs are reused) to tabulate its own.")
        if keys is None:
            warnings.warn(res.scope.removeprefix("Tabulated: ").replace("this table", "the report", 1), QianyiWarning,
                          stacklevel=2)
        return res

    def order_like(self, results_csv: str | Path) -> None:
        """Pairs and methods in the order of a bench's ``results.csv`` (the command's order), where it names them;
        the rest after them as they are. An absent or unreadable file leaves the order alone."""
        try:
            with open(results_csv, newline="", encoding="utf-8", errors="surrogateescape") as fh:
                rows = list(csv.DictReader(fh))
            pairs = list(dict.fromkeys((r["source"], r["target"]) for r in rows))
            names = list(dict.fromkeys(r["method"] for r in rows))
        except (OSError, KeyError, UnicodeDecodeError, csv.Error):
            return
        rank = {p: i for i, p in enumerate(pairs)}
        self.pairs = sorted(self.pairs, key=lambda p: rank.get(p, len(rank)))  # (stable: the rest keep theirs)
        inner = [m for m in self.methods if m not in BASELINES]
        at = {m: i for i, m in enumerate(names)}
        inner = sorted(inner, key=lambda m: at.get(m, len(at)))
        self.methods = [m for m in ["source-only", *inner, "oracle"] if m in self.methods]

    def keep_methods(self, names: Sequence[str]) -> None:
        """Keep only these methods' runs (and their settings' variants, e.g. ``'drcn'`` keeps
        ``'drcn (scheme=joint)'``); source-only and the oracle stay, for gap closed."""
        base = {m: m.split(" (", 1)[0] for m in self.methods}
        unknown = [n for n in names if n not in self.methods and n not in base.values()]
        if unknown:
            raise UnknownNameError(f"--methods: no runs of {', '.join(unknown)} here; these folders hold "
                                   f"{', '.join(self.methods)}")
        keep = set(BASELINES) | {m for m in self.methods if m in names or base[m] in names}
        self.methods = [m for m in self.methods if m in keep]
        self.runs = [r for r in self.runs if r.method in keep]

    def flags_table(self) -> str:
        """The runs the label-free health checks flagged (a discriminator that wins, a collapsed network)."""
        rows = [f"| {r.method} | {md_cell(r.source)}->{md_cell(r.target)} | {r.seed} | {md_cell(flag)} |"
                for r in self.runs for flag in r.flags]
        if not rows:
            return ""
        return ("Runs flagged by the label-free health checks (qianyi.train.health; no target labels):\n\n"
                "| method | pair | seed | flag |\n|---|---|---:|---|\n" + "\n".join(rows))

    def per_seed_table(self) -> str:
        """Markdown: target accuracy (%) of every run, one row per pair and method, one column per seed."""
        seeds = sorted({r.seed for r in self.runs})
        lines = ["| pair | method | " + " | ".join(str(s) for s in seeds) + " |",
                 "|---|---|" + "---:|" * len(seeds)]
        for pair in self.pairs:
            for m in self.methods:
                by_seed = {r.seed: r.target_accuracy for r in self._runs(m, pair) if r.target_accuracy is not None}
                if not by_seed:
                    continue
                cells = [f"{100 * by_seed[s]:.1f}" if s in by_seed else "–" for s in seeds]
                label = self.label(m)
                lines.append(f"| {md_cell(pair[0])}->{md_cell(pair[1])} | {label} | " + " | ".join(cells) + " |")
        return "Per seed, target accuracy (%):\n\n" + "\n".join(lines)

    def settings_line(self) -> str:
        """How the runs were made, from their fingerprints: the training settings they share, the samples of
        each pair (source train + validation, target train, target test), the network when not the default."""
        def shared(key: str) -> Any:
            values = {json.dumps(_asked(r).get(key)) for r in self.runs}
            if len(values) == 1:
                return json.loads(values.pop())
            by_value: dict[str, list[str]] = {}  # one value per pair (a pair's runs are alike: _check_one_setting)
            for r in self.runs:
                pairs = by_value.setdefault(json.dumps(_asked(r).get(key)), [])
                if f"{r.source}->{r.target}" not in pairs:
                    pairs.append(f"{r.source}->{r.target}")
            return ("differs between pairs: " + ", ".join(f"{json.loads(v)} ({', '.join(ps)})"
                                                          for v, ps in by_value.items()))
        said = {"epochs": "epochs {}", "batch_size": "batch size {}", "optimizer": "optimizer {}", "lr": "lr {}",
                "steps_per_epoch": "steps per epoch {}"}
        parts = [text.format(v) for key, text in said.items() if (v := shared(key)) is not None]
        sizes = []
        for pair in self.pairs:
            seen = {tuple((r.fingerprint or {}).get("sizes") or ()) for r in self.runs if (r.source, r.target) == pair}
            seen.discard(())
            if len(seen) == 1:
                n = seen.pop()
                sizes.append(f"{md_cell(pair[0])}->{md_cell(pair[1])} {n[0]}+{n[1]}, {n[2]}"
                             + (f", {n[3]}" if len(n) > 3 else ""))
        if sizes:
            parts.append("samples (source train+val, target train, target test): " + "; ".join(sizes))
        networks = {json.dumps((r.fingerprint or {}).get("backbone"), sort_keys=True) for r in self.runs}
        networks = {n for n in networks if n != "null" and not n.startswith('"default')}  # the default (any generation)
        if networks:
            parts.append("network " + ", ".join(_network_name(json.loads(n)) for n in sorted(networks)))
        return "Runs: " + "; ".join(parts) + "." if parts else ""

    def report(self, per_seed: bool = False) -> str:
        """Every table: per pair, the cost of honesty, validators vs the oracle choice, the mean over pairs,
        the paired comparisons, every seed's accuracy (``per_seed``), the runs flagged by the health checks."""
        parts = ([f"Command: `{self.command}`"] if self.command else []) + ([self.scope] if self.scope else []) \
            + [self.table()]
        if self.notes:  # what the folders held and these tables leave out (summary warned about it too)
            parts.append("Left out of these tables:\n\n" + "\n".join(f"* {n}" for n in self.notes))
        vt = self.validator_table()
        if vt:
            parts.append(vt)
            if len(self.pairs) > 1:
                parts += [f"Per pair, {md_cell(s)}->{md_cell(t)}:\n\n" + self.validator_table([(s, t)])
                          for s, t in self.pairs]
        if len(self.pairs) > 1:
            parts.append(self.summary_table())
        parts += [self.paired_difference(a, b).table() for a, b in self.comparisons]
        if per_seed:
            parts.append(self.per_seed_table())
        flags = self.flags_table()
        if flags:
            parts.append(flags)
        return "\n\n".join(parts) + "\n"

    def write(self, out: str | Path) -> dict[str, Path]:
        out = Path(out)
        fields_ = ["method", "source", "target", "seed", "target_accuracy", "source_accuracy", "train_seconds",
                   "oracle", "selection", "selected_epoch", "oracle_choice_accuracy", RUN_COLUMN]

        def write_csv(fh: Any) -> None:
            w = csv.writer(fh)
            w.writerow(fields_)
            for r in self.runs:  # (RUN_COLUMN: which stored run each row is, for `qianyi report DIR`)
                row = {**r.to_dict(), "oracle_choice_accuracy": choice_accuracy(r, ORACLE_CHOICE),
                       RUN_COLUMN: store_key(r.fingerprint) if r.fingerprint else ""}
                w.writerow([row[f] for f in fields_])
            for m, (src, tgt), seed in self.diverged:  # no result: its row says so, and names its folder's key
                row = {"method": m, "source": src, "target": tgt, "seed": seed, "oracle": False,
                       "selection": "diverged", RUN_COLUMN: self.diverged_keys.get((m, (src, tgt), seed), "")}
                w.writerow([row.get(f, "") for f in fields_])
        self.files = {"csv": atomic_write(out / "results.csv", write_csv),
                      "md": write_text(out / "results.md", self.report())}
        try:
            self.files["png"] = self.plot(out / "results.png")
        except ImportError:  # matplotlib missing: tables are still written
            pass
        return self.files

    def plot(self, path: Path) -> Path:
        """Target accuracy per method, one panel per pair: bars from 0 (their lengths compare), whiskers the
        sample std over seeds; a method without runs on a pair gets no bar ("no runs"; runs without a labelled target
        test split: "no target labels"), one seed "n=1"."""
        width = max(4.5, 0.55 * len(self.methods) + 1.5)  # per panel: room for every method's name
        cols = max(1, min(len(self.pairs), int(18 // width)))
        rows = -(-len(self.pairs) // cols)
        fig, axes = subplots(rows, cols, figsize=(width * cols, 3.8 * rows + 0.4), squeeze=False)
        for ax in axes.flat[len(self.pairs):]:
            ax.set_visible(False)
        seeds = sorted({len(self.accuracies(m, p)) for m in self.methods for p in self.pairs} - {0})
        for ax, pair in zip(axes.flat, self.pairs):
            accs = [100 * self.accuracies(m, pair) for m in self.methods]
            have = [i for i, a in enumerate(accs) if len(a)]
            means = [float(accs[i].mean()) for i in have]
            stds = [float(accs[i].std(ddof=1)) if len(accs[i]) > 1 else 0.0 for i in have]
            colors = ["#999999" if self.methods[i] == "source-only" else "#2ca02c"
                      if self.uses_target_labels(self.methods[i]) else "#1f77b4" for i in have]
            ax.bar(have, means, color=colors)
            spread = [(i, v, e) for i, v, e in zip(have, means, stds) if len(accs[i]) > 1]
            if spread:
                ax.errorbar([i for i, _, _ in spread], [v for _, v, _ in spread], yerr=[e for _, _, e in spread],
                            fmt="none", ecolor="black", capsize=3)
            ax.set_xticks(range(len(self.methods)), [drawable(self.label(m)) for m in self.methods], rotation=30,
                          ha="right", fontsize=8)
            ax.set_xlim(-0.6, len(self.methods) - 0.4)
            ax.set_ylim(0, 112)
            ax.set_yticks(range(0, 101, 20))
            ax.set_title(drawable(f"{pair[0]} → {pair[1]}"))
            ax.set_ylabel("target accuracy (%)")
            for i, v, e in zip(have, means, stds):
                ax.text(i, v + e + 1, f"{v:.1f}" + ("\nn=1" if len(accs[i]) == 1 and seeds != [1] else ""),
                        ha="center", va="bottom", fontsize=7)
            for i in sorted(set(range(len(self.methods))) - set(have)):
                what = "no target labels" if self._runs(self.methods[i], pair) else "no runs"  # runs, unscored
                ax.text(i, 2, what, ha="center", va="bottom", fontsize=7, rotation=90, color="#666666")
        fig.suptitle("no runs" if not seeds else "target accuracy, one seed" if seeds == [1] else
                     f"mean target accuracy over {seeds[0] if len(seeds) == 1 else f'{seeds[0]}-{seeds[-1]}'} seeds\n"
                     "(whiskers: sample std over seeds)", fontsize=9)
        fig.tight_layout()
        return save_figure(fig, path)


#: A standard error (points) at or below this is no seed variation: the difference is the same on every seed
#: (deterministic runs; accuracies quantised alike), up to floating-point rounding.
NO_SPREAD = 1e-9

#: What a comparison says where the difference is the same on every seed.
NO_VARIATION = ("no seed variation (identical on every seed): the interval would cover no test-sample noise, so it "
                "is not given")


def _t_interval(mean: float, se: float | None, df: float) -> tuple[float, float] | None:
    """95% Student-t interval; None with one seed (``se`` None) or no seed variation (``se`` 0): a zero-width
    interval would read as certainty where the runs measured no noise at all."""
    if se is None or se <= NO_SPREAD:
        return None
    from scipy.stats import t as student_t

    half = float(student_t.ppf(0.975, df)) * se
    return mean - half, mean + half


@dataclass(frozen=True)
class PairDifference:
    """One pair of :class:`PairedDifference`: the seeds both methods finished, their means (%), the
    mean difference (points) and its standard error (``None`` with one seed)."""

    pair: tuple[str, str]
    seeds: list[int]
    mean_a: float
    mean_b: float
    diff: float
    se: float | None

    @property
    def interval(self) -> tuple[float, float] | None:
        """95% Student-t interval of :attr:`diff` over the seeds (None: one seed, or :attr:`constant`)."""
        return _t_interval(self.diff, self.se, len(self.seeds) - 1)

    @property
    def constant(self) -> bool:
        """Whether the difference is the same on every one of several seeds (no seed variation to measure)."""
        return self.se is not None and self.se <= NO_SPREAD


@dataclass(frozen=True)
class PairedDifference:
    """Method ``b`` minus method ``a`` in target accuracy (points), paired by seed; see
    :meth:`BenchResult.paired_difference`."""

    a: str
    b: str
    rows: list[PairDifference]

    @property
    def diff(self) -> float:
        """The difference of the means over pairs (each pair's seed mean counts once)."""
        return float(np.mean([r.diff for r in self.rows]))

    @property
    def se(self) -> float | None:
        if any(r.se is None for r in self.rows):
            return None
        return float(np.sqrt(sum(r.se ** 2 for r in self.rows)) / len(self.rows))  # type: ignore[operator]

    @property
    def df(self) -> float:
        """Welch-Satterthwaite degrees of freedom of :attr:`se` (infinite when no seed varies)."""
        v = [(r.se ** 2, len(r.seeds) - 1) for r in self.rows if r.se is not None]
        denom = sum(x ** 2 / n for x, n in v)
        return float(sum(x for x, _ in v) ** 2 / denom) if denom > 0 else float("inf")

    @property
    def interval(self) -> tuple[float, float] | None:
        """95% interval of :attr:`diff` (``None`` when a pair has a single seed, or no pair's difference varies
        over its seeds)."""
        return _t_interval(self.diff, self.se, self.df)

    def verdict(self) -> str:
        """Which method the runs favour beyond seed noise, or that they do not tell the two apart."""
        ci = self.interval
        if ci is None and self.se is not None:  # several seeds everywhere, each pair's difference the same on all
            return NO_VARIATION
        if ci is None:
            return "one seed on some pair: no interval; run more seeds to tell seed noise from a difference"
        if ci[0] > 0:
            return f"{self.b} is ahead of {self.a} beyond seed noise (95%)"
        if ci[1] < 0:
            return f"{self.a} is ahead of {self.b} beyond seed noise (95%)"
        return f"the interval contains 0: these runs do not tell {self.a} and {self.b} apart"

    def table(self) -> str:
        def fmt(ci: tuple[float, float] | None) -> str:
            return "–" if ci is None else f"[{ci[0]:+.1f}, {ci[1]:+.1f}]"

        lines = [f"Paired difference {self.b} − {self.a} (target accuracy, points; the same seed, the same splits):",
                 "", f"| pair | seeds | {self.a} (%) | {self.b} (%) | {self.b} − {self.a} | 95% interval |",
                 "|---|---:|---:|---:|---:|---:|"]
        for r in self.rows:
            lines.append(f"| {md_cell(r.pair[0])}->{md_cell(r.pair[1])} | {len(r.seeds)} | {r.mean_a:.1f} | {r.mean_b:.1f} | "
                         f"{r.diff:+.1f} | {fmt(r.interval)} |")
        ahead = sum(r.diff >= 0 for r in self.rows)
        lines.append(f"| mean over pairs | | {np.mean([r.mean_a for r in self.rows]):.1f} | "
                     f"{np.mean([r.mean_b for r in self.rows]):.1f} | {self.diff:+.1f} | {fmt(self.interval)} |")
        lines += ["", f"{self.b} >= {self.a} on {ahead}/{len(self.rows)} pairs; {self.verdict()}. Intervals: Student t "
                      "over the seeds' differences (per pair), the pairs' standard errors combined with Welch-"
                      "Satterthwaite's degrees of freedom (mean); they measure seed noise on these pairs, which "
                      "are fixed, not sampled."]
        same = [r for r in self.rows if r.constant]
        if same and self.interval is not None:  # (with no interval at all, the verdict said so)
            lines.append(f"– on {', '.join(f'{md_cell(r.pair[0])}->{md_cell(r.pair[1])}' for r in same)}: "
                         + NO_VARIATION + ".")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


_NOT_INSTALLED: set[str] = set()


def variant_label(method: str, hparams: dict[str, Any], revision: int = 1) -> str:
    """``method`` when ``hparams`` are its defaults (a setting added later and absent counts as its old
    value) and ``revision`` its current one, else ``"method (k=v, ...)"`` with what differs (an earlier
    form of the method as ``revision=N``)."""
    try:
        m = get_method(method)
    except UnknownNameError:  # a plugin or script method not installed here: tabulated under its name
        if method not in _NOT_INSTALLED:
            _NOT_INSTALLED.add(method)
            warnings.warn(f"method {method!r} is not installed here (a plugin's or a script's): its runs are "
                          "tabulated under its name, settings unchecked (install the plugin to tell its settings "
                          "apart)", QianyiWarning, stacklevel=2)
        return method
    default = json.loads(json.dumps(m.hparams()))
    given = {**m.added_hparams, **json.loads(json.dumps(hparams))}
    diff = [f"{k}={given[k]}" for k in default if k in given and given[k] != default[k]]
    if revision != m.revision:
        diff.append(f"revision={revision}")
    return f"{method} ({', '.join(diff)})" if diff else method


def diverged_note(method: str, pair: str, seed: int, exc: TrainingError, folder: Path | None,
                  means: str = "its means are over the seeds that did not diverge") -> str:
    """One line for a run of ``bench`` or ``select`` that diverged: it has no result, and the command goes on (its
    other seeds and settings are tabulated; a mean over the seeds that finished flatters an unstable setting).
    ``means``: what that does to the tables."""
    why = str(exc).replace(DIVERGED_ADVICE, "").strip()
    return (f"{method} on {pair} seed {seed} DIVERGED, so it has no result ({why}{'' if why.endswith('.') else '.'} "
            f"Folder: {str(folder) if folder is not None else 'none'}). {means[:1].upper()}{means[1:]}; a lower --lr "
            "or weight (--set METHOD.KEY=VALUE) is another setting, trained afresh")


def check_backbone_spec(backbone: Any, who: str) -> None:
    """Refuse one network instance where many runs each train a fresh network (``bench``, ``select``)."""
    if isinstance(backbone, nn.Module):
        raise ConfigError(f"{who} trains a fresh network for every run: give backbone as a name (e.g. 'resnet50'), "
                          "a qianyi.nn.resnet.NamedBackbone or a factory (sample_shape, n_classes) -> Backbone, "
                          "not one network instance")


def pair_identity(task: TransferTask, backbone: BackboneSpec | None) -> tuple[str, str]:
    """What a pair's runs are keyed by besides their settings: the content hash of its data as they read it (a text
    pair tokenised for ``backbone``) and its names (classes, preprocessing: :func:`~qianyi.train.run.model_names`)."""
    return (_tokenised_for(backbone, task).content_hash(),
            json.dumps(model_names(task, backbone), sort_keys=True, default=str))


def read_again(load: Callable[[], TransferTask], checked: tuple[str, str], backbone: BackboneSpec | None,
               pair: str, who: str) -> TransferTask:
    """A pair's task read again for its runs. ``bench`` and ``select`` read and check every pair before any training
    without keeping it (the memory of the largest pair, not of all), then read each again for its runs: quietly
    (its warnings were said when it was checked; a built-in is a copy from the loader's cache). A DataError when
    it is not the data checked (:func:`pair_identity`): its files changed since the ``who`` began."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            task = load()
        except (QianyiError, OSError) as exc:  # (a file deleted or made unreadable: it was read at the check)
            raise DataError(f"{who}: the pair {pair}, read and checked before any training, could not be read again "
                            f"for its runs ({exc}): its files changed since the {who} began; keep them in place "
                            f"until the {who} ends, and rerun it (its finished runs in the out folder are reused)"
                            ) from None
        same = pair_identity(task, backbone) == checked
    if not same:
        raise DataError(f"{who}: the pair {pair}, read again for its runs, is not the data read and checked before "
                        f"any training: its files changed since the {who} began; rerun the {who} with the files as "
                        "they should be (its finished runs in the out folder are reused)")
    return task


@caller_rng_kept()  # building networks draws initial weights: not from the caller's generators
def bench(methods: Sequence[str], pairs: Sequence[str | tuple[str, str]], seeds: int | Sequence[int] = 3,
          out: str | Path | None = None, config: TrainConfig | None = None, data_dir: str | None = None,
          hparams: dict[str, dict[str, Any]] | None = None, max_samples: int | None = None,
          log: Callable[[str], None] | None = print, target_tests: Sequence[str | None] | None = None,
          backbone: BackboneSpec | None = None, text: dict | None = None, command: str = "",
          embed: bool = True) -> BenchResult:
    """Run every method on every pair for every seed; source-only and oracle are always included.
    ``seeds``: a count N (seeds 0..N-1) or distinct seeds.

    With ``out``, runs live in ``out/runs`` (a :class:`~qianyi.train.store.RunStore`: checkpoint,
    result.json, model.pt per run) and are reused when finished with the same fingerprint.
    Every run records each epoch's target-test accuracy for the ORACLE-choice column only.
    ``target_tests`` (one spec or None per pair) scores each pair on a separate labelled target test
    set, all of the target then training without labels (the protocol of the DANN paper's Amazon
    reviews: train files as source and target, the target's test file scored).
    ``backbone``: every run's network, as in :func:`qianyi.run` (a name such as ``"resnet50"``, a
    :class:`~qianyi.nn.resnet.NamedBackbone` or a factory; not one network instance, which the runs
    would share); a named one is part of each run's fingerprint. ``command``: the command line that made
    the table, written at the top of results.md (the CLI passes its own). ``embed``: the report's t-SNE and
    per-layer distance figures (reused while no model and no code changed).
    """
    check_backbone_spec(backbone, "bench")
    seeds = normalise_seeds(seeds, "bench")
    if not methods or not pairs:
        raise ConfigError("bench needs at least one method and one pair")
    capped = [split_cap(p) if isinstance(p, str) else (p, None) for p in pairs]
    pairs_ = [parse_pair(p) if isinstance(p, str) else tuple(p) for p, _ in capped]
    caps = [max_samples if cap is None else cap for _, cap in capped]
    twice = [f"{s}->{t}" for i, (s, t) in enumerate(pairs_) if (s, t) in pairs_[:i]]
    if twice:
        raise ConfigError(f"bench: the pair {twice[0]} is given twice (runs are stored by pair: one cap per pair)")
    twice = [m for i, m in enumerate(methods) if m in methods[:i]]
    if twice:  # each of its runs would be tabulated twice (the std taken over copies)
        raise ConfigError(f"bench: the method {twice[0]} is given twice in --methods; give each method once (compare "
                          "settings of one method in separate --out folders, with --set)")
    methods_ = ["source-only"] + [m for m in methods if m not in BASELINES] + ["oracle"]
    hparams = hparams or {}
    base = config or TrainConfig()
    for m in methods_:  # a bad name or setting fails before any training
        asked = get_method(m, **hparams.get(m, {}))
        check_shallow_settings(asked, base)
        if not asked.trains_classifier:
            raise ConfigError(f"bench compares target accuracies, and {m} trains no classifier (its accuracy would be "
                              f"an untrained network's): leave it out; `qianyi run {m}` makes its generators")
    store = RunStore(Path(out) / "runs") if out is not None else None
    runs: list[RunResult] = []
    tests = list(target_tests) if target_tests is not None else [None] * len(pairs_)
    if len(tests) != len(pairs_):
        raise ConfigError(f"{len(tests)} target test sets for {len(pairs_)} pairs; give one per pair, in order")
    total, k, trained, t0 = len(pairs_) * len(methods_) * len(seeds), 0, 0, time.perf_counter()
    diverged: list[str] = []  # the runs that diverged (TrainingError): said under the tables
    gone: list[tuple[str, tuple[str, str], int]] = []  # and which they were (method as tabulated, pair, seed)
    gone_keys: dict[tuple[str, tuple[str, str], int], str] = {}  # their run keys (folders seedN-KEY)
    told_untracked = False  # (that reused runs log nothing to --log-to's trackers: said once)
    # every pair read and checked before any training (a typo in the last pair costs no hours), none kept: each is
    # read again for its runs, so the bench holds one pair's task at a time (read_again)
    checked = []
    for (s, t), tt, cap in zip(pairs_, tests, caps):
        task = load_task(s, t, target_test=tt, data_dir=data_dir, max_samples=cap, text=text)
        if task.target_test is None:
            raise DataError(f"bench compares methods by target accuracy, but {t!r} has no labels to hold out a "
                            "test split; give a labelled test set of that target with --target-tests SPEC (target_tests=), or train "
                            "on it with `qianyi run` (label-free scores)")
        # a network that cannot read this pair (--backbone mlp on texts): said now; a text pair tokenised for its
        # encoder here, once (kept on the task: its runs' fingerprints and names reuse it)
        _for_task(backbone, _tokenised_for(backbone, task))
        check_starting_model(base.init_from, task)  # one --init-from for a pair and its reverse: said now
        checked.append(pair_identity(task, backbone))
        del task
    for (s, t), tt, cap, identity in zip(pairs_, tests, caps, checked):
        task = read_again(lambda: load_task(s, t, target_test=tt, data_dir=data_dir, max_samples=cap, text=text),
                          identity, backbone, f"{s}->{t}", "bench")
        if log:
            log(task.describe())
        for m in methods_:
            for seed in seeds:
                k += 1
                method = get_method(m, **hparams.get(m, {}))
                if method.uses_target_labels and task.target.y is None:
                    if log and seed == seeds[0]:
                        why = ("its labels are its test set's (transductive: it holds "
                               f"{task.test_in_target} of the {len(task.target_test)} test samples), so they were "
                               "dropped" if task.test_in_target and task.target_test is not None else "")
                        log(f"  {m}: skipped, the target train split has no labels to train it on"
                            + (f": {why}" if why else "") + " (no gap closed)")
                    continue
                cfg = replace(base, seed=seed)
                if method.uses_target_labels:  # the oracle is scored on its last epoch; validators do not apply
                    cfg = replace(cfg, select=LAST, validators=())
                result, rdir = None, None
                if store is not None:
                    fp = run_fingerprint(method, cfg, task, backbone)  # as the run records it (the data's defaults)
                    result, rdir = store.get(fp, model_names(task, backbone)), store.path(fp)
                if result is None:
                    try:
                        with shared_run(rdir):
                            result, _ = run(method, task, cfg, out=rdir, track_target_test=True, backbone=backbone)
                    except TrainingError as exc:  # one setting's divergence is a result, not the end of the bench
                        diverged.append(diverged_note(m, f"{task.source.name}->{task.target.name}", seed, exc, rdir))
                        gone.append((variant_label(method.name, method.hparams(), method.revision),
                                     (task.source.name, task.target.name), seed))
                        if rdir is not None:
                            gone_keys[gone[-1]] = _folder_key(rdir)
                        warnings.warn(f"bench: {diverged[-1]}", QianyiWarning, stacklevel=_caller_stacklevel())
                    trained += 1
                    if log:
                        eta = (time.perf_counter() - t0) / trained * (total - k)
                        log(f"  [{k}/{total}, at most {_duration(eta)} left] "
                            + (f"{m} {task.name} seed {seed}: DIVERGED, no result" if result is None
                               else result.summary()))
                    if result is None:
                        continue
                else:
                    if log:
                        log(f"  [{k}/{total}] (done earlier) " + result.summary())
                        if cfg.log_to and not told_untracked:  # (`qianyi run` says it for its one run)
                            told_untracked = True
                            log(f"  runs done earlier log nothing to {', '.join(cfg.log_to)} (a run is logged while "
                                "it trains; another --out trains and logs them again)")
                    # its health flags said again, as `qianyi run` says them on reuse (a -W error gate fails on
                    # every rerun, not only on the one that trained it)
                    _health_warnings(method, task, cfg, rdir, result)
                runs.append(result)
        del task  # (before the next pair is read)
    if not runs:
        raise TrainingError("bench: every run diverged, so there is no table: " + "; ".join(diverged[:3]))
    runs = [replace(r, method=variant_label(r.method, r.hparams, (r.fingerprint or {}).get("revision", 1)))
            for r in runs]  # rows named by their settings
    methods_ = list(dict.fromkeys([*(r.method for r in runs), *(m for m, _, _ in gone)]))
    methods_ = ["source-only"] + [m for m in methods_ if m not in BASELINES] + ["oracle"]
    res = BenchResult(runs, pairs_, methods_, Path(out) if out is not None else None, select=base.select,
                      command=command, notes=diverged, diverged=gone, diverged_keys=gone_keys)
    if out is not None:
        res.write(out)
        from .html import write_report  # the HTML report reads this module's results

        res.files["html"] = write_report(res, out, data_dir=data_dir, embed=embed, log=log)["html"]
    return res
