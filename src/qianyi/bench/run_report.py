"""A report of one run folder (``qianyi report RUN_DIR``, the folder of ``qianyi run --out``).

What a user of an UNLABELLED target can read off a run: its settings and label-free scores, the training
curves (losses, source validation accuracy, the adversarial game's domain accuracy, the share of the target
given to one class, the selecting validator, the epoch chosen), the classes the model gives the target against
the source's class shares, a t-SNE embedding of source and target features, and the distance between the
domains at every layer. A labelled target test split (if the run had one) adds its per-class accuracy, marked
as scoring only. ``OUT/report.html``, ``OUT/report.md``, figures in ``OUT/report/`` (``OUT``: the run's folder
unless given).
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._io import sha256_file, write_text
from .._report import md_cell, save_figure, subplots
from ..data.domain import Domain, TransferTask
from ..errors import ConfigError, DataError
from ..train.engine import caller_rng_kept
from ..train.result import MODEL_FILE, RESULT_FILE, RunResult
from ..train.run import ORACLE_KEY
from .html import EMBED_SAMPLES, Section, page_html, page_markdown
from .runner import drawable

#: Target samples whose predicted classes are counted (a seeded subset of larger domains).
PREDICT_SAMPLES = 5000
#: History columns that are not losses: shares plotted as percentages (besides any ``*_acc``/``*_share``).
_SHARES = ("source_val_acc", "domain_acc", "target_top_share", ORACLE_KEY)


_LABELS = {"source_val_acc": "source validation", "domain_acc": "discriminator's domain accuracy",
           "target_top_share": "target share of the top class", ORACLE_KEY: "target test (ORACLE)"}
#: How a notebook user gets the figures of a run whose data were arrays.
_IN_PYTHON = ("in Python, qianyi.bench.run_report.write_run_report(RUN_DIR, task=<the task it trained on>) (or "
              "source=, target= Domains) draws them")


@caller_rng_kept()  # building networks draws initial weights: not from the caller's generators
def write_run_report(folder: str | os.PathLike, data_dir: str | os.PathLike | None = None, embed: bool = True,
                     log: Callable[[str], None] | None = None, *, task: TransferTask | None = None,
                     source: Domain | None = None, target: Domain | None = None,
                     out: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write ``report.html``, ``report.md`` and their figures (``report/``) for the run in ``folder`` into ``out``
    (default: ``folder``; figures are linked relative to it).

    The predictions, embedding and per-layer distance need the run's data. A run whose task
    :func:`qianyi.load_task` read is read again from its specs (``data_dir``); a run built in Python from arrays
    (:meth:`~qianyi.data.TransferTask.from_domains`) has no data on disk: give ``task`` (the task it trained on: its
    source and target training parts are drawn) or ``source`` and ``target`` (Domains in the form the run trained
    on, as given to ``from_domains``). A Domain given is used, whatever the run recorded."""
    if task is not None and (source is not None or target is not None):
        raise ConfigError("write_run_report: give task= or source=/target=, not both")
    if task is not None and not isinstance(task, TransferTask):
        raise ConfigError(f"write_run_report: task= must be a TransferTask, got {type(task).__name__}")
    given = {"source": task.source if task is not None else source, "target": task.target if task is not None else target}
    for side, d in given.items():
        if d is not None and not isinstance(d, Domain):
            raise ConfigError(f"write_run_report: {side}= must be a qianyi Domain, got {type(d).__name__}; wrap arrays "
                              f"as qianyi.Domain(X, y, NAME)")
    folder = Path(folder)
    out = folder if out is None else Path(out)
    r = RunResult.read(folder / RESULT_FILE)
    figs = out / "report"
    intro = "What was trained, how the epoch was chosen, and what the run can say about the target without its labels."
    mixed = _other_model(r, folder)
    if mixed:
        intro += f" WARNING: {mixed}."
        if log:
            log(f"report: warning: {mixed}")
    if out.resolve() != folder.resolve():
        intro += f" The run's folder: {str(folder.resolve())!r}."
    bad_scores = {name: _not_number(v) for name, v in r.scores.items() if _not_number(v)}
    sections: list[Section] = [("Run", intro, None, _summary(r, bad_scores))]
    files: dict[str, Path] = {}
    skipped: list[str] = [f"the score {name}: {RESULT_FILE}'s scores.{name} {why}" for name, why in bad_scores.items()]
    bad = _bad_history(r.history)
    if bad:
        skipped.append(f"training curves: {RESULT_FILE}'s {bad}")
        sections.append(("Training curves", f"not drawn: in {str(folder / RESULT_FILE)!r}, {bad} (edited by hand, or "
                         "written by something else).", None, None))
    elif r.history:
        files["curves"] = _curves(r, figs / "curves.png")
        sections.append(("Training curves", "Per epoch: the losses; the source validation accuracy; for an "
                         "adversarial method, the discriminator's domain accuracy (50%: it cannot tell the domains "
                         "apart; near 100%: it wins the game); the share of the target given to its most predicted "
                         "class (near 100%: collapse); the validator that chose the epoch (dotted line: the epoch "
                         "kept). A dashed target-test curve is ORACLE: recorded, never used.", files["curves"], None))
    note = _no_network(r, folder)
    notes: list[str] = [] if note is None else [note]
    if note is None:
        found, notes = _with_model(r, folder, figs, data_dir, embed, given)
        for key, section in found:
            files[key] = section[2]
            sections.append(section)
    if notes:
        sections.append(("Predictions and features", "not drawn: " + "; ".join(notes) + ".", None, None))
    if r.target_report.get("per_class_accuracy"):
        bad = _bad_target_report(r.target_report)
        if bad:
            skipped.append(f"target test per-class accuracy: {RESULT_FILE}'s {bad}")
        sections.append(("Target test (ORACLE: scoring only)",
                         f"not drawn: in {str(folder / RESULT_FILE)!r}, {bad} (edited by hand, or written by "
                         "something else)." if bad else
                         "Per-class accuracy on the labelled target test split. These labels chose nothing "
                         "(no epoch, no setting); they only score the run.", None,
                         None if bad else _per_class(r.target_report)))
    if log:
        for n in notes:
            log(f"report: {n}")
        for n in skipped:
            log(f"report: not shown: {n}")
    title = f"qianyi run: {r.method} on {r.source} → {r.target} (seed {r.seed})"
    files["html"] = write_text(out / "report.html", page_html(title, sections, out))
    title = f"qianyi run: {md_cell(r.method)} on {md_cell(r.source)} → {md_cell(r.target)} (seed {r.seed})"
    files["md"] = write_text(out / "report.md", page_markdown(title, sections, out))
    return files


