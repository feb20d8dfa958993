"""The transfer advisor: measure a source/target pair, then recommend — with the numbers behind each
recommendation — whether transfer is likely to help, how many lower layers to freeze, where to
adapt and with which method family, and warn when the target looks too far.

It sees source labels and target *inputs* only: the target's labels and its test split are never
read (:func:`advise` builds its own view of the task). The rules, fixed before any comparison
with target labels was run (``benchmarks/advisor_check.py`` does that comparison afterwards):

* **Per layer** (input, each layer group): proxy A-distance (PAD) and MK-MMD between source and
  target, an MMD permutation test, and a linear probe's source-validation accuracy; with the
  probe's error e_S, ``e_S + PAD/2`` is the measurable part of Ben-David et al.'s bound
  e_T <= e_S + d_HΔH/2 + λ (Machine Learning 2010): lower means more transferable.
* **Adaptation layers**: the fully connected (task-specific) groups where the shift is still
  measurable — PAD >= 0.2 or MMD p < 0.05 (Bonferroni-corrected over the layers tested). None: source-only is advised (nothing to align). This is
  DAN's choice (Long et al. 2015): conv layers general, fully connected layers specific.
* **Freeze depth**: a frozen group is a fixed function of its inputs, fitted — batch-norm statistics
  included — to the source; it stays right for the target only while the target's inputs *to that
  group* look like the source's (the reason AdaBN re-estimates BN statistics on the target, Li et
  al. 2016). So groups are frozen from the bottom while the representation entering them is shared
  (PAD <= 1.0: the domain classifier errs on at least a quarter of the samples) and they are not
  adaptation layers; the first group whose inputs are separable is trained, and all above it.
  (Rule v2. Rule v1 — freeze while a group makes the domains no more separable than the raw
  inputs — froze conv1-conv2 on MNIST<->digits and was third of four both ways in
  ``benchmarks/advisor_check.py``; v2 was written after that check, see docs/measure.md.)
* **Method family**: a large shift (PAD_input >= 1.9, or PAD >= 1.5 at the features) -> adversarial
  (DANN, Ganin et al. 2016: a learned discriminator can align shifts a fixed kernel family
  misses); a moderate one -> discrepancy (DAN, MK-MMD on the adaptation layers): no min-max game.
* **Will transfer help / negative transfer**: the source network's target accuracy is estimated
  without labels by average thresholded confidence (ATC, Garg et al., ICLR 2022); the warning is
  raised when that estimate is under twice chance (1/C; halfway from chance to 100% with few classes;
  the source's majority-class rate is shown beside it when it is higher), when the features separate the domains almost perfectly
  (PAD >= 1.9), or when the target predictions concentrate on fewer classes (the entropy of their
  histogram under 0.6 x the source's: a collapse, or label shift, which only target labels can tell
  apart; the verdict then says "uncertain") (Wang et al., "Characterizing and Avoiding Negative
  Transfer", CVPR 2019). Fewer than 100 samples per domain add a warning: the measurements are coarse.
"""
from __future__ import annotations

import shlex
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .._io import write_json, write_text
from ..errors import QianyiWarning
from ..data.domain import Domain, TransferTask
from ..distances import mmd_test
from ..distances.permutation import check_test_memory
from ..methods.registry import get_method
from ..nn.backbones import Backbone
from .._report import markdown_table
from ..nn.inference import evaluating, predict_features, predict_logits
from ..select.validators import atc_from_probs
from ..train.config import TrainConfig
from ..train.engine import Trainer
from ..train.result import MODEL_FILE
from .metrics import check_metrics, check_samples
from .profile import INPUT, LayerProfile, layer_profile, plot_profiles, presence, top_words
from .report import load_weights_for

