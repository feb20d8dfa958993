"""One run = train a method on a task, then score it once on the target test split."""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import platform
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import torch
from torch import nn

from .. import __version__
from .._io import atomic_write, sha256_file, write_json
from ..data.domain import TransferTask
from ..methods.base import Method
from ..methods.registry import available_methods, get_method
from ..errors import CheckpointError, ConfigError, DataError, OutputError, QianyiWarning, TrainingError
from ..nn.backbones import Backbone, backbone_for
from ..nn.inference import accuracy, class_report, report_from_predictions
from ..nn.resnet import NamedBackbone
from ..nn.text import ENCODER_TOKENIZERS, TEXT_ENCODERS, TextEncoder
from ..select import score_all
from .artefact import preprocessing_digest, save_model
from .config import TrainConfig
from .checkpoint import FILENAME, describe_differences, same_run
from .engine import FitResult, Monitor, Trainer, TrainData, check_network_settings
from .health import chance_warning, shallow_flags
from .result import FAILED_FILE, HISTORY_FILE, MODEL_FILE, RESULT_FILE, RunResult, write_history_csv
from . import distributed
from .rundir import check_out, hold
from .store import code_digest, finished
from .trackers import Trackers, open_trackers, status_of

__all__ = ["MODEL_FILE", "RESULT_FILE", "RunResult", "run", "run_fingerprint"]

#: History key of the per-epoch target-test accuracy that ``track_target_test`` records (reports only).
ORACLE_KEY = "oracle_target_acc"
#: A network of your own: a Backbone, a factory ``(sample_shape, n_classes) -> Backbone``, or the name
#: of one of qianyi's networks (:data:`qianyi.nn.resnet.BACKBONES`, e.g. ``"resnet50"``).
BackboneSpec = Union[Backbone, Callable[[tuple[int, ...], int], Backbone], str]
#: Label-free scores every run without a labelled target test reports (ATC estimates the accuracy).
UNLABELLED_REPORT = ("atc", "source-val", "entropy", "snd")


def _say_reused(m: Method, task: TransferTask, config: TrainConfig, out: Path) -> None:
    """On stderr (process 0): that the finished run in ``out`` is reused, and, with ``config.log_to``, that its
    trackers get nothing (a run is logged while it trains)."""
    if not distributed.is_main():
        return
    if config.progress:
        print(f"{m.name} {task.name} seed {config.seed}: finished earlier, reused ({out / RESULT_FILE})",
              file=sys.stderr, flush=True)
    if config.log_to:
        print(f"{m.name} {task.name} seed {config.seed}: reused, so nothing is logged to {', '.join(config.log_to)} "
              "(a run is logged while it trains; another --out trains and logs it again)", file=sys.stderr, flush=True)


