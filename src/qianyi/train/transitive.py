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

import contextlib
import hashlib
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .._io import atomic_write, write_text
from .._report import md_cell
from ..data.domain import Domain, TransferTask
from ..errors import CheckpointError, ConfigError, DataError, QianyiWarning, TrainingError
from ..methods.base import Method
from ..methods.registry import get_method
from .config import TrainConfig
from .engine import FitResult
from .result import MODEL_FILE, RESULT_FILE, RunResult
from . import distributed
from .run import ORACLE_KEY, BackboneSpec, clear_failure, record_failure, run, run_fingerprint
from .rundir import hold
from .weights import STARTING_MODEL_KEYS, check_starting_model, starting_model_record

#: ``mode``: adapt through the intermediate domains one after another, to all of them pooled at once, or to
#: stepping stones selected from them round by round (:func:`select_stepping_stones`), then to the target.
VIA_MODES = ("gradual", "all", "select")
#: ``mode="select"``: rounds, and the share of the pool selected in the last round (rounds grow to it evenly).
SELECT_ROUNDS, SELECT_MAX = 4, 0.5
SELECTION_FILE = "selection.npz"


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
    #: ``mode="select"``: the share of each pool domain selected for this stage.
    selected: dict[str, float] | None = None

    def row(self) -> dict[str, Any]:
        last = self.result.history[-1] if self.result.history else {}
        return {"stage": self.index, "name": self.name, "method": self.method,
                "adapts_to": "– (source only)" if self.method == "source-only" else self.domain,
                "samples": self.result.n_source if self.method == "source-only" else self.n_target,
                "pseudo_share": last.get("pseudo_share"),
                "target_top_share": last.get("target_top_share"), "source_val_acc": self.result.source_accuracy,
                "oracle_target_acc": last.get(ORACLE_KEY),
                "selected": None if self.selected is None else
                "; ".join(f"{k} {100 * v:.0f}%" for k, v in self.selected.items())}


def _pooled(domains: Sequence[Domain], name: str) -> Domain:
    return Domain(np.concatenate([np.asarray(d.X) for d in domains]), None, name, class_names=domains[0].class_names)


def refuse_own_network(method: Method | type[Method]) -> None:
    """Refuse staging (``--via``, a source stage first) a method that trains a network of its own
    (``trains_own_network``): each stage starts from the previous stage's network, which it never trains."""
    own = getattr(method, "trains_own_network", "")
    if own:
        raise ConfigError(f"{method.name} trains {own}, not the engine's network, so --via stages (each starting from "
                          "the previous stage's network) cannot carry it from stage to stage; leave --via out (to "
                          "adapt to more unlabelled data, give it as the target)")