def _other_model(r: RunResult, folder: Path) -> str | None:
    """Why result.json's numbers are not those of the model file beside it (the files of two runs mixed: a
    rerun's model.pt written, its result.json not), or None."""
    model = folder / r.model_file if r.model_file in (MODEL_FILE, "model.npz") else None
    if not r.model_sha256 or model is None or not model.is_file():
        return None
    try:
        digest = sha256_file(model)
    except OSError:
        return None
    if digest == r.model_sha256:
        return None
    return (f"result.json reports on another model than {r.model_file} (its model_sha256 differs: files of two runs "
            f"mixed?): the settings, scores and curves are result.json's, the predictions, embedding and "
            f"per-layer distance are {r.model_file}'s")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _not_number(v: Any) -> str | None:
    """Why ``v`` is not a number or None as qianyi writes them (None: it is)."""
    return None if v is None or _number(v) else f"is {json.dumps(v)[:40]}, not a number"


def _bad_history(history: list[dict[str, Any]]) -> str | None:
    """The first value of the history that is not a number (``history[3].cls is "x", not a number``), or None."""
    for i, row in enumerate(history):
        for k, v in row.items():
            why = _not_number(v)
            if why:
                return f"history[{i}].{k} {why}"
    return None


def _bad_target_report(rep: dict[str, Any]) -> str | None:
    """The first field of a target report of the wrong form, or None."""
    acc = rep.get("per_class_accuracy")
    if not isinstance(acc, list):
        return f"target_report.per_class_accuracy is {json.dumps(acc)[:40]}, not a list"
    for i, v in enumerate(acc):
        if _not_number(v):
            return f"target_report.per_class_accuracy[{i}] {_not_number(v)}"
    names = rep.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        return f"target_report.class_names is {json.dumps(names)[:40]}, not a list of names"
    confusion = rep.get("confusion")
    if confusion is not None and not (isinstance(confusion, list) and all(
            isinstance(row, list) and all(_number(c) for c in row) for row in confusion)):
        return f"target_report.confusion is {json.dumps(confusion)[:40]}, not a table of counts"
    for k in ("balanced_accuracy", "accuracy"):
        if _not_number(rep.get(k)):
            return f"target_report.{k} {_not_number(rep.get(k))}"
    return None