def run(method: str | Method, task: TransferTask, config: TrainConfig | None = None,
        out: str | Path | None = None, track_target_test: bool = False, backbone: BackboneSpec | None = None,
        *, single_stage: bool = False, **hparams: Any) -> tuple[RunResult, FitResult]:
    """Train ``method`` on ``task`` and score it; with ``out``, checkpoint there, resume, write result.json.

    A finished run's checkpoint is deleted once result.json is written (``config.keep_checkpoint`` keeps it); a rerun
    into the same ``out`` reuses result.json and model.pt (model.pt's hash checked) instead of training again.

    ``backbone``: a network of your own instead of qianyi's default (a :class:`~qianyi.nn.Backbone`,
    e.g. from :func:`qianyi.nn.as_backbone`, or a factory ``(sample_shape, n_classes) -> Backbone``),
    or a named one: ``"resnet18"``, or ``NamedBackbone("resnet50", weights=PATH)`` for ImageNet weights
    (:mod:`qianyi.nn.resnet`). A named backbone is recorded in model.json, so :func:`load_model`
    rebuilds it, and in the run's fingerprint.

    A method that needs a trained starting model (``self-train`` without ``config.init_from``) or runs
    several rounds (``self-train`` with ``iterations`` > 1) trains its stages through
    :func:`~qianyi.train.transitive.run_via` (``out/stages/``); ``single_stage`` (used by ``run_via``)
    trains exactly one stage.

    ``track_target_test`` records each epoch's target-test accuracy in the history (key
    ``oracle_target_acc``) so that reports can show what an oracle choice of epoch would give; the
    engine never reads it, and the model is chosen by ``config.select`` alone.

    >>> res, fit = run("dann", load_task("mnist", "digits"), TrainConfig(epochs=10))  # doctest: +SKIP
    """
    if not isinstance(task, TransferTask):
        raise ConfigError(f"task must be a TransferTask, got {type(task).__name__} {str(task)[:60]!r}; build one with "
                          "qianyi.load_task(SOURCE, TARGET) (e.g. load_task('mnist', 'digits'))")
    if config is not None and not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}"
                          + ("; write TrainConfig(**settings)" if isinstance(config, dict) else ""))
    if out is not None and (Path(out) / "proxy.json").exists():
        raise OutputError(f"--out {str(out)!r} holds a `qianyi proxy` model and its results; choose a folder of its "
                          "own for the run")
    distributed.init_from_env((config or TrainConfig()).device)  # under torchrun: join the process group
    task = _tokenised_for(backbone, task)
    cls = type(method) if isinstance(method, Method) else available_methods().get(method)
    hp = {**method.hparams(), **hparams} if isinstance(method, Method) else hparams
    staged = getattr(cls, "needs_source_model", False)  # self-training from a teacher: it may run in stages
    if not single_stage and staged and (not (config or TrainConfig()).init_from or int(hp.get("iterations", 1)) > 1):
        # a method that starts from a trained source model (self-training's teacher): train that first; and
        # iterated self-training: one stage per teacher -> student round
        from .transitive import run_via

        name = method.name if isinstance(method, Method) else method
        _, stages = run_via(name, task, [], config, out=out, track_target_test=track_target_test, backbone=backbone,
                            **hp)
        result, fit = stages[-1].result, stages[-1].fit  # (with the fingerprint as asked: run_via's _as_one_run)
        assert fit is not None
        if out is None:  # its stages trained in a temporary folder, removed since: not named as its starting model
            result.config = {**result.config, "init_from": (config or TrainConfig()).init_from}  # (as asked; the
            # stages it went through are in result.staged)
        return result, fit
    out_named = not single_stage  # its warnings name the folder (a stage's may be a temporary one: not said)
    if out is None:
        return _run(method, task, config, None, track_target_test, backbone, hparams)
    if not distributed.is_main():  # process 0 holds the folder and writes; the others read its checkpoint
        return _run(method, task, config, check_out(out).resolve(), track_target_test, backbone, hparams, out_named,
                    single_stage)
    with hold(out) as path:  # checked before training, and held: a second process on it stops
        clear_failure(path)
        try:
            return _run(method, task, config, path, track_target_test, backbone, hparams, out_named, single_stage)
        except TrainingError as exc:  # it diverged: say why in its folder (a report or a bench's tables read it)
            record_failure(path, method, hparams, task, (config or TrainConfig()).seed, exc)
            raise


def clear_failure(folder: Path) -> None:
    """A run starting in ``folder``: an earlier run's failure there (:data:`FAILED_FILE`) is no longer its state."""
    with contextlib.suppress(OSError):
        (folder / FAILED_FILE).unlink(missing_ok=True)


def record_failure(folder: Path, method: str | Method, hparams: dict[str, Any], task: TransferTask, seed: int,
                   exc: Exception, stage: str | None = None) -> None:
    """Say in ``folder`` (:data:`FAILED_FILE`) why its run stopped: the error, and the method, settings, pair and
    seed it was (so a bench folder read again tabulates it as diverged). An account only: never raises."""
    with contextlib.suppress(Exception):
        m = method if isinstance(method, Method) else get_method(method, **hparams)
        write_json(folder / FAILED_FILE, {
            "error": type(exc).__name__, "message": str(exc), "method": m.name,
            "hparams": json.loads(json.dumps(m.hparams(), default=str)), "revision": m.revision,
            "source": task.source.name, "target": task.target.name, "seed": seed,
            **({"stage": stage} if stage is not None else {})})