#: Thresholds of the rules in the module docstring (fixed a priori; see docs/measure.md).
PAD_SHIFT = 0.2          # below: the domain classifier is within ~5 points of chance
P_SHIFT = 0.05           # MMD permutation-test level (family-wise, over the fully connected layers)
PAD_SHARED = 1.0         # at or below: the representation is shared enough to keep a layer on it frozen
PAD_LOW_LEVEL = 1.9      # inputs almost perfectly separable
PAD_LARGE = 1.5          # large shift at the features
COLLAPSE = 0.6           # target prediction entropy below this fraction of the source's
FEW_SAMPLES = 100        # fewer samples per domain: measurements too coarse to advise on (a warning)


@dataclass
class Recommendation:
    topic: str
    advice: str
    because: str


@dataclass
class Advice:
    """What :func:`advise` measured and what it recommends (``freeze``, ``method``, ``adapt_layers``)."""

    task: str
    freeze: int
    method: str
    adapt_layers: list[str]
    transfer_likely_helps: bool
    negative_transfer_warning: bool
    atc_estimate: float
    chance: float
    profile: LayerProfile
    probe_accuracy: list[float]
    mmd_p_values: list[float | None]
    recommendations: list[Recommendation]
    source_model: str | None = None
    command: str = ""
    files: dict[str, str] = field(default_factory=dict)

    def layer_table(self) -> str:
        p = self.profile
        rows = []
        for i, layer in enumerate(p.layers):
            pad = p.values.get("a-distance", [None] * len(p.layers))[i]
            bound = None if pad is None else (1 - self.probe_accuracy[i]) + pad / 2
            rows.append([layer, p.dims[i], *(p.values[m][i] for m in p.values), self.mmd_p_values[i],
                         self.probe_accuracy[i], bound])
        return markdown_table(["layer", "dim", *p.values, "MMD p-value", "probe source acc.", "e_S + PAD/2"], rows, 3)

    def report(self) -> str:
        lines = [f"{self.task}: measured on source and unlabelled target inputs (no target labels)", "",
                 self.layer_table(), "", f"ATC estimate of the source network's target accuracy: "
                 f"{100 * self.atc_estimate:.1f}% (an estimate; chance {100 * self.chance:.1f}%)", ""]
        for r in self.recommendations:
            lines += [f"* {r.topic}: {r.advice}", f"    because {r.because}"]
        if self.command:
            lines += ["", "to run it:", f"  {self.command}"]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "freeze": self.freeze, "method": self.method, "adapt_layers": self.adapt_layers,
                "transfer_likely_helps": self.transfer_likely_helps,
                "negative_transfer_warning": self.negative_transfer_warning, "atc_estimate": self.atc_estimate,
                "chance": self.chance, "profile": self.profile.to_dict(), "probe_accuracy": self.probe_accuracy,
                "mmd_p_values": self.mmd_p_values, "recommendations": [r.__dict__ for r in self.recommendations],
                "source_model": self.source_model, "command": self.command}

    def write(self, out: str | Path) -> dict[str, str]:
        out = Path(out)
        self.files = {"json": str(out / "advice.json"), "md": str(out / "advice.md"),
                      "png": str(plot_profiles([self.profile], out / "profile.png", title=self.task))}
        write_text(self.files["md"], self.report() + "\n")
        write_json(self.files["json"], self.to_dict())
        return self.files