def run_via(method: str, task: TransferTask, via: Sequence[Domain], config: TrainConfig | None = None,
            out: str | Path | None = None, mode: str = "gradual", track_target_test: bool = False,
            backbone: BackboneSpec | None = None, rounds: int = SELECT_ROUNDS, select_max: float = SELECT_MAX,
            novelty: bool = False, **hparams: Any) -> tuple[RunResult, list[Stage]]:
    """Train ``method`` from ``task.source`` to ``task.target`` through the unlabelled domains ``via``
    (in order); return the final stage's result and every stage.

    ``via`` domains must already be in the task's input form (:func:`qianyi.data.load_via`). Their
    labels, if any, are dropped. ``track_target_test`` records each stage's accuracy on the final
    target's test split (``oracle_target_acc``, reports only; nothing is chosen on it).

    ``mode="select"`` treats ``via`` as one mixed pool (useful and irrelevant data alike): ``rounds``
    stages each adapt to the pool samples :func:`select_stepping_stones` chooses with the previous
    stage's network, next to the data that stage adapted to (the source before the first round; a
    growing share, up to ``select_max`` of the pool), then a final stage adapts to the target. Each round's choice is saved (``selection.npz``) and reported
    per pool domain (``OUT/selection.png``). ``novelty``: the selection also weighs each pool sample's
    reconstruction error under an autoencoder trained on the source and target inputs only
    (:func:`reconstruction_errors`; DDTL's selective learning).
    """
    if rounds < 1 or not 0 < select_max <= 1:
        raise DataError(f"rounds must be >= 1 and select_max in (0, 1], got {rounds} and {select_max}")
    if mode not in VIA_MODES:
        raise DataError(f"via mode must be one of {', '.join(VIA_MODES)}, got {mode!r}")
    if mode != "gradual" and not via:
        raise ConfigError(f"via mode {mode!r} chooses among or pools the --via domains, and none were given; "
                          "give --via DOMAIN ... (or leave --via-mode out)")
    config = config or TrainConfig()
    asked = get_method(method, **hparams)  # refuses a bad method or setting before any stage trains
    if getattr(asked, "shallow", False):  # each stage would fit afresh: the chain would change nothing
        raise ConfigError(f"{method} is a shallow method: it fits once on the source and an unlabelled target sample "
                          "and carries no model from stage to stage, so --via stages would not change it; to fit it "
                          "on more unlabelled data, give it as the target")
    refuse_own_network(asked)
    if via and (not asked.uses_target or asked.uses_target_labels):
        raise ConfigError(f"{method} " + ("never reads the domain it adapts to" if not asked.uses_target else
                                          "trains on target labels, and the --via domains have none")
                          + ", so --via stages would train it again and again on the same data; leave --via out, "
                            "or give a method that adapts to unlabelled data (dann, dan, self-train, ...)")
    for d in via:  # (the CLI's load_via prepares them; a Python caller may not have)
        if tuple(d.sample_shape) != tuple(task.sample_shape):
            raise DataError(f"via domain {d.name!r} has samples of shape {tuple(d.sample_shape)}, the task "
                            f"{tuple(task.sample_shape)}; bring it to the task's input form with "
                            "qianyi.data.load_via(SPEC, task) (the canvas, column order and scaling of the task)")
        if task.is_image and len(d) and float(np.max(d.X)) > 1.5 >= float(np.max(task.source.X)):
            raise DataError(f"via domain {d.name!r} has pixel values up to {float(np.max(d.X)):g}, the task's lie "
                            "in [0, 1]: prepare it with qianyi.data.load_via(SPEC, task) (or divide by 255)")
    # (a user's starting model that saw the target's labels: refused before any stage trains, the stages' own
    # models record this task's source)
    check_starting_model(config.init_from, task)
    first_freeze = config.freeze  # what a stage 0 trained from no model keeps fixed
    if config.freeze:  # (checked now: a later stage would refuse it after stage 0 trained)
        from .engine import check_freeze

        net = _network_for(task, backbone, asked)
        check_freeze(config.freeze, net.group_names)
        if config.init_from is None:
            first_freeze = _pretrained_freeze(net, config.freeze)
    # (a recognisable name: a run killed beyond clean-up, SIGKILL or the OOM killer, leaves its stages there)
    tmp = tempfile.TemporaryDirectory(prefix=STAGES_TMP_PREFIX) if out is None else None
    root = Path(out) if out is not None else Path(tmp.name)  # type: ignore[union-attr]
    # (name, method, what the stage adapts to: a domain, or a function of the previous stage's network)
    plan: list[tuple[str, str, Domain | Callable[[nn.Module, Path, Domain], tuple[Domain, dict[str, float]]]]] = []
    start = config.init_from
    unlabelled = [d.replace(y=None) for d in via]
    if start is None:  # the starting model: source-only, or the method's ``pretrain`` (self-train pretrain=dann)
        first = getattr(asked, "pretrain", "source-only")
        # an aligned first stage adapts to the first domain of the chain; source-only keeps task.target, as
        # its stored stages were fingerprinted with it (it never reads the target)
        plan.append(("source", first, unlabelled[0] if mode == "gradual" and unlabelled and first != "source-only"
                     else task.target))
    if mode == "gradual":
        plan += [(f"via-{d.name}", method, d) for d in unlabelled]
    elif mode == "all" and unlabelled:
        plan.append(("via-all", method, _pooled([*unlabelled, task.target], "all unlabelled (via + target)")))
    elif mode == "select" and unlabelled:
        pool = _pooled(unlabelled, "pool")
        groups = np.concatenate([np.full(len(d), i) for i, d in enumerate(unlabelled)])
        names = [d.name for d in unlabelled]
        cache: list[np.ndarray] = []

        def errors() -> np.ndarray:  # computed once, when a round first needs it (not for finished rounds)
            if not cache:
                cache.append(reconstruction_errors(np.concatenate([task.source.X, task.target.X]), pool.X,
                                                   seed=config.seed))
            return cache[0]

        for r in range(1, rounds + 1):
            fraction = select_max * r / rounds
            plan.append((f"select-{r}", method, _selector(task, pool, groups, names, fraction,
                                                          errors if novelty else None)))
    repeats = int(getattr(asked, "iterations", 1))
    if repeats > 1 and mode == "all" and unlabelled:
        raise ConfigError(f"{method}: iterations={repeats} repeats the target stage, which --via-mode all replaces by "
                          "one stage on everything pooled; use --via-mode gradual or select, or iterations=1")
    if mode != "all" or not unlabelled:
        # iterated self-training: the target stage again, each student the next teacher (one run each)
        plan += [(f"target-{r}", method, task.target) for r in range(1, repeats)]
        plan.append(("target", method, task.target))
    if out is not None:
        _check_same_chain(root, [_stage_folder(i, name) for i, (name, _, _) in enumerate(plan[:-1])])
    stages: list[Stage] = []
    previous: Domain = task.source
    # the whole staged run holds its --out (a run of another method took it between stages)
    lock = hold(root) if out is not None and distributed.is_main() else contextlib.nullcontext()
    try:
        with lock, _failure_told(root if out is not None and distributed.is_main() else None, asked, task,
                                 config.seed, lambda: plan[len(stages)][0] if len(stages) < len(plan) else None):
            for i, (name, m, what) in enumerate(plan):
                last = i == len(plan) - 1
                folder = root if last else root / _stage_folder(i, name)
                selected = None
                if callable(what):  # stepping stones chosen by the previous stage's network (or the starting one)
                    prev = stages[-1].fit.model if stages and stages[-1].fit is not None else \
                        _starting_network(task, str(start), backbone, asked)
                    # anchors: what the previous stage adapted to (the source before the first round)
                    seen = task.source if not stages or stages[-1].name == "source" else previous
                    domain, selected = what(prev, folder, seen)
                else:
                    domain = what
                # an intermediate stage is scored on the final target's test split (its own domain has no labels):
                # its name says so, in warnings and logs
                stage_task = task if domain is task.target else replace(
                    task, target=domain, name=f"{task.source.name}->{domain.name} (scored on {task.target.name}'s test)")
                cfg = replace(config, init_from=start)
                if start is None:  # stage 0 from no model: nothing copied; the pretrained groups stay frozen
                    cfg = replace(cfg, init_layers=None, freeze=first_freeze)
                elif start != config.init_from:  # a previous stage's model: all of it (--init-layers is for the user's)
                    cfg = replace(cfg, init_layers=None)
                hp = hparams if m == method else {}
                if not last and "iterations" in hp:  # an earlier round is one plain round (the run records the total)
                    hp = {**hp, "iterations": 1}
                # a finished stage is reused (or resumes from its last checkpoint at once: nothing trains again)
                reused = _finished_last(root, stages, m, stage_task, cfg, backbone, hp,
                                        run_fingerprint(asked, config, task, backbone) if not via else None) \
                    if last and out is not None else None
                try:
                    result, fit = reused or run(m, stage_task, cfg, out=folder, track_target_test=track_target_test,
                                                backbone=backbone, single_stage=True, **hp)
                except CheckpointError as exc:  # deleting that one checkpoint would only move the error to the next stage
                    if out is None:
                        raise
                    raise CheckpointError(f"{exc}. It is stage {i} ({name}) of the staged run in {str(root)!r}: give "
                                          f"another --out, or delete {str(root)!r} to train every stage afresh") from None
                # (a reused run keeps the names it was trained under: its paths spelt as then)
                spelt = ((result.source, result.target), {k: result.fingerprint[k] for k in ("source", "target")}) \
                    if reused and result.fingerprint else None
                stages.append(Stage(i, name, m, domain.name, len(domain), result, fit, selected))
                previous = domain
                start = str(folder / MODEL_FILE)
            _as_one_run(stages, task, via, mode, asked, config, backbone)
            if spelt is not None and stages[-1].result.fingerprint:
                final = stages[-1].result
                (final.source, final.target), final.fingerprint = spelt[0], {**final.fingerprint, **spelt[1]}
            if out is None:  # its stages trained in a temporary folder, removed since: the starting model is the
                final = stages[-1].result  # user's (or none)
                final.config = {**{k: v for k, v in final.config.items() if k not in STARTING_MODEL_KEYS.values()},
                                "init_from": config.init_from, **starting_model_record(config.init_from)}
            if out is not None and distributed.is_main():
                stages[-1].result.save(root)
                write_stages(root, stages)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return stages[-1].result, stages


