"""CLI subcommands ``measure``, ``transferability``, ``layers`` and ``advise`` (loaded by :mod:`qianyi.cli`).

Each prints text tables and, with ``--out DIR``, writes JSON + Markdown + PNG there (atomically).
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..errors import ConfigError, DataError
from ..train.config import normalise_seeds, positive_int, seed_int, share, split_seed_int
from .metrics import DEFAULT_METRICS, METRICS

Handler = Callable[[argparse.Namespace], int]
ADAPT_DEFAULT = "dan,dann"
ADVISE_METRICS = ("mk-mmd", "a-distance")  # advise()'s default


def add_commands(sub: argparse._SubParsersAction, train_args: Callable[..., None]
                 ) -> dict[str, Handler]:
    m = sub.add_parser(
        "measure", help="distances between two domains, in input space and per layer (--layers)",
        description="Distances between SOURCE and TARGET held-out inputs (no labels used): "
                    + "; ".join(f"{k}: {v.help}" for k, v in METRICS.items())
                    + ". With --layers: per-layer profile of a source-only network and of adapted ones.",
        epilog="example: qianyi measure mnist digits --layers --adapt dan,dann --out runs/measure")
    m.add_argument("source", help="source dataset spec, e.g. mnist")
    m.add_argument("target", help="target dataset spec, e.g. digits")
    m.add_argument("--layers", action="store_true", help="profile every layer of trained networks")
    m.add_argument("--adapt", default=None, help="with --layers: methods to profile besides source-only "
                   f"(comma-separated; 'none' for none; default {ADAPT_DEFAULT})")
    m.add_argument("--model", default=None, metavar="MODEL.pt", help="with --layers: profile this saved network "
                   "in place of training the source-only one (the DIR of `qianyi run --out DIR`, or its model.pt); the "
                   "--adapt methods still train (--adapt none: none)")
    _measure_args(m)
    m.add_argument("--seed", type=seed_int, default=0, help="seed of the sampling and of any training (default 0)")
    m.add_argument("--out", default=None, help="write measure.json, measure.md, profile.png (and runs/) here")
    train_args(m)
    for group in m._action_groups:  # measure without --layers trains nothing: say whom these flags are for
        if group.title and group.title.startswith(("training", "fine-tuning")):
            group.title = group.title.split(" (")[0] + " (only with --layers: the networks it profiles)"

    t = sub.add_parser(
        "transferability", help="Yosinski et al.'s layer transferability protocol: BnB, BnB+, AnB, AnB+ curves",
        description="Split DATASET's classes into halves A and B (the similar pair); with --dissimilar OTHER, also "
                    "A = as many classes of OTHER (the dissimilar pair). Train base networks, then for each k copy "
                    "the first k layer groups from base B or base A, frozen or fine-tuned, and train the rest on B.",
        epilog="example: qianyi transferability mnist --dissimilar fashion --seeds 3 --max-samples 2000 "
               "--epochs 5 --out runs/transfer")
    t.add_argument("dataset", help="labelled dataset spec whose classes are split into tasks A and B")
    t.add_argument("--dissimilar", default=None, metavar="OTHER", help="a second dataset for the dissimilar pair")
    t.add_argument("--ks", default=None, help="layer counts to copy, e.g. 1,2,3,4 (default: all below the logits)")
    t.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..N-1 (default 3)")
    t.add_argument("--split-seed", type=seed_int, default=0, help="seed of the class split (default 0)")
    t.add_argument("--out", default=None, help="write transferability.json/.md/.png and runs/ here (resumable)")
    train_args(t)
    for flag in TRANSFERABILITY_SETS:  # the protocol sets these itself: refused, so not offered
        _help(t, flag, argparse.SUPPRESS)
    _help(t, "--max-samples", "cap each task's training split (A's, B's) at N images, stratified; the test split "
                              "(a fifth of each class) is kept whole")

    ly = sub.add_parser(
        "layers", help="Mou et al.'s E/H/O experiment: which layers transfer, by INIT, MULT and INIT+MULT",
        description="Supervised transfer from a labelled source task S to a target task T with few labels "
                    "(docs/measure.md, 'Which layers transfer'). For each pair: a network trained on S; then "
                    "networks for T that copy E, E+H or E+H+O from it, frozen or fine-tuned (INIT), train on S and T "
                    "at once with those groups shared, loss lam*CE_T + (1-lam)*CE_S (MULT, lam chosen on T's "
                    "validation split), or both (INIT+MULT). Every T network keeps its best epoch on T's validation "
                    "split and is scored once on T's test split.",
        epilog="example: qianyi layers --pairs 'amazon/books->amazon/dvd,amazon/books->amazon/kitchen' "
               "--n-labels 200 --seeds 3 --threads 1 --no-progress --out runs/layers")
    ly.add_argument("--pairs", nargs="+", required=True, metavar="S->T",
                    help="'SOURCE->TARGET' text pairs, both labelled (space-separated, as bench's; commas work too)")
    ly.add_argument("--n-labels", type=int, default=200, help="labelled T training samples (default 200)")
    ly.add_argument("--n-val", type=int, default=200, help="T validation samples (epoch and lam choice; default 200)")
    ly.add_argument("--lambdas", default="0.25,0.5,0.75",
                    help="MULT's lam grid, the weight of the T loss, each in (0, 1) (default 0.25,0.5,0.75)")
    ly.add_argument("--seeds", type=positive_int, default=3, help="seeds 0..N-1 (default 3)")
    ly.add_argument("--split-seed", type=split_seed_int, default=0, help="seed of every data split (default 0)")
    ly.add_argument("--backbone", default=None, choices=("embbag", "textcnn"),
                    help="text encoder (default embbag)")
    ly.add_argument("--out", default=None, help="write layers.json/.md/.png and runs/ here (resumable)")
    train_args(ly)

    a = sub.add_parser(
        "advise", help="measure a pair and recommend: transfer or not, layers to freeze, where and how to adapt",
        description="Distances per layer and linear probes on a quickly trained source network -> recommendations "
                    "with the numbers behind them. Uses source labels and target inputs only.",
        epilog="example: qianyi advise mnist digits --out runs/advise")
    a.add_argument("source", help="source dataset spec (labelled), e.g. mnist")
    a.add_argument("target", help="target dataset spec (its labels are not read), e.g. digits")
    a.add_argument("--model", default=None, metavar="MODEL.pt", help="a trained source network to measure "
                   "(a `qianyi run` folder or its model.pt; default: train one source-only, --epochs epochs)")
    _measure_args(a, ADVISE_METRICS)
    a.add_argument("--seed", type=seed_int, default=0, help="training seed (default 0)")
    a.add_argument("--out", default=None, help="write advice.json, advice.md, profile.png here")
    train_args(a, checkpoints=False)  # (advise keeps no checkpoint: a rerun starts afresh)

    pv = sub.add_parser(
        "pivots", help="AMN's pivot words: train the attention memory network on S -> T, list the words it attends "
                       "to in both domains",
        description="Train AMN (method amn: a memory network whose word attention is shared by the sentiment "
                    "classifier and an adversarial domain classifier) on SOURCE -> TARGET text, or use a finished "
                    "amn run (--run). Pivot score of a word: its excess attention (mean attention share per review "
                    "minus the share uniform attention would give it) in SOURCE or in TARGET, whichever is smaller; "
                    "polarity: the class the network predicts for the word alone. No labels "
                    "are read for the pivots. Writes pivots.json/.md, attention.html/.png (a few short reviews).",
        epilog="example: qianyi pivots amazon/books amazon/kitchen --lexicon vader --threads 1 --out runs/pivots/b-k")
    pv.add_argument("source", help="source text spec, e.g. amazon/books")
    pv.add_argument("target", help="target text spec, e.g. amazon/kitchen")
    pv.add_argument("--run", default=None, metavar="DIR", help="a finished amn run to read (default: train one "
                    "into OUT/run, or reuse it if finished)")
    pv.add_argument("--top", type=int, default=20, help="pivot words to list (default 20)")
    pv.add_argument("--min-docs", type=int, default=5, help="a pivot occurs in at least this many reviews of each "
                    "domain (default 5)")
    pv.add_argument("--lexicon", default=None, help="check the pivots against a sentiment lexicon: 'vader' (pip "
                    "install --no-deps vaderSentiment) or a file of 'word valence' lines")
    pv.add_argument("--seed", type=seed_int, default=0, help="training seed of the (first) amn run (default 0)")
    pv.add_argument("--seeds", type=positive_int, default=1, help="amn runs (seeds --seed, +1, ...) whose attention and "
                    "polarity are averaged (default 1)")
    pv.add_argument("--reviews", type=int, default=3, help="reviews per domain in the attention heat-map (default 3)")
    pv.add_argument("--text", default=None, metavar="K=V,...", help="text settings of the amn runs, as on qianyi run "
                    "(e.g. vectors=minilm: the memory network's word memories start from MiniLM's word vectors)")
    pv.add_argument("--out", required=True, help="write pivots.json/.md, attention.html/.png (and run/) here")
    train_args(pv)
    return {"measure": _measure, "transferability": _transferability, "layers": _layers, "advise": _advise,
            "pivots": _pivots}


def _pivots(args: argparse.Namespace) -> int:
    from ..data.text import parse_text_settings
    from .pivots import pivots

    res = pivots(args.source, args.target, args.out, run_dir=args.run, config=_config(args, args.seed),
                 top=args.top, min_docs=args.min_docs, lexicon=args.lexicon, reviews=args.reviews,
                 data_dir=args.data_dir, max_samples=args.max_samples, seeds=args.seeds,
                 text=parse_text_settings(args.text), log=lambda s: print(s, file=sys.stderr))
    print(res.table())
    _written(res.files)
    return 0


# training flags transferability refuses: it copies/freezes k groups itself and keeps each network's last epoch
TRANSFERABILITY_SETS = ("--init-from", "--init-layers", "--freeze", "--l2sp", "--copied-lr-mult", "--select",
                        "--validators", "--selection-samples")


def _help(p: argparse.ArgumentParser, flag: str, text: str) -> None:
    """Reword an inherited option's help where the command gives it another meaning."""
    next(a for a in p._actions if flag in a.option_strings).help = text


