"""Is the game balanced? Label-free checks of a finished (or running) adversarial fit.

Two failures are common and visible without target labels: the **discriminator wins** (its accuracy
stays near 100%: the features were never aligned, the encoder gets no useful signal) and the network
**collapses** onto one class for most target samples (an encoder that fooled its discriminator by
mapping everything to one place; a target dominated by one class, label shift, looks the same without
target labels, and the flag says so). :func:`game_flags` reads them from the per-epoch history: the
methods log their discriminators' accuracies under the names in ``Method.discriminator_logs``, and
the engine records ``target_top_share``, the share of (unlabelled) target training samples given the
most frequent predicted class. A third is flagged for teacher methods: a **confidence gate that stays
shut** (``Method.gate_logs``: the share of the target confident enough for the pseudo-label or
consistency term), so that the run was source training under the method's name.
"""
from __future__ import annotations

import warnings
from typing import Any, Iterable, Sequence

import numpy as np

from ..data.domain import TransferTask
from ..errors import QianyiWarning
from ..methods.base import Method

#: A discriminator this accurate (mean over the last quarter of the epochs) is winning the game.
DISCRIMINATOR_WINS = 0.98
#: A network that gives this share of the target one class is flagged (unless the source is that skewed): a
#: collapse, or a target dominated by one class (label shift), which only target labels can tell apart. With many
#: classes the bar is lower (:func:`collapse_threshold`).
COLLAPSED = 0.9
#: ... but never below this share, and at most this many times the source's largest class share.
COLLAPSED_FLOOR, COLLAPSED_RATIO = 0.5, 20.0
#: History key of the share of the classes a pseudo-label could go to (CBST: a threshold from its memory).
PSEUDO_CLASSES_KEY = "pseudo_classes"
#: Self-training whose pseudo-labels could go to less than this share of the classes, on average, is flagged.
FEW_CLASSES = 0.5
#: A confidence gate letting through less than this share of the target on average over the run is flagged.
GATE_SHUT = 0.01
#: History key of the share of target samples in the most frequent predicted class.
TOP_SHARE_KEY = "target_top_share"


def top_class_share(predictions: np.ndarray) -> float:
    """The share of ``predictions`` (class indices) that fall in the most frequent class."""
    predictions = np.asarray(predictions)
    if not len(predictions):
        return 0.0
    return float(np.bincount(predictions).max() / len(predictions))


def spread_rows(n: int, k: int) -> np.ndarray:
    """At most ``k`` row indices spread evenly over ``n`` rows (deterministic): a share measured on them is
    not that of a prefix, which in a file sorted by class holds one or two classes."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).astype(int)) if n else np.zeros(0, int)


def collapse_threshold(source_top_share: float) -> float:
    """The share of the target given one class that the collapse flag reads as a collapse: 90%, or with many
    classes ``COLLAPSED_RATIO`` times the source's largest class share, but at least 50% (10 balanced classes:
    90%; 31: 65%; 40 or more: 50%). ``source_top_share`` 0 (unknown): 90%."""
    if source_top_share <= 0:
        return COLLAPSED
    return min(COLLAPSED, max(COLLAPSED_FLOOR, COLLAPSED_RATIO * source_top_share))


def winning(value: float) -> bool:
    """Whether a discriminator's accuracy means it is winning the game."""
    return value >= DISCRIMINATOR_WINS