@contextlib.contextmanager
def _failure_told(root: Path | None, method: Method, task: TransferTask, seed: int,
                  stage: Callable[[], str | None]) -> Iterator[None]:
    """A staged run in ``root``: an earlier failure there is cleared; a stage that diverges is said in ``root``
    (failed.json, naming the stage), as a single run's is, so the whole run reads as diverged, not killed."""
    if root is not None:
        clear_failure(root)
    try:
        yield
    except TrainingError as exc:
        if root is not None:
            record_failure(root, method, {}, task, seed, exc, stage=stage())
        raise


#: The prefix of the temporary folder a staged run without ``out`` trains its stages in.
STAGES_TMP_PREFIX = "qianyi-stages-"


def _finished_last(root: Path, stages: list[Stage], method: str, task: TransferTask, config: TrainConfig,
                   backbone: BackboneSpec | None, hparams: dict[str, Any], whole: dict[str, Any] | None
                   ) -> tuple[RunResult, FitResult] | None:
    """The last stage of a finished staged run in ``root``, from the whole run's result.json (which
    :func:`_as_one_run` made of it) and model.pt, when its earlier stages are those now in ``stages`` (their
    models' hashes) and its fingerprint is ``whole`` (None: the last stage's own, as with --via); else None (the
    stage runs, or resumes its checkpoint)."""
    from .checkpoint import FILENAME, SPELLING, same_run
    from .run import _health_warnings, model_names, reloaded
    from .store import finished

    if (root / FILENAME).exists():
        return None
    m = get_method(method, **hparams)
    own_fp = run_fingerprint(m, config, task, backbone)
    want, names = whole if whole is not None else own_fp, model_names(task, backbone)
    done = finished(root, want, names)
    if done is None and (root / RESULT_FILE).is_file():  # the same data, its specs' paths spelt otherwise (another
        try:  # working folder), as finished_run finds a single run
            saved = RunResult.read(root / RESULT_FILE)
        except DataError:
            saved = None
        if saved is not None and saved.fingerprint and same_run(saved.fingerprint, json.loads(json.dumps(want))):
            done = finished(root, saved.fingerprint, names)
            if done is not None:  # reused as it was trained: its names and fingerprint spelt as then
                own_fp = {**own_fp, **{k: saved.fingerprint[k] for k in SPELLING}}
    recorded = (done.staged or {}).get("stages") if done is not None else None
    if not recorded or len(recorded) != len(stages) + 1 \
            or [s.get("model_sha256") for s in recorded[:-1]] != [s.result.model_sha256 for s in stages]:
        return None
    earlier = sum(len(s.result.flags) for s in stages)  # the whole run's flags: the last stage's, then theirs
    own = replace(done, train_seconds=recorded[-1].get("train_seconds", done.train_seconds), staged={},
                  fingerprint=own_fp, flags=list(done.flags[:len(done.flags) - earlier]))
    _health_warnings(m, task, config, root, own)
    return own, reloaded(m, task, config, root, backbone, own)