def _versions(threads: list[int] | None = None, method: Method | None = None,
              codes: list[str] | None = None) -> dict[str, Any]:
    """What made a run's numbers besides its settings: the code (``code``: this install's digest, which wrote the
    result; ``codes``, only when a resumed checkpoint was made by other code: every digest its steps were trained
    under, oldest first), the libraries, and the CPU threads (those its steps trained with: a list when a resume
    changed them) and instruction set (sums split over threads, or vectorised otherwise, add in another order:
    bit-identical reruns need the same ones)."""
    used = [torch.get_num_threads()] if threads is None else threads
    code = code_digest(method)
    return {"qianyi": __version__, "code": code, **({"codes": list(codes)} if codes and codes != [code] else {}),
            "torch": torch.__version__,
            "python": platform.python_version(), "threads": used[0] if len(used) == 1 else (used or None),
            "cpu": f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}"}


def _for_task(backbone: BackboneSpec | None, task: TransferTask, method: Method | None = None
              ) -> BackboneSpec | None:
    """A text task's encoder, sized for its vocabulary, in place of the default network (the ``method``'s own
    ``text_encoder`` if it has one: AMN's memory network) or of a text encoder named by ``backbone``
    (``"textcnn"``); anything else as it is."""
    text = (task.preprocessing or {}).get("text")
    if backbone is None and method is not None and text is not None:
        backbone = getattr(method, "text_encoder", None)
    name = backbone.name if isinstance(backbone, NamedBackbone) else backbone
    if text is not None and isinstance(name, str) and name not in TEXT_ENCODERS:  # (a network of your own: yours)
        raise ConfigError(f"--backbone {name} on a text task would read its token ids as numbers, not as words; "
                          f"leave --backbone out or name a text network: {', '.join(TEXT_ENCODERS)}")
    if text is None or not (backbone is None or (isinstance(name, str) and name in TEXT_ENCODERS)):
        return backbone
    return TextEncoder.for_task(text, name)


def _tokenised_for(backbone: BackboneSpec | None, task: TransferTask) -> TransferTask:
    """A text task tokenised as the text encoder ``backbone`` names needs it (minilm: its WordPiece ids, from the
    task's raw texts); anything else as it is. Computed once per task and tokenizer, kept on ``task`` as its
    content hash is (bench and select ask for it per method and seed: each asking re-tokenised every split)."""
    name = getattr(backbone, "name", backbone) if isinstance(backbone, (NamedBackbone, TextEncoder)) else backbone
    need = ENCODER_TOKENIZERS.get(name) if isinstance(name, str) else None
    if need is None or (task.preprocessing or {}).get("text") is None:
        return task
    from ..data.text import retokenize_task

    cache = task.__dict__.get("_tokenised")
    if cache is None:
        cache = {}
        object.__setattr__(task, "_tokenised", cache)  # (a frozen dataclass)
    if need not in cache:
        cache[need] = retokenize_task(task, tokenizer=need)
    return cache[need]


def _factory(backbone: BackboneSpec | None) -> Callable[[tuple[int, ...], int], Backbone]:
    if backbone is None:
        return backbone_for
    if isinstance(backbone, str):
        return NamedBackbone(backbone)
    if isinstance(backbone, Backbone):  # each run trains a copy: the instance (its weights the start) is left as given
        factory = lambda shape, n_classes: _as_given(copy.deepcopy(backbone))  # noqa: E731
        factory.instance = backbone  # its weights are part of the runs' key (custom_network_key)
        return factory
    if isinstance(backbone, nn.Module):
        raise DataError(f"backbone: a {type(backbone).__name__} has no named layer groups; wrap it with "
                        "qianyi.nn.as_backbone(module) first, which runs its children in order with nothing "
                        "between them (its own forward is not run: F.relu or torch.flatten written in forward "
                        "must become modules, nn.ReLU() or nn.Flatten(), e.g. in an nn.Sequential)")
    return backbone


def _as_given(network: Backbone) -> Backbone:
    """A network instance of yours: its weights may be anything you put there (so ``freeze`` may keep them)."""
    network.pretrained_groups = None
    return network