def _measure_args(p: argparse.ArgumentParser, metrics: tuple[str, ...] = DEFAULT_METRICS) -> None:
    """The options measure and advise share; ``metrics``: the default, as their Python functions' (the API's)."""
    p.add_argument("--metrics", default=",".join(metrics),
                   help=f"comma-separated, of {', '.join(METRICS)} (default {','.join(metrics)})")
    p.add_argument("--samples", type=int, default=1000, help="inputs per domain used by the distances (default 1000)")
    p.add_argument("--permutations", type=int, default=200, help="MMD permutation test size (0: no test; default 200)")
    p.add_argument("--val-fraction", type=share, default=0.1, metavar="F",
                   help="share of the source held out (default 0.1): the source inputs the distances compare, and "
                        "the networks of --layers train on the rest; raise it on a small source")
    p.add_argument("--text", default=None, metavar="K=V,...", help="text settings, as on qianyi run (e.g. "
                   "max_len=64,vectors=minilm): a text pair is read with them, so a --model trained with them fits")
    p.add_argument("--vector-transform", default="auto", choices=["auto", "none", "log1p", "l1", "l2"],
                   help="vectors: the transform, as on qianyi run (a --model trained with it fits)")
    p.add_argument("--no-standardize", dest="standardize", action="store_false",
                   help="vectors: no z-score, as on qianyi run (a --model trained so fits)")