def _as_one_run(stages: list[Stage], task: TransferTask, via: Sequence[Domain], mode: str, asked: Any,
                config: TrainConfig, backbone: BackboneSpec | None) -> None:
    """The last stage's result as the whole run's: ``S -> T`` (not the pooled domain of ``--via-mode all``), the
    stages it went through (each with its own ``train_seconds``; the run's is their sum: what the result cost),
    their health flags; without intermediate domains (self-training from its own starting
    model) the fingerprint as asked, so a store (bench, select) finds a run the CLI made, and the other way round."""
    final = stages[-1].result
    final.target = task.target.name
    counts: set[int] = set()  # the thread counts of every stage's steps, not only the last stage's
    for st in stages:
        t = (st.result.versions or {}).get("threads")
        counts.update(t if isinstance(t, list) else [t] if isinstance(t, int) else [])
    if counts and final.versions is not None:
        final.versions = {**final.versions, "threads": min(counts) if len(counts) == 1 else sorted(counts)}
    codes: dict[str, None] = {}  # the code digests of every stage's steps, oldest first (as one run's resumes)
    for st in stages:
        v = st.result.versions or {}
        codes.update(dict.fromkeys(c for c in (v.get("codes") or [v.get("code")]) if isinstance(c, str)))
    if final.versions is not None and list(codes) not in ([], [final.versions.get("code")]):
        final.versions = {**final.versions, "codes": list(codes)}
    if not via:
        final.fingerprint = run_fingerprint(asked, config, task, backbone)
    final.staged = {"via": [d.name for d in via], "mode": mode if via else None,
                    "stages": [{"name": s.name, "method": s.method, "adapts_to": s.row()["adapts_to"],
                                "folder": "." if s is stages[-1] else _stage_folder(s.index, s.name),
                                "model_sha256": s.result.model_sha256, "train_seconds": s.result.train_seconds}
                               for s in stages]}
    final.train_seconds = round(sum(s.result.train_seconds for s in stages), 3)
    final.flags = [*final.flags, *(f"stage {s.index} ({s.name}): {f}" for s in stages[:-1] for f in s.result.flags)]