def backbone_spec(backbone: BackboneSpec | None) -> dict[str, Any] | None:
    """What names a backbone (:class:`~qianyi.nn.resnet.NamedBackbone` or a network it built), else None."""
    if isinstance(backbone, str):
        backbone = NamedBackbone(backbone)
    spec = getattr(backbone, "spec", None) if backbone is not None else None
    return dict(spec) if isinstance(spec, dict) else None


def _resumed_from(fit: FitResult, out: Path | None) -> int:
    """The step the run's training resumed from: a rerun of a finished run trains no step, and keeps what its
    result.json said (0 when it was trained in one go), not its own last step."""
    if fit.resumed_from_step < fit.steps or out is None or not (out / RESULT_FILE).is_file():
        return fit.resumed_from_step
    try:
        return RunResult.read(out / RESULT_FILE).resumed_from_step
    except DataError:  # a damaged result.json: this run's own account
        return fit.resumed_from_step


def run_fingerprint(method: Method, config: TrainConfig, task: TransferTask,
                    backbone: BackboneSpec | None = None) -> dict[str, Any]:
    """The fingerprint a run of ``method`` on ``task`` with ``backbone`` records (and a store looks up):
    a named backbone is told apart by its spec (name, bottleneck width, pretrained file's hash)."""
    task = _tokenised_for(backbone, task)
    backbone = _for_task(backbone, task, method)
    fp = Trainer(method, config, _factory(backbone)).fingerprint(task)
    spec = backbone_spec(backbone)
    if spec is not None:
        fp["backbone"] = spec
    return fp


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # qianyi's own files


def tracker_params(m: Method, config: TrainConfig, backbone: BackboneSpec | None) -> dict[str, Any]:
    """What a run logs to its trackers as settings: the method, its hyperparameters, the config and the network
    (``backbone``: its name as model.json records it, and a pretrained weights file's name and SHA-256)."""
    spec = backbone_spec(backbone)
    network = m.network_spec()
    name = ("method" if network is not None else spec["name"] if spec is not None else
            "default" if backbone is None else "custom")
    params: dict[str, Any] = {"method": m.name, "backbone": name}
    weights = getattr(backbone, "weights", None) if isinstance(backbone, NamedBackbone) else None
    if weights is not None:
        params["weights"] = Path(weights).name
    if spec is not None and spec.get("pretrained_sha256"):
        params["weights_sha256"] = spec["pretrained_sha256"]
    return {**params, **m.hparams(), **config.fingerprint()}


def _open_trackers(m: Method, task: TransferTask, config: TrainConfig, out: Path | None,
                   backbone: BackboneSpec | None) -> Trackers:
    """The run's experiment trackers (none on processes other than the first); a named backbone is in the run's
    name, its weights in the settings; ``OUT/trackers.json`` is resumed only by a run with this fingerprint."""
    if not config.log_to or not distributed.is_main():
        return open_trackers((), None, "", {})
    params = tracker_params(m, config, backbone)
    net = "" if params["backbone"] in ("default", "custom", "method") else f" {params['backbone']}"
    key = hashlib.sha256(json.dumps(run_fingerprint(m, config, task, backbone), sort_keys=True,
                                    default=str).encode()).hexdigest()
    return open_trackers(config.log_to, out, f"{m.name} {task.name}{net} seed {config.seed}", params, key)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that attributes a warning of the calling function to the first frame outside qianyi (the
    user's call, as a notebook cell), not to qianyi's own line."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE)
                                 or frame.f_code.co_filename == contextlib.__file__):  # (qianyi's decorators)
        frame, level = frame.f_back, level + 1
    return level