def _config(args: argparse.Namespace, seed: int = 0):
    from ..train.config import config_from_args

    return config_from_args(args, seed=seed)


def _load(args: argparse.Namespace):
    from ..data.tasks import load_task

    from ..data.text import parse_text_settings

    task = load_task(args.source, args.target, max_samples=args.max_samples, data_dir=args.data_dir,
                     text=parse_text_settings(getattr(args, "text", None)),
                     vector_transform=getattr(args, "vector_transform", "auto"),
                     standardize=getattr(args, "standardize", True), val_fraction=getattr(args, "val_fraction", 0.1),
                     optional_target_labels=True)  # measure and advise need no target label
    print(task.describe(), file=sys.stderr)
    return task


def _written(files: dict[str, str]) -> None:
    if files:
        print("\nwritten: " + ", ".join(str(p) for p in files.values()))


def _measure(args: argparse.Namespace) -> int:
    from .report import measure

    from ..methods.registry import get_method

    given = args.adapt
    args.adapt = ADAPT_DEFAULT if given is None else given
    adapt = [] if args.adapt.strip().lower() in ("", "none") else \
        list(dict.fromkeys(x.strip() for x in args.adapt.split(",") if x.strip()))  # (each profiled once)
    for name in adapt:  # a typo fails now, not after the source network has trained
        get_method(name)
    if not args.layers and (args.init_from or args.freeze or args.init_layers is not None or args.l2sp
                            or args.model or given is not None):
        raise ConfigError("--model/--adapt/--init-from/--init-layers/--freeze/--l2sp are about networks: they apply "
                          "with --layers (without it, measure compares the inputs and reads or trains no network)")
    res = measure(_load(args), layers=args.layers, adapt=adapt, model=args.model, config=_config(args, args.seed),
                  metrics=args.metrics, samples=args.samples, permutations=args.permutations, seed=args.seed,
                  out=args.out, log=lambda s: print(s, file=sys.stderr))
    print(res.table())
    _written(res.files)
    return 0