def _pct(v: float | None) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{100 * v:.2f}%"


def _summary(r: RunResult, bad_scores: dict[str, str]) -> str:
    from ..select import available_validators, get_validator

    cfg = r.config or {}
    rows: list[tuple[str, str]] = [
        ("method", r.method + (f" {json.dumps(r.hparams, sort_keys=True)}" if r.hparams else "")),
        ("source → target", f"{r.source} → {r.target}"),
        ("samples", f"source {r.n_source} (labelled), target {r.n_target_train} (unlabelled)"
                    + (f", target test {r.n_target_test} (labelled, scoring only)" if r.n_target_test else "")
                    + (f"; transductive: {r.test_in_target} of the test samples were target training inputs"
                       if r.test_in_target else "")),
        ("training", ("a shallow fit (no network: no epochs, batches or optimiser)" if r.model_file != MODEL_FILE
                      else ", ".join(f"{k} {cfg[k]}" for k in ("epochs", "batch_size", "optimizer", "lr") if k in cfg))
         + f", seed {r.seed}, {r.train_seconds:.1f} s on {r.device}"),
        *(("network", v) for v in [_network(r)] if v),
        *(("fine-tuning", v) for v in [_fine_tuning(cfg)] if v),
        ("epoch kept", r.selection),
        ("source validation accuracy", _pct(r.source_accuracy)),
    ]
    stages = (r.staged or {}).get("stages") or []
    if stages:  # (the curves below are the last stage's)
        rows.append(("stages", "; ".join(f"{st.get('name', '?')}: {st.get('method', '?')} adapting to "
                                         f"{st.get('adapts_to', '?')}" for st in stages if isinstance(st, dict))
                     + ". The curves are the last stage's."))
    known = set(available_validators())
    for name, value in sorted(r.scores.items()):
        if name in bad_scores:  # (a hand-edited result.json: the row says so, the others stand)
            rows.append((f"label-free {name}", f"— ({RESULT_FILE}'s scores.{name} {bad_scores[name]})"))
            continue
        sense = ("higher is better" if get_validator(name).higher_is_better else "lower is better") \
            if name in known else ""
        shown = _pct(value) if name in ("atc", "source-val") else "—" if value is None else f"{value:.4f}"
        what = " (ATC's estimate of the target accuracy)" if name == "atc" else ""
        rows.append((f"label-free {name}", f"{shown}{what}" + (f"; {sense}" if sense else "")))
    rows.append(("target accuracy", f"{_pct(r.target_accuracy)} (ORACLE: labelled target test, scoring only)"
                 if r.target_accuracy is not None else "unknown: the target is unlabelled"))
    rows += [("warning", flag) for flag in r.flags]
    return "\n".join(["| | |", "|---|---|", *(f"| {md_cell(k)} | {md_cell(v)} |" for k, v in rows)])


def _network(r: RunResult) -> str | None:
    """The network a run trained when it is not qianyi's default for its data (a named backbone, its pretrained
    weights' hash, text settings; a network of your own), from its fingerprint; None for the default."""
    spec = (r.fingerprint or {}).get("backbone")
    if not isinstance(spec, dict):
        return None
    if spec.get("name") == "custom":
        return "a network of your own (architecture " + str(spec.get("architecture", "?")) + (
            f", starting weights {spec['weights']}" if spec.get("weights") else "") + ")"
    from ..nn.text import DEFAULT_TEXT_ENCODER

    rest = {k: v for k, v in spec.items() if k not in ("name", "vocab_size")}
    if spec.get("name") == DEFAULT_TEXT_ENCODER and not rest:
        return None
    said = [f"pretrained weights sha256 {str(v)[:16]}…" if k == "pretrained_sha256" else
            f"word vectors {v}" if k == "vectors" else f"{k} {v}" for k, v in rest.items()]
    return str(spec.get("name", "?")) + (f" ({', '.join(said)})" if said else "")