def _run(method: str | Method, task: TransferTask, config: TrainConfig | None, out: Path | None,
         track_target_test: bool, backbone: BackboneSpec | None, hparams: dict[str, Any], out_named: bool = True,
         stage: bool = False) -> tuple[RunResult, FitResult]:
    m = get_method(method, **hparams) if isinstance(method, str) else method
    if not m.trains_classifier and task.target_test is not None:
        raise ConfigError(f"{m.name} trains no classifier, so a target test split scores nothing and holds back "
                          f"{len(task.target_test)} target samples from training; load the task with "
                          "qianyi.load_task(S, T, classifier=False) (all of the target trains, unlabelled, as "
                          f"`qianyi run {m.name}` does)")
    if not getattr(m, "shallow", False):
        backbone = _for_task(backbone, task, m)
    config = (config or TrainConfig()).for_task(task)  # the data's defaults filled in: what result.json records
    if getattr(m, "shallow", False):
        if backbone is not None:
            raise DataError(f"{m.name} is a shallow method: it trains no network, so it takes no backbone")
        return _run_shallow(m, task, config, out)
    if out is not None:
        config = replace(config, checkpoint_dir=str(out))  # a copy: the caller's config is not changed
    trainer = Trainer(m, config, _factory(backbone))
    if out is not None and not (out / FILENAME).exists():  # a finished run whose checkpoint is gone: reused
        done = finished_run(out, run_fingerprint(m, config, task, backbone), model_names(task), stage=stage,
                            method=m)
        if done is not None:
            fit = trainer.reload(task, out / MODEL_FILE, done)
            _say_reused(m, task, config, out)  # (as the engine says where it resumes)
            _health_warnings(m, task, config, out if out_named else None, done)
            return done, fit
    monitor: Monitor | None = None
    if track_target_test and task.target_test is not None:
        monitor = lambda net: {ORACLE_KEY: accuracy(net, task.target_test, next(net.parameters()).device)}  # noqa: E731
    trackers = _open_trackers(m, task, config, out, backbone)
    trainer.on_start, trainer.on_epoch = (trackers.start, trackers.log) if trackers else (None, None)
    try:
        fit = trainer.fit(task, monitor=monitor)
    except BaseException as exc:  # an interrupted run's tracker run ends KILLED, a failed one's FAILED
        trackers.close(status_of(exc))
        raise
    trackers.close(status_of(None))
    device = fit.device
    row = fit.history[fit.selected_epoch - 1] if fit.history and fit.selected_epoch else {}
    scores = {k[len("score_"):]: v for k, v in row.items() if k.startswith("score_")}
    if task.target_test is None and m.trains_classifier:  # no labelled target: report what can be said without labels
        missing = [v for v in UNLABELLED_REPORT if v not in scores]
        scores.update(score_all(fit.model, TrainData.from_task(task).selection(), missing, device=device,
                                max_samples=config.selection_samples, seed=config.seed))
    report: dict[str, Any] = {}
    if task.target_test is not None:
        report = class_report(fit.model, task.target_test, task.n_classes, device)
        report["class_names"] = list(task.source.class_names or map(str, range(task.n_classes)))
    result = RunResult(
        method=m.name, source=task.source.name, target=task.target.name, seed=config.seed,
        target_accuracy=report.get("accuracy"), target_report=report,
        source_accuracy=accuracy(fit.model, task.source_val, device),
        train_seconds=round(fit.train_seconds, 3), oracle=m.uses_target_labels,
        selection=fit.selection if m.trains_classifier else
        f"{fit.selection}; trains no classifier: its accuracies are an untrained network's",
        hparams=m.hparams(), config=config.fingerprint(), n_source=len(task.source),
        n_target_train=len(task.target), n_target_test=0 if task.target_test is None else len(task.target_test),
        test_in_target=task.test_in_target,
        device=device, history=fit.history, selected_epoch=fit.selected_epoch, scores=scores,
        fingerprint=run_fingerprint(m, config, task, backbone),
        versions=_versions(fit.threads, m, fit.codes))
    result.resumed_from_step, result.processes = _resumed_from(fit, out), distributed.world()[1]
    result.flags = list(fit.flags)
    if out is not None and distributed.is_main():
        # model.pt + model.json first, then result.json naming model.pt's hash: the finished state is
        # result.json, so a model.pt replaced or half-written is not finished (qianyi.train.store.finished)
        result.model_sha256 = save_model(out, fit.model, task, m.name, m.hparams(), custom_backbone=backbone is not None,
                                         backbone_spec=backbone_spec(backbone), network_spec=m.network_spec())
        _record_data_sides(out, task)
        write_history_csv(out / HISTORY_FILE, fit.history)
        m.save_artefacts(out, task)  # the method's own files (generators, image grids), before the finished state
        result.save(out)
        if not config.keep_checkpoint:  # finished: result.json + model.pt are what a rerun reuses
            with contextlib.suppress(OSError):
                (out / FILENAME).unlink(missing_ok=True)
    # warned once the files are written: a warning made an error (-W error) loses nothing of the run
    _health_warnings(m, task, config, out if out_named else None, result)
    return result, fit


