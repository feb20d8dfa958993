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

from typing import Iterable, Sequence

import numpy as np

from ..methods.base import Method

#: A discriminator this accurate (mean over the last quarter of the epochs) is winning the game.
DISCRIMINATOR_WINS = 0.98
#: A network that gives this share of the target one class is flagged (unless the source is that skewed): a
#: collapse, or a target dominated by one class (label shift), which only target labels can tell apart.
COLLAPSED = 0.9
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


def winning(value: float) -> bool:
    """Whether a discriminator's accuracy means it is winning the game."""
    return value >= DISCRIMINATOR_WINS


def game_flags(history: Sequence[dict[str, float]], discriminators: Iterable[str], source_top_share: float, *,
               meaning: str = Method.game_meaning, advice: str = Method.game_advice,
               check_collapse: bool = True, selected_epoch: int | None = None, oracle: bool = False,
               feature_game: bool | None = None, gates: Iterable[str] = ()) -> list[str]:
    """Readable warnings for an unbalanced game, from the per-epoch ``history``.

    ``discriminators``: history keys holding discriminator accuracies; ``source_top_share``: the
    share of the source's most frequent class (no collapse flag when it is 0.5 or more). The collapse flag
    compares the network's share with the source's, not the target's (unknown without labels), so a correct
    model on a target dominated by one class (label shift) is flagged too, and the flag says so (not when the source
    is not learnt either: no correct model then). ``meaning``
    and ``advice``: what a winning discriminator means for the method and what to change (``Method.game_meaning``/``game_advice``);
    ``check_collapse`` False skips the collapse check (a method that trains no classifier);
    ``selected_epoch``: the epoch whose weights the run returns (``--select``), whose predictions the
    collapse check reads (default: the last epoch); ``oracle``: the network learnt from target labels;
    ``feature_game``: the classifier's features play against a discriminator (default: any discriminator logged);
    ``gates``: history keys holding the share of the target a confidence gate let through (``Method.gate_logs``).
    """
    discriminators = tuple(discriminators)
    feature_game = bool(discriminators) if feature_game is None else feature_game
    if not history:
        return []
    flags = []
    tail = history[-max(1, len(history) // 4):]
    for key in discriminators:
        values = [row[key] for row in tail if key in row]
        if values and winning(float(np.mean(values))):
            flags.append(f"the discriminator wins: {key} averaged {100 * np.mean(values):.1f}% over the last "
                         f"{len(values)} epoch(s): {meaning} ({advice})")
    for key in gates:
        values = [row[key] for row in history if key in row]
        if values and float(np.mean(values)) < GATE_SHUT:
            flags.append(f"the confidence gate stayed almost shut: {key} averaged {100 * np.mean(values):.1f}% of the "
                         f"target over {len(values)} epoch(s), so the target term it gates was mostly off and the "
                         "network learnt mostly from the source (lower threshold, or train longer)")
    row = next((r for r in history if selected_epoch is not None and r.get("epoch") == selected_epoch), history[-1])
    share = row.get(TOP_SHARE_KEY)
    if check_collapse and share is not None and share >= COLLAPSED and source_top_share < 0.5:
        val = row.get("source_val_acc")
        unlearnt = val is not None and val < (1 + source_top_share) / 2  # short of halfway to 100% from the majority
        cause = ("it was trained on the target's own labels, so the training itself failed (too few epochs or "
                 "too high a learning rate?)" if oracle
                 else f"it has not learnt the source yet either (source-val accuracy {100 * val:.0f}%): train longer "
                      "(more epochs) before reading this as the domains' fault" if unlearnt
                 else "the encoder may have fooled the discriminator by mapping the target to one place" if feature_game
                 else "what it learnt on the source does not carry over to this target")
        if unlearnt and not oracle:  # short of the source it is no correct model: label shift does not explain it
            flags.append(f"the network collapsed: it gives {100 * share:.0f}% of the target samples one class (the "
                         f"source's largest class is {100 * source_top_share:.0f}%); {cause}")
        else:
            flags.append(f"the network gives {100 * share:.0f}% of the target samples one class (the source's "
                         f"largest class is {100 * source_top_share:.0f}%): either it collapsed ({cause}), or the "
                         "target is dominated by one class (label shift, where a correct model is as skewed); only "
                         "target labels can tell the two apart")
    return flags