def _pretrained_freeze(net: nn.Module, freeze: int) -> int:
    """How many of the first ``freeze`` layer groups a stage 0 trained from no model keeps fixed: those ``net``
    brings pretrained (``pretrained_groups``: a named backbone's with weights, a text E with vectors=minilm; all of
    a network of your own, which may hold any weights), as a single-stage run does; random ones train there (they
    are frozen from the next stage on). A pretrained group after a random one cannot be frozen alone: refused."""
    known = getattr(net, "pretrained_groups", None)
    if known is None:
        return freeze
    frozen = list(net.group_names[:freeze])
    random = [g for g in frozen if g not in known and any(True for _ in net.groups[g].parameters())]
    k = frozen.index(random[0]) if random else freeze
    later = [g for g in frozen[k:] if g in known]
    if later:
        raise ConfigError(f"freeze={freeze} keeps {frozen} fixed, and stage 0 (trained from no model: no --init-from) "
                          f"must train the random {random} before them while keeping the pretrained {later} fixed, "
                          f"which --freeze (the first groups) cannot say; give --freeze {k}, or --init-from MODEL.pt "
                          "to start from a trained model")
    return k


def _starting_network(task: TransferTask, init_from: str, backbone: BackboneSpec | None, method: Any = None
                      ) -> nn.Module:
    """The network a run given ``init_from`` starts from (every layer group copied), built as the run builds it
    (a text task's encoder, count vectors' transform)."""
    from .weights import load_initial_weights

    net = _network_for(task, backbone, method)
    load_initial_weights(net, init_from, None, vocab=((task.preprocessing or {}).get("text") or {}).get("vocab"))
    return net.eval()