def _transferability(args: argparse.Namespace) -> int:
    from ..data.canvas import common_canvas, to_canvas
    from ..data.tasks import load_domain
    from .transferability import dissimilar_pair, similar_pair, transferability

    normalise_seeds(args.seeds, "transferability")  # before the data are read
    given = [flag for flag, on in (("--init-from", args.init_from), ("--init-layers", args.init_layers is not None),
                                   ("--freeze", args.freeze), ("--l2sp", args.l2sp),
                                   ("--copied-lr-mult", args.copied_lr_mult != 1.0)) if on]
    if given:
        raise DataError(f"transferability sets --init-from/--init-layers/--freeze itself (k = 1..) and trains its "
                        f"copies as the protocol does, without L2-SP or another learning rate: leave out "
                        f"{', '.join(given)}")
    from ..train.config import TrainConfig

    if args.select != "last" or args.validators or args.selection_samples != TrainConfig.selection_samples:
        raise DataError("transferability keeps each network's last epoch: the only unlabelled data its runs hold "
                        "is B's test split, which no choice of epoch may look at; leave out --select/--validators/"
                        "--selection-samples")
    d = load_domain(args.dataset, args.data_dir)
    pairs = [similar_pair(d, args.split_seed, args.max_samples)]
    if args.dissimilar and args.dissimilar.strip() == args.dataset.strip():
        raise DataError(f"--dissimilar {args.dissimilar!r} is the dataset itself: its 'dissimilar' pair would be the "
                        "similar one again; give another dataset (e.g. fashion for mnist), or leave --dissimilar out")
    if args.dissimilar:
        other = load_domain(args.dissimilar, args.data_dir)
        if other.sample_shape != d.sample_shape:
            if not (d.is_image and other.is_image):
                raise DataError(f"--dissimilar {args.dissimilar!r} has samples of shape {other.sample_shape}, "
                                f"{args.dataset!r} {d.sample_shape}: a network reads one kind of input; give "
                                "a dissimilar set of the same kind (images of any size are brought to one canvas)")
            canvas = common_canvas(d, other)
            d, other = to_canvas(d, canvas), to_canvas(other, canvas)
            pairs = [similar_pair(d, args.split_seed, args.max_samples)]
        pairs.append(dissimilar_pair(other, pairs[0].b, args.split_seed, args.max_samples))
    for p in pairs:
        print(f"{p.name}: A {len(p.a.train)} train, B {len(p.b.train)} train + {len(p.b.test)} test", file=sys.stderr)
    try:
        ks = [int(k) for k in args.ks.split(",") if k.strip()] if args.ks else None
    except ValueError:
        raise DataError(f"--ks: expected whole numbers like 1,2,3, got {args.ks!r}") from None
    res = transferability(pairs, ks, args.seeds, _config(args), args.out,
                          log=lambda s: print(s, file=sys.stderr))
    print(res.table())
    _written(res.files)
    return 0


def _layers(args: argparse.Namespace) -> int:
    from .layers_text import layer_transfer, load_pair

    normalise_seeds(args.seeds, "layers")  # before the data are read
    if args.init_from or args.freeze or args.init_layers is not None or args.l2sp or args.select != "last":
        raise DataError("layers sets --init-from/--init-layers/--freeze and --select (T validation) itself; "
                        "leave them out")
    try:
        lambdas = [float(x) for x in args.lambdas.split(",") if x.strip()]
    except ValueError:
        raise DataError(f"--lambdas: expected numbers like 0.25,0.5,0.75, got {args.lambdas!r}") from None
    pairs = [load_pair(p.strip(), args.n_labels, args.n_val, args.split_seed, args.data_dir, args.max_samples)
             for arg in args.pairs for p in arg.split(",") if p.strip()]
    for p in pairs:
        print(p.describe(), file=sys.stderr)
    res = layer_transfer(pairs, args.seeds, lambdas, _config(args), args.out, args.backbone,
                         log=lambda s: print(s, file=sys.stderr))
    print(res.table())
    _written(res.files)
    return 0


def _advise(args: argparse.Namespace) -> int:
    from .advisor import advise

    import shlex

    # the printed `qianyi run` command loads the data as advise did (a text task's vocabulary depends on it)
    command = "qianyi run" if args.data_dir is None else f"qianyi --data-dir {shlex.quote(str(args.data_dir))} run"
    res = advise(_load(args), model=args.model, config=_config(args, args.seed), metrics=args.metrics,
                 samples=args.samples, permutations=args.permutations, seed=args.seed, out=args.out,
                 log=lambda s: print(s, file=sys.stderr),
                 run_command=command, run_flags=" ".join(
                     ([f"--max-samples {args.max_samples}"] if args.max_samples is not None else [])
                     + ([f"--text {shlex.quote(args.text)}"] if args.text else [])
                     + ([f"--vector-transform {args.vector_transform}"] if args.vector_transform != "auto" else [])
                     + (["--no-standardize"] if not args.standardize else [])))
    print(res.report())
    _written(res.files)
    return 0