def _health_warnings(m: Method, task: TransferTask, config: TrainConfig, out: Path | None, result: RunResult) -> None:
    """Warn about a finished run that may have failed silently: a balanced target accuracy at chance level, and
    the engine's label-free flags about the game (``result.flags``)."""
    if not distributed.is_main():
        return
    balanced = (result.target_report or {}).get("balanced_accuracy")
    if task.target_test is not None and balanced is not None and not m.uses_target_labels:
        said = chance_warning(balanced, np.asarray(task.target_test.y), shallow=getattr(m, "shallow", False))
        if said is not None:  # (a reused shallow run's as its fit's: it wrote no history.csv)
            warnings.warn(f"{_which(m, task, config, out)}: {said}", QianyiWarning, stacklevel=_caller_stacklevel())
    for flag in result.flags:
        warnings.warn(f"{_which(m, task, config, out)}: {flag}", QianyiWarning, stacklevel=_caller_stacklevel())


def reloaded(method: Method, task: TransferTask, config: TrainConfig | None, out: str | Path,
             backbone: BackboneSpec | None, result: RunResult) -> FitResult:
    """The :class:`FitResult` of the finished run ``result`` of ``method`` in ``out``: its network built as
    :func:`run` builds it, holding ``out``'s model.pt (see :meth:`~qianyi.train.engine.Trainer.reload`)."""
    task = _tokenised_for(backbone, task)
    backbone = _for_task(backbone, task, method)
    config = replace((config or TrainConfig()).for_task(task), checkpoint_dir=str(out))
    return Trainer(method, config, _factory(backbone)).reload(task, Path(out) / MODEL_FILE, result)


def model_names(task: TransferTask, backbone: BackboneSpec | None = None) -> dict[str, Any]:
    """What a run's model.json records of how ``task`` names its data (and its fingerprint does not: the data hash
    covers inputs and labels only): the class names and the preprocessing's digest (feature names, scaling,
    vocabulary), ``task`` read as a run with ``backbone`` reads it. A finished run recording others is trained
    again (:func:`~qianyi.train.store.finished`)."""
    task = _tokenised_for(backbone, task)
    return {"class_names": list(task.source.class_names or map(str, range(task.n_classes))),
            "preprocessing_sha256": preprocessing_digest(json.loads(json.dumps(task.preprocessing or {})))}


def finished_run(out: Path, fp: dict[str, Any], names: dict[str, Any] | None = None, stage: bool = False,
                 method: Method | None = None) -> RunResult | None:
    """The finished run in ``out`` with fingerprint ``fp`` (result.json, and model.pt of the hash it records), which a
    rerun reuses; None when there is none (or its model.pt changed, or it records other ``names``: trained again).
    A finished run of other settings or data is a :class:`CheckpointError` (its checkpoint, deleted once it
    finished, would have said so): another run is never trained over it. ``stage``: ``fp`` is the last stage's of a
    staged run (:func:`~qianyi.train.transitive.run_via`, which found the whole run there not reusable): a staged
    result.json differing only by the starting model (the whole run records the one asked for) is this run."""
    done = finished(out, fp, names, method)
    if done is not None and done.staged:  # the whole staged run's result (run_via reuses it): not this stage's
        raise CheckpointError(f"{str(out)!r} holds a staged run whose earlier stages are not those its last stage "
                              "was trained from; use another output folder, or delete it to train every stage afresh")
    if done is not None or not (out / RESULT_FILE).is_file():
        return done
    try:
        saved = RunResult.read(out / RESULT_FILE)
    except DataError:  # damaged or half-written: not a finished run
        return None
    now = json.loads(json.dumps(fp, sort_keys=True, default=str))
    if saved.fingerprint == now:
        return None  # this run, its model.pt replaced or damaged, or its names not the data's now: trained again
    if same_run(saved.fingerprint or {}, now) and not saved.staged:  # the same data, its specs spelt otherwise
        return finished(out, saved.fingerprint, names, method)  # (another working folder)
    if stage and saved.staged:
        as_asked = {**now, "config": {**now.get("config", {}), "init_from": (saved.fingerprint or {}).get(
            "config", {}).get("init_from")}}
        if same_run(saved.fingerprint or {}, as_asked):
            return None  # its last stage, trained again over it
    details = describe_differences(saved.fingerprint or {}, now)  # (the method and data first)
    raise CheckpointError(f"{str(out)!r} holds a finished run of other settings or data ({details}); use another "
                          "output folder, or delete its result.json to train this run there")