def _network_for(task: TransferTask, backbone: BackboneSpec | None, method: Any = None) -> nn.Module:
    """A fresh network as a stage of ``task`` builds it (a text task's encoder, count vectors' transform)."""
    from .engine import build_network
    from .run import _factory, _for_task

    return build_network(_factory(_for_task(backbone, task, method)), task.sample_shape, task.n_classes,
                         bool((task.preprocessing or {}).get("counts")))


def reconstruction_errors(train: np.ndarray, X: np.ndarray, epochs: int = 20, hidden: int = 64, seed: int = 0,
                          batch_size: int = 128) -> np.ndarray:
    """DDTL's novelty measure: the mean squared reconstruction error of each row of ``X`` under a small
    autoencoder (MLP, flattened inputs -> 256 -> ``hidden`` -> 256 -> inputs, ReLU, Adam) trained on
    ``train`` alone. Data unlike ``train`` reconstruct badly. Deterministic for a ``seed``."""
    train_t = torch.as_tensor(np.asarray(train), dtype=torch.float32).flatten(1)
    x_t = torch.as_tensor(np.asarray(X), dtype=torch.float32).flatten(1)
    if train_t.shape[1] != x_t.shape[1] or not len(train_t):
        raise DataError(f"reconstruction errors: training rows of width {train_t.shape[1]} ({len(train_t)} rows) "
                        f"and rows to score of width {x_t.shape[1]} must match and not be empty")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        d = train_t.shape[1]
        ae = nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, hidden), nn.ReLU(),
                           nn.Linear(hidden, 256), nn.ReLU(), nn.Linear(256, d))
        opt = torch.optim.Adam(ae.parameters(), lr=1e-3)
        for _ in range(epochs):
            for idx in torch.randperm(len(train_t)).split(batch_size):
                loss = ((ae(train_t[idx]) - train_t[idx]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            return torch.cat([((ae(c) - c) ** 2).mean(1) for c in x_t.split(2048)]).numpy()


def select_stepping_stones(net: nn.Module, pool: Domain, anchors: np.ndarray, fraction: float, k: int = 5,
                           device: torch.device | str = "cpu", novelty: np.ndarray | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    r"""Choose the ``fraction`` of ``pool`` most useful as stepping stones for ``net``; no labels are read.

    Each pool sample :math:`x` is scored by the network's uncertainty on it and by how far its features
    lie from the data the network was last adapted to (``anchors``),

    .. math::
        s(x) = \frac{H(p(\cdot|x))}{\log C} + \frac{\bar d_k(x)}{\operatorname{median}_{x'} \bar d_k(x')}

    (:math:`H` the entropy of the predicted classes, :math:`\bar d_k` the mean distance of the
    ``features`` to the :math:`k` nearest anchors), and the lowest scores are selected. Pool samples
    the network is sure about and that resemble known data come first, so each round reaches a little
    further. This is the selective learning of DDTL (Tan et al., AAAI 2017) with the task network's own
    features in place of a separate autoencoder's reconstruction error, and its prediction-entropy
    side information. ``novelty`` (one value per pool sample, e.g. :func:`reconstruction_errors` of an
    autoencoder trained on the source and target only, as DDTL selects) adds a third term, the same for
    every round, :math:`r(x) / \operatorname{median}_{x'} r(x')`: samples unlike both ends stay out even
    after self-training has made them look familiar to the network. Returns ``(selected indices, scores)``.
    """
    from ..nn.inference import predict_features

    fp, logits = predict_features(net, pool.X, "features", device)
    fa, _ = predict_features(net, anchors, "features", device)
    p = logits.softmax(1)
    h = -(p * p.clamp_min(1e-12).log()).sum(1) / math.log(p.shape[1])
    d = torch.cat([torch.cdist(fp[i:i + 2048], fa).topk(min(k, len(fa)), largest=False).values.mean(1)
                   for i in range(0, len(fp), 2048)])
    score = (h + d / d.median().clamp_min(1e-12)).numpy()
    if novelty is not None:
        novelty = np.asarray(novelty, dtype=np.float64)
        if novelty.shape != (len(pool),):
            raise DataError(f"novelty needs one value per pool sample ({len(pool)}), got shape {novelty.shape}")
        score = score + novelty / max(float(np.median(novelty)), 1e-12)
    n = max(1, int(round(fraction * len(pool))))
    return np.sort(np.argsort(score, kind="stable")[:n]), score


def _selector(task: TransferTask, pool: Domain, groups: np.ndarray, names: list[str], fraction: float,
              novelty: Callable[[], np.ndarray] | None = None
              ) -> Callable[[nn.Module, Path, Domain], tuple[Domain, dict[str, float]]]:
    """A selection round: the pool samples chosen next to what the previous stage adapted to (``seen``);
    the choice is saved in the stage folder (``selection.npz``) and read back when the run resumes."""
    pool_hash = hashlib.sha256(memoryview(np.ascontiguousarray(np.asarray(pool.X))).cast("B")).hexdigest()

    def choose(net: nn.Module, folder: Path, seen: Domain) -> tuple[Domain, dict[str, float]]:
        path = folder / SELECTION_FILE
        chosen = None
        # what the choice depends on: the pool's content, the share, novelty, the choosing network's weights
        h = hashlib.sha256(f"{fraction!r} novelty={novelty is not None} {names!r} {pool_hash}".encode())
        for k, v in net.state_dict().items():
            h.update(k.encode() + v.detach().cpu().contiguous().numpy().tobytes())
        key = h.hexdigest()
        if path.exists():
            with np.load(path, allow_pickle=False) as f:
                saved_key = str(f["key"]) if "key" in f.files else None
                chosen, saved_names, saved_groups = f["selected"], list(f["names"]), f["groups"]
            if saved_key is None and (saved_names != names or not np.array_equal(saved_groups, groups)
                                      or (len(chosen) and int(chosen.max()) >= len(pool))):
                saved_key = "another pool"
            if saved_key is None:  # saved before selections kept a key: the pool checks out, the rest cannot be told
                warnings.warn(f"{path} was saved before selections recorded their settings: reused for this pool "
                              "(--via-novelty, the share of the pool and the starting model cannot be checked)",
                              QianyiWarning, stacklevel=2)
            elif saved_key != key:
                raise DataError(f"{path} holds a selection made by another run (another pool, --via-novelty, share "
                                "of the pool or starting model); give another --out, or delete that folder to choose "
                                "again")
        if chosen is None:
            rng = np.random.default_rng(0)
            anchors = np.asarray(seen.X)[np.sort(rng.choice(len(seen), min(len(seen), 2000), replace=False))]
            device = next(net.parameters()).device
            chosen, score = select_stepping_stones(net, pool, anchors, fraction, device=device,
                                                   novelty=None if novelty is None else novelty())
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda fh: np.savez(fh, selected=chosen, score=score, groups=groups,
                                                   names=np.array(names), key=np.array(key)), mode="wb")
        shares = {n: float(np.isin(np.flatnonzero(groups == g), chosen).mean()) for g, n in enumerate(names)}
        domain = Domain(np.asarray(pool.X)[chosen], None, f"{100 * fraction:g}% of the pool",
                        class_names=task.target.class_names)
        return domain, shares
    return choose


def _check_same_chain(root: Path, planned: list[str]) -> None:
    """Refuse, before any stage trains, an ``out`` that holds a staged run through other stages (another --via
    order, a domain added or dropped, another mode, or the same via data named by another relative path: a stage
    folder's name is its spec as written): its finished stages would not be reused, the new stages
    would be trained next to the old ones, and the last stage would refuse the folder only then."""
    found = sorted(p.name for p in (root / "stages").glob("[0-9][0-9]-*") if p.is_dir()) \
        if (root / "stages").is_dir() else []
    had: list[str] | None = None
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError, KeyError):
        data = json.loads((root / RESULT_FILE).read_text(encoding="utf-8"))
        staged = data.get("staged") or {}  # {}: a run of one stage, or the last stage's own record (killed before
        if not is_bare_last_stage(root, data):  # the staged one was written over it): the stage folders tell
            had = [s["folder"] for s in staged.get("stages", []) if s["folder"] != "."]
    wanted = set(planned)
    if any(f"stages/{name}" not in wanted for name in found) or (had is not None and had != planned):
        before = had if had is not None else [f"stages/{n}" for n in found]
        raise CheckpointError(
            f"{str(root)!r} holds a staged run through other stages ({', '.join(before) or 'none'}) than this one "
            f"({', '.join(planned) or 'none'}): another --via order, domain or mode, or the same --via data named by "
            "another relative path (stage folders are named after the --via specs as written): rerun from the first "
            f"run's working directory or with absolute paths, give another --out, or delete {str(root)!r} to train "
            "every stage afresh")


def is_bare_last_stage(folder: str | Path, result: dict[str, Any]) -> bool:
    """Whether ``result`` (a ``result.json`` read from ``folder``) is the last stage's own record of a staged run in
    ``folder``, not yet replaced by the staged run's (a run killed between the two writes): it started from a model
    in ``folder/stages``. Such a folder is not finished; the staged run resumes there."""
    staged = result.get("staged") if isinstance(result, dict) else None
    start = (result.get("config") or {}).get("init_from") if isinstance(result, dict) else None
    if (isinstance(staged, dict) and staged.get("stages")) or not isinstance(start, str):
        return False
    return Path(os.path.realpath(start)).is_relative_to(os.path.realpath(Path(folder) / "stages"))


def _stage_folder(index: int, name: str) -> str:
    """Where stage ``index`` of a staged run lives, under the run's folder (the last stage is the folder itself)."""
    return f"stages/{index:02d}-{_safe(name)}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


def stages_table(stages: Sequence[Stage]) -> str:
    """The stages as a Markdown table (ORACLE column only when it was recorded)."""
    rows = [s.row() for s in stages]
    oracle = any(r["oracle_target_acc"] is not None for r in rows)
    sel = any(r["selected"] is not None for r in rows)

    def pct(v: Any) -> str:
        return "–" if v is None else f"{100 * v:.1f}"
    head = "| stage | adapts to | method | samples | pseudo-labelled | target top class | source val acc |"
    head += " pool selected, by domain |" if sel else ""
    head += " target acc after stage (ORACLE, reports only) |" if oracle else ""
    lines = [head, "|" + "---|" * (7 + sel + oracle)]
    for r in rows:
        line = (f"| {r['stage']} {md_cell(r['name'])} | {md_cell(r['adapts_to'])} | {r['method']} | {r['samples']} | "
                f"{pct(r['pseudo_share'])} | {pct(r['target_top_share'])} | {pct(r['source_val_acc'])} |")
        line += f" {md_cell(r['selected'] or '–')} |" if sel else ""
        lines.append(line + (f" {pct(r['oracle_target_acc'])} |" if oracle else ""))
    return "\n".join(lines)


def write_stages(out: Path, stages: Sequence[Stage]) -> list[Path]:
    """``stages.csv``, ``stages.md`` and ``stages.png`` in ``out``."""
    from .._report import save_figure, subplots

    import csv
    import io

    rows = [s.row() for s in stages]
    cols = list(rows[0])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")  # (a name with a comma, e.g. fsdd?speaker=a,b, stays one cell)
    writer.writerow(cols)
    writer.writerows([["" if r[c] is None else str(r[c]) for c in cols] for r in rows])
    paths = [write_text(out / "stages.csv", buf.getvalue()), write_text(out / "stages.md", stages_table(stages) + "\n")]
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
    rounds = [s for s in stages if s.selected is not None]
    if rounds:  # which pool domains each round chose
        fig, ax = subplots(figsize=(5.5, 3.4))
        for name in rounds[0].selected or {}:
            ax.plot([s.index for s in rounds], [100 * (s.selected or {})[name] for s in rounds], "o-", label=name)
        ax.set_xlabel("stage")
        ax.set_ylabel("% of the domain selected")
        ax.set_title("stepping stones chosen from the pool (no labels)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(save_figure(fig, out / "selection.png"))
    return paths