def _fine_tuning(cfg: dict[str, Any]) -> str | None:
    """How the network started and what of it was held (``init_from`` and what its run recorded of it,
    ``init_layers``, ``freeze``, ``l2sp``, ``copied_lr_mult``), or None when it started afresh with none of them."""
    parts = []
    start = cfg.get("init_from")
    if start:
        info = {k: cfg[f"init_from_{k}"] for k in ("method", "source", "sha256") if cfg.get(f"init_from_{k}")}
        if not info and os.path.isfile(str(start)):  # a run from before the record: its model.json, read now
            from ..train.weights import starting_model

            info = {k: v for k, v in (starting_model(str(start)) or {}).items() if k in ("method", "source", "sha256")}
        what = ", ".join([*([f"trained by {info['method']}"] if "method" in info else []),
                          *([f"on the labels of {info['source']}"] if "source" in info else []),
                          *([f"sha256 {info['sha256'][:16]}…"] if "sha256" in info else [])])
        parts.append(f"started from {start}" + (f" ({what})" if what else ""))
        if cfg.get("init_layers") is not None:
            parts.append(f"{_first(cfg['init_layers'])} copied (init_layers)")
    if cfg.get("freeze"):
        parts.append(f"{_first(cfg['freeze'])} frozen (freeze)")
    if cfg.get("l2sp"):
        parts.append(f"L2-SP {cfg['l2sp']} towards the starting weights")
    if start and cfg.get("copied_lr_mult", 1.0) != 1.0:
        parts.append(f"copied layers' learning rate × {cfg['copied_lr_mult']} (copied_lr_mult)")
    return "; ".join(parts) or None


def _first(n: Any) -> str:
    return f"the first {n} layer group" + ("" if n == 1 else "s")