def _which(m: Method, task: TransferTask, config: TrainConfig, out: Path | None) -> str:
    """A run as its warnings name it: method, pair, seed and folder. (Python shows a warning text once per place:
    runs of a loop over seeds that differed only by their seed were not warned about.)"""
    return f"{m.name} on {task.name} (seed {config.seed}" + (f", out {str(out)!r})" if out is not None else ")")


def data_sides(task: TransferTask) -> dict[str, str]:
    """Where a task's source and target came from, for a report that reads them again: ``"spec"`` when
    :func:`~qianyi.load_task` read them (it records their canvas in ``task.preprocessing``; their names are the
    specs read), ``"arrays"`` when they were built in Python (:meth:`TransferTask.from_domains`: a name is only a
    name, and the data are not on disk)."""
    kind = "spec" if isinstance(task.preprocessing, dict) and "canvas" in task.preprocessing else "arrays"
    return {"source": kind, "target": kind}


def _record_data_sides(out: Path, task: TransferTask) -> None:
    """Add :func:`data_sides` to the model.json just written in ``out`` (``data_sides``), beside ``cwd``: what
    `qianyi report` may read again by name."""
    path = out / "model.json"
    meta = json.loads(path.read_text(encoding="utf-8"))  # (as write_json writes it)
    meta["data_sides"] = data_sides(task)
    write_json(path, meta)


def check_shallow_settings(m: Method, config: TrainConfig) -> None:
    """Refuse the network settings a shallow method cannot use (it fits on the inputs, starting from no network),
    and those a method that trains a network of its own ignores (:func:`~qianyi.train.engine.check_network_settings`):
    ``bench`` and ``select`` call it before anything trains."""
    check_network_settings(m, config)
    if not getattr(m, "shallow", False):
        return
    network = [f for f, v in (("init_from", config.init_from), ("freeze", config.freeze),
                              ("init_layers", config.init_layers), ("l2sp", config.l2sp),
                              ("select", config.select != "last")) if v]
    if network:  # (a staged run passes each stage's model on as init_from: the stages would change nothing)
        raise ConfigError(f"{m.name} is a shallow method: it fits on the inputs and starts from no network, so "
                          f"{', '.join(network)} (--{' --'.join(n.replace('_', '-') for n in network)}) "
                          f"{'does' if len(network) == 1 else 'do'} not apply; leave them out")


def _flat(X: Any) -> np.ndarray:
    return np.asarray(X, dtype=np.float64).reshape(len(X), -1)