def linear_probe_accuracy(train_x: torch.Tensor, train_y: np.ndarray, val_x: torch.Tensor, val_y: np.ndarray,
                          seed: int = 0) -> float:
    """Accuracy on (``val_x``, ``val_y``) of a logistic regression trained on standardised ``train_x``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x.numpy())
    clf = LogisticRegression(C=0.1, max_iter=300, tol=1e-3, random_state=seed)
    clf.fit(scaler.transform(train_x.numpy()), train_y)
    return float((clf.predict(scaler.transform(val_x.numpy())) == val_y).mean())


def atc_estimate(model: nn.Module, source_val: Domain, target_X: np.ndarray, device: torch.device | str) -> float:
    """Average thresholded confidence (Garg et al., ICLR 2022): pick t so that the share of source-val
    samples with max-softmax > t equals the source-val accuracy; the estimate is that share on the target."""
    ps = torch.softmax(predict_logits(model, source_val.X, device), 1).numpy()
    pt = torch.softmax(predict_logits(model, target_X, device), 1).numpy()
    return atc_from_probs(ps, source_val.y, pt)


def _prediction_entropy(model: nn.Module, X: np.ndarray, n_classes: int, device: torch.device | str) -> float:
    """Entropy of the histogram of predicted classes, divided by log(n_classes) (1 = all classes equally)."""
    pred = predict_logits(model, X, device).argmax(1).numpy()
    p = np.bincount(pred, minlength=n_classes) / len(pred)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(n_classes))


def min_permutations(level: float) -> int:
    """The fewest permutations B whose smallest p-value, 1/(B + 1), is below ``level`` (with fewer, p < level
    cannot happen)."""
    b = max(0, int(1 / level) - 2)
    while 1 / (b + 1) >= level:
        b += 1
    return b


def _is_fully_connected(model: Backbone, name: str) -> bool:
    return not any(isinstance(m, nn.modules.conv._ConvNd) for m in model.groups[name].modules())


def _warn_if_adapted(meta_file: Path) -> None:
    """The advice reads ``--model`` as the network before adaptation: say so when its run adapted."""
    import json

    try:
        method = json.loads(meta_file.read_text(encoding="utf-8")).get("method")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(method, str) and method != "source-only":
        what = ("on target labels (ORACLE): the advice, which uses no target labels, would rest on them"
                if method == "oracle" else "by an adaptation method: the advice reads it as the source network "
                "before adaptation (its ATC estimate and distances are of an adapted network)")
        warnings.warn(f"advise: the model in {str(meta_file.parent)!r} was trained by {method}, {what}; give a "
                      "source-only run's model", QianyiWarning, stacklevel=3)


def advise(task: TransferTask, model: str | Path | nn.Module | None = None, config: TrainConfig | None = None,
           metrics: Sequence[str] = ("mk-mmd", "a-distance"), samples: int = 1000, permutations: int = 200,
           seed: int = 0, out: str | Path | None = None, log: Callable[[str], None] | None = print,
           run_command: str = "qianyi run", run_flags: str = "") -> Advice:
    """Measure ``task`` and recommend how to transfer (see the module docstring for the rules).

    ``model`` is a trained source network (a module or a saved ``model.pt``); by default one is
    trained source-only with ``config`` (and saved as ``out/source/model.pt`` with ``out``); ``seed`` seeds the
    sampling and, when ``config`` is None, that training (as ``qianyi advise --seed``). On a text
    task the ``input`` representation is the words present (:func:`~qianyi.measure.profile.word_presence`),
    not the token ids. The linear probes are validated on up to ``samples`` random rows of the source validation
    split (seeded). The printed command is ``run_command`` (the CLI adds its ``--data-dir``) with
    ``run_flags``: the settings ``task`` was loaded with (the CLI passes its ``--max-samples``), so that it
    builds the same data (a text task's vocabulary, which the saved network's embedding is sized for).
    """
    metrics = list(dict.fromkeys([*check_metrics(metrics), "a-distance"]))
    check_samples(samples, "samples")
    tokens = bool((task.preprocessing or {}).get("text"))
    # the advisor's own view: labelled source, unlabelled target inputs; the target test split is not kept
    source, source_val, target_X = task.source, task.source_val, task.target.X
    if permutations:  # before training: a test too big for memory is said now, not after the source network
        check_test_memory(min(samples, len(source)), min(samples, len(target_X)))
    cfg = replace(config or TrainConfig(seed=seed), checkpoint_dir=None)
    saved: str | None = None
    if model is None:
        from ..train.artefact import save_model
        from ..train.run import _factory, _for_task, backbone_spec

        blind = TransferTask(source, source_val, Domain(target_X, None, task.target.name),
                             Domain(target_X[:1], None, "(not used)"), task.name, task.preprocessing)
        # the network `qianyi run` trains on this task (a text task's encoder, not the vector MLP)
        spec = _for_task(None, task)
        method = get_method("source-only")
        fit = Trainer(method, cfg, _factory(spec)).fit(blind)
        net: nn.Module = fit.model
        if out is not None:  # model.pt + model.json, as `qianyi run` writes them: load_model and predict read it,
            # and a text model's vocabulary is on record for `--model` / `--init-from`
            (Path(out) / "source").mkdir(parents=True, exist_ok=True)
            save_model(Path(out) / "source", net, blind, method.name, method.hparams(),
                       custom_backbone=spec is not None, backbone_spec=backbone_spec(spec))
            saved = str(Path(out) / "source" / MODEL_FILE)
        if log:
            log(f"  trained a source network ({cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}, {fit.train_seconds:.0f}s): {fit.selection}")
    elif isinstance(model, (str, Path)):
        net = load_weights_for(model, task)
        saved = str(Path(model) / MODEL_FILE) if Path(model).is_dir() else str(model)  # --init-from takes the file
        _warn_if_adapted(Path(saved).parent / "model.json")
    else:
        net = model
    device = next(net.parameters()).device
    n_fc = sum(_is_fully_connected(net, g) for g in net.group_names)
    level = P_SHIFT / max(1, n_fc)  # the level _recommend tests each fully connected layer at
    weak_test = None
    if permutations and 1 / (permutations + 1) >= level:
        need = min_permutations(level)
        weak_test = (f"with {permutations} permutations (--permutations) the smallest p-value is 1/{permutations + 1} "
                     f"= {1 / (permutations + 1):.3g}, not below the level {level:.3g} (0.05 over {n_fc} fully "
                     f"connected layers, Bonferroni): the MMD test cannot mark a layer for adaptation, only PAD can; "
                     f"use {need} permutations or more")
        warnings.warn(f"advise: {weak_test}", QianyiWarning, stacklevel=2)
    rng = np.random.default_rng(seed)
    idx_s = np.sort(rng.permutation(len(source))[:samples])
    xs, ys = torch.as_tensor(source.X[idx_s]), source.y[idx_s]
    xt = torch.as_tensor(target_X[np.sort(rng.permutation(len(target_X))[:samples])])
    # in eval mode; the caller's network then gets each submodule's own mode back (a frozen group stays in eval)
    with evaluating(net):
        # every distance, probe and test below uses these same samples
        profile = layer_profile(net, xs, xt, metrics, max_samples=samples, seed=seed, device=device,
                                label="source network", token_ids=tokens, progress=cfg.progress)
        # the probes' validation rows: a random subset (stored rows can be grouped by class: the first ones may
        # hold a few classes only)
        idx_v = np.sort(rng.permutation(len(source_val))[:samples])
        xv, yv = source_val.X[idx_v], source_val.y[idx_v]
        words = top_words(xs, xt) if tokens else None  # the words the input row compares (text)

        def inputs(x: Any) -> torch.Tensor:
            return presence(x, words) if words is not None else torch.as_tensor(x).reshape(len(x), -1).float()
        probes, pvals = [], []
        from tqdm.auto import tqdm

        for layer in tqdm(profile.layers, desc="probes and tests per layer", unit="layer",
                          disable=None if cfg.progress else True, leave=False):
            fs = inputs(xs) if layer == INPUT else predict_features(net, xs, layer, device)[0]
            fv = inputs(xv) if layer == INPUT else predict_features(net, xv, layer, device)[0]
            probes.append(linear_probe_accuracy(fs, ys, fv, yv, seed))
            if permutations and layer != INPUT and _is_fully_connected(net, layer):  # 0: no test, as in measure
                ft = predict_features(net, xt, layer, device)[0]
                pvals.append(mmd_test(fs, ft, permutations=permutations, max_samples=samples, seed=seed).p_value)
            else:
                pvals.append(None)
        n_classes = task.n_classes
        atc = atc_estimate(net, source_val, target_X, device)
        ent_s = _prediction_entropy(net, source_val.X, n_classes, device)
        ent_t = _prediction_entropy(net, target_X, n_classes, device)
        # the best constant guess on the source: its majority-class rate (beside chance = 1/C, which the rules use)
        majority = float(np.bincount(source.y, minlength=n_classes).max() / len(source.y))
        adv = _recommend(task.name, net, profile, probes, pvals, atc, 1.0 / n_classes, ent_s, ent_t, majority)
    used = min(len(xs), len(xt))
    if used < FEW_SAMPLES:
        adv.recommendations.append(Recommendation(
            "warning", f"the measurements rest on {used} samples per domain (--samples {samples}): the A-distances "
            f"and probe accuracies are coarse and the advice may flip with other samples; use {FEW_SAMPLES} or more",
            f"{len(xs)} source and {len(xt)} target samples"))
        warnings.warn(f"advise: {used} samples per domain make coarse measurements; use --samples {FEW_SAMPLES} or "
                      "more", QianyiWarning, stacklevel=2)
    if weak_test:
        adv.recommendations.append(Recommendation("warning", "the MMD permutation test cannot fire", weak_test))
    adv.source_model = saved
    if saved:
        extra = f" --set layers={','.join(adv.adapt_layers)}" if adv.method == "dan" else ""
        adv.command = (f"{run_command} {adv.method} --source {shlex.quote(task.source.name)} --target "
                       f"{shlex.quote(task.target.name)} --init-from {shlex.quote(saved)} --freeze {adv.freeze}{extra}"
                       f"{' ' + run_flags if run_flags else ''} --out runs/{adv.method}-advised")
    if out is not None:
        adv.write(out)
    return adv


def _recommend(name: str, net: Backbone, profile: LayerProfile, probes: list[float], pvals: list[float | None],
               atc: float, chance: float, ent_s: float, ent_t: float, majority: float | None = None) -> Advice:
    pad = dict(zip(profile.layers, profile.values["a-distance"]))
    pv = dict(zip(profile.layers, pvals))
    groups = list(net.group_names)
    fc = [g for g in groups if _is_fully_connected(net, g)]
    feat = getattr(net, "feature_layer", fc[-2] if len(fc) > 1 else groups[-1])
    level = P_SHIFT / max(1, sum(pv[g] is not None for g in fc))  # Bonferroni
    adapt = [g for g in fc if pad[g] >= PAD_SHIFT or (pv[g] is not None and pv[g] < level)]
    recs: list[Recommendation] = []

    def nums(layers: Sequence[str]) -> str:
        return ", ".join(f"{l} PAD {pad[l]:.2f}" + (f" p {pv[l]:.3g}" if pv.get(l) is not None else "") for l in layers)

    low_level = pad[INPUT] >= PAD_LOW_LEVEL
    entering = [INPUT, *groups[:-1]]  # the representation each group reads
    freeze = 0
    for g, below in zip(groups[:-1], entering):
        if g in adapt or pad[below] > PAD_SHARED:
            break
        freeze += 1
    if not adapt:
        method = "source-only"
        why_m = (f"no fully connected layer shows a measurable shift ({nums(fc)}; thresholds PAD >= {PAD_SHIFT} or "
                 f"p < {level:.3g}): there is nothing left to align")
    elif low_level or pad[feat] >= PAD_LARGE:
        method = "dann"
        why_m = (f"the shift is large (input PAD {pad[INPUT]:.2f}, {feat} PAD {pad[feat]:.2f}; large means input "
                 f">= {PAD_LOW_LEVEL} or features >= {PAD_LARGE}): an adversarial discriminator (DANN) can follow "
                 "shifts that a fixed kernel family misses")
    else:
        method = "dan"
        why_m = (f"the shift is moderate (input PAD {pad[INPUT]:.2f}, {feat} PAD {pad[feat]:.2f}): align the "
                 "adaptation layers with MK-MMD (DAN), a discrepancy with no min-max game")
    collapse = ent_t < COLLAPSE * ent_s
    # "too low": under twice chance, or, with few classes (2: twice chance is 100%), under halfway to 100%
    low_bar = min(2 * chance, (1 + chance) / 2)
    too_far = atc < low_bar or pad[feat] >= PAD_LOW_LEVEL
    far = too_far or collapse
    helps = not far
    verdict = ("likely to help" if helps else "doubtful: the target looks too far" if too_far else
               "uncertain: the target's predictions concentrate on fewer classes (a collapse, or a target whose "
               "classes are less balanced than the source's; only target labels can tell)")
    recs.append(Recommendation(
        "transfer", verdict + f"; ATC estimates the source network at about {100 * atc:.0f}% on the target before "
        "adaptation (an estimate that can be far off under large shifts: +35 points on digits -> digits+rot30, "
        "docs/measure.md)",
        f"ATC estimate {100 * atc:.1f}% vs chance {100 * chance:.1f}% (1/C)"
        + (f" and the source's majority-class rate {100 * majority:.1f}% (what always predicting its largest class "
           "scores on the source)" if majority is not None and majority > chance + 0.05 else "")
        + f"; {feat} PAD {pad[feat]:.2f}; entropy of the predicted-class histogram target {ent_t:.2f} vs source "
        f"{ent_s:.2f} (normalised)"))
    if far:
        recs.append(Recommendation(
            "warning", "risk of negative transfer: compare any adapted model with source-only on a few labelled "
            "target samples before trusting it",
            (f"the ATC estimate is under {100 * low_bar:.0f}% (twice chance, or halfway from chance to 100% with "
             "few classes); " if atc < low_bar else "")
            + (f"{feat} separates the domains almost perfectly (PAD {pad[feat]:.2f} >= {PAD_LOW_LEVEL}); "
               if pad[feat] >= PAD_LOW_LEVEL else "")
            + (f"target predictions concentrate on fewer classes (entropy of their histogram {ent_t:.2f} < "
               f"{COLLAPSE} x {ent_s:.2f}): a collapse, or label shift; " if collapse else "")
            + "aligning unrelated distributions can hurt (Wang et al., CVPR 2019)"))
    kept, stop = groups[:freeze], groups[freeze]
    why_f = ((f"the inputs of {', '.join(kept)} are shared ({nums(entering[:freeze])} <= {PAD_SHARED}); "
              if kept else "") + f"{stop} " + (
        "is the output layer, which is never frozen (it is trained for the target's decision)"
        if stop == groups[-1] and pad[entering[freeze]] <= PAD_SHARED else
        "is an adaptation layer" if stop in adapt and pad[entering[freeze]] <= PAD_SHARED else
        f"reads a representation the domain classifier separates ({entering[freeze]} PAD "
        f"{pad[entering[freeze]]:.2f} > {PAD_SHARED}): frozen, its source-fitted weights and batch-norm "
        "statistics would stay wrong for the target, so it and everything above it adapt"))
    recs.append(Recommendation("freeze", f"the first {freeze} layer group(s)" + (f" ({', '.join(groups[:freeze])})"
                               if freeze else "") + ", initialised from the source network", why_f))
    recs.append(Recommendation("adapt", ", ".join(adapt) if adapt else "none",
                               f"fully connected layers with a measurable shift: {nums(fc)}"))
    recs.append(Recommendation("method", method, why_m))
    best = int(np.argmin([(1 - a) + pad[l] / 2 for l, a in zip(profile.layers, probes)]))
    recs.append(Recommendation(
        "most transferable representation", profile.layers[best],
        f"lowest e_S + PAD/2 = {(1 - probes[best]) + pad[profile.layers[best]] / 2:.3f} (probe source accuracy "
        f"{100 * probes[best]:.1f}%, PAD {pad[profile.layers[best]]:.2f}; Ben-David et al. 2010)"))
    return Advice(name, freeze, method, adapt, helps, far, atc, chance, profile, probes, pvals, recs)