def _curves(r: RunResult, path: Path) -> Path:
    hist = r.history
    epochs = np.array([row.get("epoch", i + 1) for i, row in enumerate(hist)], float)
    keys = list(dict.fromkeys(k for row in hist for k in row))
    shares = [k for k in keys if k in _SHARES or k.endswith(("_acc", "_share"))]
    losses = [k for k in keys if k not in shares and k not in ("epoch", "lr") and not k.startswith("score_")]
    chosen = (r.config or {}).get("select", "last")
    score = f"score_{chosen}" if f"score_{chosen}" in keys else None
    panels = [("losses", losses), ("accuracy / share (%)", shares)] + ([(chosen, [score])] if score else [])
    fig, axes = subplots(1, len(panels), figsize=(4.4 * len(panels) + 1.2, 3.4), squeeze=False)
    marker = "o" if len(hist) <= 20 else None
    for ax, (title, cols) in zip(axes[0], panels):
        for k in cols:
            y = np.array([row.get(k, np.nan) for row in hist], float) * (100 if title.startswith("acc") else 1)
            style = "--" if k == ORACLE_KEY else "-"
            ax.plot(epochs, y, style, marker=marker, markersize=3, label=_LABELS.get(k, k))
        if "domain_acc" in cols:
            ax.axhline(50, color="grey", linewidth=0.8, linestyle=":")
        if r.selected_epoch:
            ax.axvline(r.selected_epoch, color="black", linewidth=0.8, linestyle=":")
        ax.set_title(title if title != chosen else f"validator {chosen} (chose the epoch)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)
        if cols:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def _no_network(r: RunResult, folder: Path) -> str | None:
    """Why the run has no network the report can load (None: it has one)."""
    if r.model_file != MODEL_FILE:
        return "a shallow fit has no network (its arrays are in model.npz)"
    if not _trains_classifier(r.method):
        return (f"{r.method} trains no classifier (its network is as initialised: see its translations.png and "
                "`qianyi translate`)")
    if not (folder / MODEL_FILE).is_file() or not (folder / "model.json").is_file():
        return "the folder holds no model.pt with its model.json (an unfinished run, or one made before qianyi " \
               "wrote them)"
    try:
        arch = json.loads((folder / "model.json").read_text(encoding="utf-8")).get("architecture", {})
    except (OSError, ValueError) as exc:
        raise DataError(f"{str(folder / 'model.json')!r} cannot be read ({exc}); rerun the run") from None
    if arch.get("backbone") == "custom":
        return "the run trained a network of your own, which the report cannot rebuild (in Python, " \
               "qianyi.load_model(RUN_DIR, network=<an instance of it>) loads it)"
    return None


def _trains_classifier(method: str) -> bool:
    from ..errors import UnknownNameError
    from ..methods.registry import get_method

    try:
        return bool(get_method(method).trains_classifier)
    except UnknownNameError:  # a plugin no longer installed: its network is still a classifier's
        return True


def _with_model(r: RunResult, folder: Path, figs: Path, data_dir: str | os.PathLike | None, embed: bool,
                given: dict[str, Domain | None]) -> tuple[list[tuple[str, Section]], list[str]]:
    """The predictions, embedding and profile sections (each on its own: one that cannot be made leaves the
    others), and why any is missing."""
    from ..train.artefact import load_model

    out: list[tuple[str, Section]] = []
    try:
        with warnings.catch_warnings():  # (the report says it, in its pages and on the terminal: see _other_model)
            warnings.filterwarnings("ignore", message=".*result.json reports on another model")
            model = load_model(folder)
    except Exception as exc:  # the report must not be lost to a model that cannot be read
        return out, [f"{type(exc).__name__}: {exc}"]
    for side, d in given.items():
        if d is not None and tuple(d.sample_shape) != tuple(model.sample_shape):
            raise DataError(f"write_run_report: {side}= {d.name!r} has samples of shape {tuple(d.sample_shape)}, but "
                            f"the run's model reads {tuple(model.sample_shape)}: give the {side} in the form the run "
                            f"trained on (the task's task.{side}, or the Domain given to from_domains)")
    try:
        data, said, missing = _run_data(r, model, data_dir, given)
    except Exception as exc:  # the report must not be lost to data that cannot be read
        return out, [f"{type(exc).__name__}: {exc}"]
    src, tgt = data["source"], data["target"]
    if missing:
        missing.append(_IN_PYTHON)
    if tgt is None:
        return out, missing
    rng = np.random.default_rng(0)
    take = rng.permutation(len(tgt))[:PREDICT_SAMPLES]
    notes: list[str] = []
    from_specs = given["source"] is None and given["target"] is None
    pool = " The target spec shares its pool of samples with the source (the run trained on the other half), so " \
           "these include the source's." if from_specs and src is not None and src.origin == tgt.origin else ""
    what = ((f"the {len(tgt)} samples" if len(take) == len(tgt) else f"{len(take)} of the {len(tgt)} samples")
            + " of the target given to the report (labels unused)" if given["target"] is not None else
            f"{len(take)} samples of the target spec, read whole ({len(tgt)} samples: its unlabelled part, any test "
            "split the run held out, beyond --max-samples; labels unused)")
    beside = ("beside the source's class shares" if src is not None else
              "(the source's class shares are not drawn: its data cannot be read, as said below)")
    try:
        pred = model.predict(tgt.X[take])
        out.append(("predictions", ("Target predictions",
                                    f"The classes the model gives {what}, {beside}. A large difference is label shift "
                                    "between the domains or the model's errors: without target labels the two cannot "
                                    f"be told apart.{pool}{said}",
                                    *_prediction_shares(model.class_names, None if src is None else src.y, pred,
                                                        figs / "predictions.png"))))
    except Exception as exc:
        return out, [f"predictions: {type(exc).__name__}: {exc}"]
    if src is None:
        return out, ["embedding and per-layer distance: they need the source", *missing]
    if not embed:
        return out, ["embedding and per-layer distance: --no-embedding"]
    pick_s = rng.permutation(len(src))[:EMBED_SAMPLES]
    xs, xt = src.X[pick_s], tgt.X[take[:EMBED_SAMPLES]]
    try:
        out.append(("embedding", ("Feature embedding",
                                  f"t-SNE of the bottleneck features of {len(xs)} source and {len(xt)} target samples. "
                                  "Left: by domain (adapted features mix). Right: by class: the source's labels, the "
                                  f"target's PREDICTED classes (crosses).{pool}",
                                  _embedding(model, xs, None if src.y is None else src.y[pick_s], xt,
                                             pred[:len(xt)], figs / "embedding.png"), None)))
    except Exception as exc:
        notes.append(f"embedding: {type(exc).__name__}: {exc}")
    try:
        from ..measure.profile import layer_profile, plot_profiles

        prof = layer_profile(model.network, xs, xt, metrics=("mmd",), max_samples=EMBED_SAMPLES, label=drawable(r.method),
                             token_ids=bool((model.meta.get("preprocessing") or {}).get("text")), progress=False)
        out.append(("profile", ("Distance per layer", "MMD between the same source and target samples at every "
                                "layer of the network: adaptation lowers it in the layers it adapts.",
                                plot_profiles([prof], figs / "profile.png", title=drawable(f"{r.source} → {r.target}")),
                                None)))
    except Exception as exc:
        notes.append(f"per-layer distance: {type(exc).__name__}: {exc}")
    return out, notes


def _run_data(r: RunResult, model: Any, data_dir: str | os.PathLike | None, given: dict[str, Domain | None]
              ) -> tuple[dict[str, Domain | None], str, list[str]]:
    """The run's source and target, each as its run read it: a Domain ``given``; else its spec read again, where
    model.json's ``data_sides`` records it was one (a run made before that record: where its name is a spec, and
    said); never a side built from arrays, whose name is only a name. Also what the report must say about how
    they were read, and why a side is missing (None)."""
    from ..train.artefact import absolute_spec, load_domain_for

    recorded = model.meta.get("data_sides")
    recorded = recorded if isinstance(recorded, dict) else {}
    cwd = model.meta.get("cwd")
    cwd = cwd if isinstance(cwd, str) else None
    data: dict[str, Domain | None] = {}
    arrays: list[str] = []  # recorded as built from arrays
    unnamed: list[str] = []  # a run made before the record, named by no spec
    guessed: list[str] = []
    read: list[str] = []
    for side, name in (("source", r.source), ("target", r.target)):
        how = recorded.get(side)
        if given[side] is not None:
            data[side] = given[side]
        elif how == "arrays":
            data[side] = None
            arrays.append(f"{side} {name!r}")
        elif how != "spec" and not is_spec(name):
            data[side] = None
            unnamed.append(f"{side} {name!r}")
        else:
            if how != "spec":
                guessed.append(name)
            read.append(name)
            data[side] = load_domain_for(model, absolute_spec(name, cwd), data_dir)
    said = ""
    relative = [spec for spec in read if ":" in spec and not os.path.isabs(spec.partition(":")[2])]
    if relative and cwd is None:  # an older model.json does not say where its relative specs were relative to
        said += (f" The run's model.json does not say which folder {relative[0]!r} was relative to (a run made "
                 f"before qianyi recorded it): it was read from {os.getcwd()!r}, where `qianyi report` ran.")
    if guessed:  # a run made before data_sides: read by name, as before, and said
        said += (f" The run's model.json does not record whether {' and '.join(map(repr, guessed))} "
                 f"{'were' if len(guessed) > 1 else 'was'} read from a data spec or built in Python from arrays (a run "
                 f"made before qianyi recorded it): read here as the spec{'s' if len(guessed) > 1 else ''} "
                 f"{'their names spell' if len(guessed) > 1 else 'its name spells'}. If the run was built from arrays "
                 f"under {'those names' if len(guessed) > 1 else 'that name'}, these figures are of other data; "
                 f"{_IN_PYTHON} from yours.")
    missing = []
    if arrays:
        missing.append(f"the run's {' and '.join(arrays)} {'were' if len(arrays) > 1 else 'was'} built in Python from "
                       "arrays (TransferTask.from_domains), not read from a data spec: the report cannot read "
                       f"{'their' if len(arrays) > 1 else 'its'} data from disk")
    if unnamed:
        missing.append(f"the run's {' and '.join(unnamed)} {'are' if len(unnamed) > 1 else 'is'} no data spec, and its "
                       "model.json does not record where they came from (a run made before qianyi recorded it): built "
                       "in Python from arrays, whose data the report cannot read from disk")
    return data, said, missing


def is_spec(name: str) -> bool:
    """Whether ``name`` spells a data spec (a built-in data set or ``READER:PATH``, shifts after ``+``), read or
    not: a name such as ``"my digits"`` does not."""
    from ..data.builtin import DATASETS
    from ..data.tasks import READERS, parse_spec

    base, _ = parse_spec(name)
    if ":" in base:
        kind, _, path = base.partition(":")
        return kind in READERS and bool(path)
    return base.partition("?")[0] in DATASETS


#: The prediction-share table and figure show at most this many classes (those whose shares differ most).
SHARE_CLASSES = 20
#: Class names on the prediction-share figure's axis are cut to this many characters (start … end).
TICK_CHARS = 24


def _tick_label(name: str, keep: int = TICK_CHARS) -> str:
    """``name`` as an axis label: at most ``keep`` characters, its start and end around a '…' (names that differ
    by a number at the end stay apart)."""
    name = drawable(name)
    if len(name) <= keep:
        return name
    tail = keep // 3
    return name[:keep - 1 - tail].rstrip() + "…" + name[-tail:]


def _prediction_shares(classes: tuple[str, ...], ys: np.ndarray | None, pred: np.ndarray, path: Path
                       ) -> tuple[Path, str]:
    """The target's predicted class shares beside the source's label shares: a bar chart and a markdown table of
    the same classes (with more than :data:`SHARE_CLASSES` classes, those whose shares differ most, in that
    order)."""
    k = len(classes)
    target = np.bincount(pred, minlength=k) / max(len(pred), 1)
    source = np.bincount(ys, minlength=k) / len(ys) if ys is not None and len(ys) else np.full(k, np.nan)
    shown = np.argsort(-np.abs(target - np.nan_to_num(source)), kind="stable")[:SHARE_CLASSES] \
        if k > SHARE_CLASSES else np.arange(k)
    labels = [_tick_label(str(classes[i])) for i in shown]
    n = len(shown)
    rotate = n > 12 or max(map(len, labels)) > 8
    # room under the axes for the labels, turned upright when they are many or long (about 0.075 in a character)
    below = 0.075 * max(map(len, labels)) if rotate else 0.3
    fig, ax = subplots(1, 1, figsize=(min(1.5 + 0.45 * n, 14), 2.6 + below))
    x = np.arange(n)
    ax.bar(x - 0.2, 100 * source[shown], 0.4, label="source labels")
    ax.bar(x + 0.2, 100 * target[shown], 0.4, label="target predictions")
    ax.set_xticks(x, labels, rotation=90 if rotate else 0, fontsize=7 if rotate else 9)
    ax.set_ylabel("share (%)")
    if k > SHARE_CLASSES:
        ax.set_xlabel(f"the {n} classes of {k} whose shares differ most (as in the table)", fontsize=7)
    ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, frameon=False)  # above the bars
    with warnings.catch_warnings():  # a layout that cannot fit keeps matplotlib's default margins, unsaid
        warnings.filterwarnings("ignore", message="Tight layout not applied")
        fig.tight_layout()
    rows = [f"| {md_cell(classes[i])} | {_pct(source[i])} | {_pct(target[i])} |" for i in shown]
    head = "| class | source labels | target predictions |\n|---|---:|---:|"
    extra = f"\n\n(the {len(shown)} classes of {k} whose shares differ most)" if k > SHARE_CLASSES else ""
    return save_figure(fig, path), head + "\n" + "\n".join(rows) + extra