def _run_shallow(m: Method, task: TransferTask, config: TrainConfig, out: Path | None
                 ) -> tuple[RunResult, FitResult]:
    """A shallow method (:mod:`qianyi.methods.shallow`): fit its estimator on the flattened source inputs
    and labels and the unlabelled target inputs, score the target test split once."""
    import time

    if task.source.y is None:
        raise DataError(f"{m.name}: the source {task.source.name!r} has no labels")
    if (task.preprocessing or {}).get("text") is not None:
        raise DataError(f"{m.name} is a shallow method on the inputs as numbers; a text task's inputs are token ids, "
                        "whose values mean nothing as numbers: run it on vectors of the texts (`qianyi features "
                        "--backbone minilm`, or bag-of-words files such as the DANN Amazon ones: "
                        "svmlight:DATA/amazon-dann-svmlight/books_train.svmlight?n_features=5000), or use a deep method")
    check_shallow_settings(m, config)
    if out is not None:  # as a deep run: a finished run of other settings there is refused, its own is reused
        if (out / FILENAME).exists():  # (a shallow run writes none)
            raise CheckpointError(f"{str(out)!r} holds the checkpoint of a network's run (checkpoint.pt); use another "
                                  f"output folder for {m.name}, or delete that one")
        done = finished_run(out, run_fingerprint(m, config, task), model_names(task), method=m)
        if done is not None:
            _say_reused(m, task, config, out)
            _health_warnings(m, task, config, out, done)
            return done, FitResult(model=nn.Identity(), method=m, history=[], selection=done.selection,
                                   train_seconds=done.train_seconds, steps=0)
    t0 = time.perf_counter()
    predictor = m.fit_predictor(_flat(task.source.X), task.source.y, _flat(task.target.X), config.seed)  # type: ignore[attr-defined]
    seconds = time.perf_counter() - t0
    report: dict[str, Any] = {}
    if task.target_test is not None:
        report = report_from_predictions(task.target_test.y, predictor.predict(_flat(task.target_test.X)),
                                         task.n_classes)
        report["class_names"] = list(task.source.class_names or map(str, range(task.n_classes)))
    src_pred = predictor.predict(_flat(task.source_val.X))  # (through the target's map, where they differ)
    source_accuracy = float((np.asarray(src_pred) == task.source_val.y).mean())
    result = RunResult(
        method=m.name, source=task.source.name, target=task.target.name, seed=config.seed,
        target_accuracy=report.get("accuracy"), target_report=report,
        source_accuracy=source_accuracy, scores={"source-val": source_accuracy},  # the one network-free validator
        train_seconds=round(seconds, 3), selection="shallow method: no epochs; no target labels", oracle=False,
        hparams=m.hparams(), config=config.fingerprint(), n_source=len(task.source),
        n_target_train=len(task.target), n_target_test=0 if task.target_test is None else len(task.target_test),
        test_in_target=task.test_in_target,
        device="cpu", fingerprint=run_fingerprint(m, config, task),
        versions=_versions(None, m), model_file=SHALLOW_MODEL_FILE)
    with warnings.catch_warnings(record=True) as held:  # said once the result is written (-W error loses nothing)
        warnings.simplefilter("always")
        result.flags = shallow_flags(m, task, predictor, report, source_accuracy, _which(m, task, config, out))
    fit = FitResult(model=nn.Identity(), method=m, history=[], selection=result.selection, train_seconds=seconds,
                    steps=0)
    if out is not None and distributed.is_main():
        arrays = {f"{type(o).__name__}.{k}": np.asarray(v) for o in _fitted_parts(predictor)
                  for k, v in vars(o).items() if k.endswith("_") and isinstance(v, np.ndarray)}
        atomic_write(out / SHALLOW_MODEL_FILE, lambda fh: np.savez(fh, **arrays), mode="wb")
        write_json(out / "model.json", {"kind": "shallow", "method": m.name, "settings": m.hparams(),
                                        "note": "arrays the shallow estimator fitted (no pickle); qianyi predict "
                                                "does not yet rebuild shallow models"})
        result.model_sha256 = sha256_file(out / SHALLOW_MODEL_FILE)
        result.save(out)
    for w in held:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result, fit


#: What a shallow run saves: the fitted arrays of its estimators, as a plain npz.
SHALLOW_MODEL_FILE = "model.npz"


def _fitted_parts(predictor: Any) -> list[Any]:
    """The predictor and the estimators it holds (its classifier; a transformer behind a bound transform)."""
    parts = [predictor]
    for v in vars(predictor).values():
        owner = getattr(v, "__self__", v)
        if hasattr(owner, "get_params") and owner is not predictor:
            parts.append(owner)
    return parts