def game_flags(history: Sequence[dict[str, float]], discriminators: Iterable[str], source_top_share: float, *,
               meaning: str = Method.game_meaning, advice: str = Method.game_advice,
               check_collapse: bool = True, selected_epoch: int | None = None, oracle: bool = False,
               feature_game: bool | None = None, gates: Iterable[str] = ()) -> list[str]:
    """Readable warnings for an unbalanced game, from the per-epoch ``history``.

    ``discriminators``: history keys holding discriminator accuracies; ``source_top_share``: the
    share of the source's most frequent class (no collapse flag when it is 0.5 or more; the share of the target in
    one class that is flagged, :func:`collapse_threshold`, is lower with many classes). The collapse flag
    compares the network's share with the source's, not the target's (unknown without labels), so a correct
    model on a target dominated by one class (label shift) is flagged too, and the flag says so (not when the source
    is not learnt either: no correct model then). ``meaning``
    and ``advice``: what a winning discriminator means for the method and what to change (``Method.game_meaning``/``game_advice``);
    ``check_collapse`` False skips the collapse check (a method that trains no classifier);
    ``selected_epoch``: the epoch whose weights the run returns (``--select``), whose predictions the
    collapse check reads (default: the last epoch); ``oracle``: the network learnt from target labels;
    ``feature_game``: the classifier's features play against a discriminator (default: any discriminator logged);
    ``gates``: history keys holding the share of the target a confidence gate let through (``Method.gate_logs``).
    A winning discriminator's flag says whether the classifier learnt the source (which way to turn the
    adversarial weight depends on it); CBST's pseudo-labels reaching few classes are flagged (:func:`few_classes_flags`).
    """
    discriminators = tuple(discriminators)
    feature_game = bool(discriminators) if feature_game is None else feature_game
    if not history:
        return []
    flags = []
    row = next((r for r in history if selected_epoch is not None and r.get("epoch") == selected_epoch), history[-1])
    share, val = row.get(TOP_SHARE_KEY), row.get("source_val_acc")
    bar = collapse_threshold(source_top_share)
    collapsed = check_collapse and share is not None and share >= bar and source_top_share < 0.5
    unlearnt = val is not None and val < (1 + source_top_share) / 2  # short of halfway to 100% from the majority
    tail = history[-max(1, len(history) // 4):]
    won = False
    for key in discriminators:
        values = [row[key] for row in tail if key in row]
        if values and winning(float(np.mean(values))):
            won = True
            flags.append(f"the discriminator wins: {key} averaged {100 * np.mean(values):.1f}% over the last "
                         f"{len(values)} epoch(s): {meaning}{_observed(val, share, unlearnt, collapsed)} ({advice})")
    for key in gates:
        values = [row[key] for row in history if key in row]
        if values and float(np.mean(values)) < GATE_SHUT:
            flags.append(f"the confidence gate stayed almost shut: {key} averaged {100 * np.mean(values):.1f}% of the "
                         f"target over {len(values)} epoch(s), so the target term it gates was mostly off and the "
                         "network learnt mostly from the source (lower threshold, or train longer)")
    flags += few_classes_flags(history)
    if collapsed:
        assert share is not None
        cause = ("it was trained on the target's own labels, so the training itself failed (too few epochs or "
                 "too high a learning rate?)" if oracle
                 else f"it has not learnt the source yet either (source-val accuracy {100 * val:.0f}%): train longer "
                      "(more epochs)" + (", or weaken the adversarial term, whose reversed gradient may be keeping the "
                                         "classifier from learning the source," if feature_game else "")
                      + " before reading this as the domains' fault" if unlearnt
                 else "what it learnt on the source does not carry over to this target (its discriminator won: the "
                      "features were not aligned)" if feature_game and won
                 else "the encoder may have fooled the discriminator by mapping the target to one place" if feature_game
                 else "what it learnt on the source does not carry over to this target")
        flags.append(collapse_flag(share, source_top_share, cause, certain=unlearnt and not oracle))
    return flags


def _observed(val: float | None, share: float | None, unlearnt: bool, collapsed: bool) -> str:
    """What a winning discriminator's flag saw of the classifier: whether it learnt the source, and the target's
    top class share when it collapsed (which way to turn the adversarial weight depends on it)."""
    if val is None:
        return ""
    if unlearnt or collapsed:
        top = f", {100 * share:.0f}% of the target in one class" if collapsed and share is not None else ""
        return f"; the classifier failed too (source-val accuracy {100 * val:.0f}%{top})"
    return f"; the classifier learnt the source (source-val accuracy {100 * val:.0f}%)"


def collapse_flag(share: float, source_top_share: float, cause: str, certain: bool, model: str = "network") -> str:
    """The collapse flag's words: ``share`` of the target in one class, against the source's largest class share;
    ``certain``: no correct model (the source is not learnt either), so label shift is not offered as a reading;
    ``model``: what predicted ("network", or "model" for a shallow method)."""
    bar = collapse_threshold(source_top_share)
    largest = f"the source's largest class is {_percent(source_top_share)}"
    if bar < COLLAPSED:
        largest += (f"; with this many classes the flag's bar is {100 * bar:.0f}% of the target, not "
                    f"{100 * COLLAPSED:.0f}%: {COLLAPSED_RATIO:.0f} times that share, at least "
                    f"{100 * COLLAPSED_FLOOR:.0f}%")
    if certain:  # short of the source it is no correct model: label shift does not explain it
        return f"the {model} collapsed: it gives {100 * share:.0f}% of the target samples one class ({largest}); {cause}"
    return (f"the {model} gives {100 * share:.0f}% of the target samples one class ({largest}): either it collapsed "
            f"({cause}), or the target is dominated by one class (label shift, where a correct model is as skewed); "
            "only target labels can tell the two apart")


def chance_warning(balanced: float, y_test: np.ndarray, shallow: bool) -> str | None:
    """What a run whose balanced target accuracy ``balanced`` (on a test split of labels ``y_test``) is at chance
    level is warned of, or None: one wording for a run and its reuse. Balanced accuracy averages the classes
    present in the split, so a one-class predictor scores 1/present. ``shallow``: a fit, which writes no
    history.csv to look at."""
    present = len(np.unique(y_test))
    chance = 1.0 / max(present, 1)
    if present < 2 or balanced > chance + 0.02:
        return None
    return (f"balanced target accuracy {100 * balanced:.1f}% is at chance level ({100 * chance:.1f}%: 1 of the "
            f"{present} classes in the target test split); "
            + ("the fit may have collapsed" if shallow else "the run may have collapsed (see history.csv)"))


def shallow_flags(method: Method, task: TransferTask, predictor: Any, report: dict[str, Any], source_accuracy: float,
                  which: str) -> list[str]:
    """The health checks of a deep run, for a shallow method's fitted ``predictor`` (``predict(X)``: class indices):
    warn (``which``: the run, as its warnings name it) when the balanced accuracy in ``report`` (the target test
    split's) is at chance level, and flag, warn and return a collapse read from its predictions on (up to 1,000
    rows spread over) the unlabelled target, as :func:`game_flags` reads a network's (with the source-val accuracy
    ``source_accuracy``). Returns the flags (``result.flags``)."""
    from . import distributed
    from .run import _caller_stacklevel

    warn = distributed.is_main()
    if task.target_test is not None and report and warn:
        said = chance_warning(report["balanced_accuracy"], np.asarray(task.target_test.y), shallow=True)
        if said is not None:
            warnings.warn(f"{which}: {said}", QianyiWarning, stacklevel=_caller_stacklevel())
    rows = spread_rows(len(task.target), 1000)  # as the engine reads a network's share: not a prefix
    flags = []
    source_top = top_class_share(np.asarray(task.source.y))
    if len(rows) and source_top < 0.5:
        X = np.asarray(task.target.X[rows], dtype=np.float64).reshape(len(rows), -1)
        _, counts = np.unique(np.asarray(predictor.predict(X)), return_counts=True)
        share = float(counts.max() / len(rows))
        if share >= collapse_threshold(source_top):
            unlearnt = source_accuracy < (1 + source_top) / 2
            cause = (f"it does not fit the source either (source-val accuracy {100 * source_accuracy:.0f}%): "
                     f"{method.name}'s fit failed on these data, whatever the shift (its settings, or too many "
                     "classes or dimensions for it?)" if unlearnt
                     else "what it learnt on the source does not carry over to this target")
            flags.append(collapse_flag(share, source_top, cause, certain=unlearnt, model="model"))
    if warn:
        for flag in flags:
            warnings.warn(f"{which}: {flag}", QianyiWarning, stacklevel=_caller_stacklevel())
    return flags


def _percent(share: float) -> str:
    """``share`` as a percentage, with a decimal under 1% (a 345-class source's largest class: 0.3%, not 0%)."""
    return f"{100 * share:.1f}%" if 0 < share < 0.01 else f"{100 * share:.0f}%"


def few_classes_flags(history: Sequence[dict[str, float]]) -> list[str]:
    """A flag when, in some epoch, a class-balanced self-training (CBST: :data:`PSEUDO_CLASSES_KEY` logged) could
    give its pseudo-labels to fewer than :data:`FEW_CLASSES` of the classes: with many classes its warm-up ended
    before the source was learnt, or its memory held too few samples per class."""
    rows = [(i, r) for i, r in enumerate(history) if PSEUDO_CLASSES_KEY in r]
    if not rows:
        return []
    worst = min((r for _, r in rows), key=lambda r: r[PSEUDO_CLASSES_KEY])
    low = worst[PSEUDO_CLASSES_KEY]
    if low >= FEW_CLASSES:
        return []
    first, start = rows[0]
    seen = []
    if first and "source_val_acc" in history[first - 1]:  # the last epoch of the warm-up
        seen.append(f"source-val accuracy {100 * history[first - 1]['source_val_acc']:.0f}% when self-training began")
    if "threshold" in start:
        seen.append(f"mean threshold {start['threshold']:.3f} in its first epoch")
    mean = float(np.mean([r[PSEUDO_CLASSES_KEY] for _, r in rows]))
    epoch = f"in epoch {worst['epoch']:.0f} " if "epoch" in worst else ""
    return [f"the pseudo-labels could go to only {100 * low:.0f}% of the classes {epoch}({100 * mean:.0f}% on average "
            f"over {len(rows)} epoch(s) of self-training; only a class predicted in the memory of recent target "
            "batches gets a threshold)" + (f"; {', '.join(seen)}" if seen else "")
            + ": with many classes, self-training that starts before the source is learnt, or a memory holding "
              "few samples per class, labels the target with a few classes and may collapse onto one (start later, "
              "e.g. --set warmup=0.6, or keep more batches, e.g. --set memory=200; a target holding only those "
              "classes, partial transfer, looks the same)"]