def _embedding(model: Any, xs: np.ndarray, ys: np.ndarray | None, xt: np.ndarray, pt: np.ndarray, path: Path
               ) -> Path:
    from sklearn.manifold import TSNE

    from ..nn.inference import predict_features

    feats = np.concatenate([predict_features(model.network, x)[0].numpy() for x in (xs, xt)])
    z = TSNE(2, init="pca", perplexity=max(1, min(30, len(feats) // 4)), random_state=0).fit_transform(feats)
    zs, zt = z[:len(xs)], z[len(xs):]
    fig, axes = subplots(1, 2, figsize=(7.4, 3.4), squeeze=False)
    a, b = axes[0]
    a.scatter(*zs.T, s=4, c="#1f77b4", label="source")
    a.scatter(*zt.T, s=4, c="#ff7f0e", label="target")
    a.legend(fontsize=7, markerscale=3)
    a.set_title("by domain", fontsize=9)
    cmap = "tab20" if len(model.class_names) > 10 else "tab10"
    if ys is not None:
        b.scatter(*zs.T, s=4, c=ys, cmap=cmap, vmin=0, vmax=max(len(model.class_names) - 1, 1))
    b.scatter(*zt.T, s=10, c=pt, cmap=cmap, marker="x", linewidths=0.6, vmin=0,
              vmax=max(len(model.class_names) - 1, 1))
    b.set_title("by class (target: predicted)", fontsize=9)
    for ax in (a, b):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return save_figure(fig, path)


def _per_class(report: dict[str, Any]) -> str:
    names = report.get("class_names") or [str(i) for i in range(len(report["per_class_accuracy"]))]
    counts = [sum(row) for row in report.get("confusion", [])] or [None] * len(names)
    rows = [f"| {md_cell(n)} | {c if c is not None else '—'} | {_pct(a)} |"
            for n, c, a in zip(names, counts, report["per_class_accuracy"])]
    bal = report.get("balanced_accuracy")
    return ("| class | test samples | accuracy |\n|---|---:|---:|\n" + "\n".join(rows)
            + (f"\n\nBalanced accuracy {_pct(bal)}; accuracy {_pct(report.get('accuracy'))}." if bal is not None
               else ""))
