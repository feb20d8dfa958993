r"""Pivot words found by attention (AMN, Li et al., IJCAI 2017): the words a trained memory network attends
to in reviews of *both* domains, with their polarity, checked against a general sentiment lexicon; and an
attention heat-map of a few reviews (PNG and HTML).

Definitions (no label is read anywhere here):

* **attention share** of word :math:`w` in domain :math:`D`: the mean, over the domain's reviews, of the
  attention mass the memory network's last hop puts on the occurrences of :math:`w` in a review,
  :math:`A_D(w) = \frac{1}{|D|}\sum_{r \in D} \sum_{i: r_i = w} \alpha_i(r)` (a review's weights sum
  to one, so :math:`\sum_w A_D(w) = 1`); and its **uniform share** :math:`U_D(w)`, the same with
  :math:`\alpha_i(r) = 1/|r|` (the share it would get if every word counted alike: its frequency).
* **pivot score**: the excess attention in the domain where it is smaller,
  :math:`\min\big(A_S(w) - U_S(w),\; A_T(w) - U_T(w)\big)` — high only when the network attends to the
  word more than to an average word in both domains (frequent function words get about their uniform
  share or less and drop out); words in fewer than ``min_docs`` reviews of either domain are left out.
* **polarity**: the class the trained network predicts for a review made of the word alone, and that
  class's probability.
"""
from __future__ import annotations

import html
import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .._io import write_json, write_text
from ..data.text import _CJK_RE
from ..errors import DataError
from ..nn.text import word_attention

SPECIAL = ("<pad>", "<unk>", "[PAD]", "[UNK]", "[CLS]", "[SEP]")
MIN_COUNT_HINT = "enough training texts to be kept (--text min_count)"
NO_SPACES_HINT = ("text written without spaces between words (Chinese, Japanese, Thai) gives no words: split it into "
                  "words first, or give --text cjk=chars (each character a token; docs/text.md, 'Text without "
                  "spaces')")


@dataclass
class Pivot:
    word: str
    score: float  # min(share_source - uniform share, share_target - uniform share)
    share_source: float
    share_target: float
    docs_source: int
    docs_target: int
    polarity: str  # the predicted class of the word on its own
    confidence: float  # that class's probability

    def row(self) -> list[str]:
        return [self.word, f"{100 * self.score:.2f}", f"{100 * self.share_source:.2f}", f"{100 * self.share_target:.2f}",
                str(self.docs_source), str(self.docs_target), self.polarity, f"{self.confidence:.2f}"]


def _ids(X: np.ndarray | torch.Tensor) -> torch.Tensor:
    ids = torch.as_tensor(np.asarray(X)).long()
    if ids.ndim != 2 or ids.numel() == 0:
        raise DataError(f"pivots: expected token ids (n, max_len) of at least one review, got shape {tuple(ids.shape)}")
    return ids


def attention_shares(network: torch.nn.Module, X: np.ndarray | torch.Tensor, vocab_size: int,
                     batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(share, uniform, docs)`` per token id over the reviews ``X`` (token ids, (n, L)): the mean attention
    mass per review (:math:`A_D`, sums to 1 over ids), the same under uniform attention (:math:`U_D`), and
    the number of reviews holding the id."""
    ids = _ids(X)
    share, uniform = np.zeros(vocab_size), np.zeros(vocab_size)
    docs = np.zeros(vocab_size, dtype=np.int64)
    for chunk in torch.split(ids, batch_size):
        alpha = word_attention(network, chunk).double().numpy()  # (b, L)
        flat = chunk.numpy()
        real = flat != 0
        np.add.at(share, flat.ravel(), alpha.ravel())
        np.add.at(uniform, flat.ravel(), (real / np.maximum(real.sum(1, keepdims=True), 1)).ravel())
        for row in flat:
            docs[np.unique(row[row != 0])] += 1
    share[0] = uniform[0] = 0.0
    return share / len(ids), uniform / len(ids), docs


def word_polarity(network: torch.nn.Module, token_ids: Sequence[int], max_len: int) -> np.ndarray:
    """Class probabilities ``(len(token_ids), C)`` of one-word reviews (each id alone, then padding)."""
    x = torch.zeros(len(token_ids), max_len, dtype=torch.float32)
    x[:, 0] = torch.as_tensor(list(token_ids), dtype=torch.float32)
    was = network.training
    network.eval()
    try:
        with torch.no_grad():
            out = network(x)
    finally:
        network.train(was)
    logits = out.logits if hasattr(out, "logits") else out
    return torch.softmax(logits, 1).numpy()


def _check_reused(path: Path, source: str, target: str, config: Any, given: bool = False) -> None:
    """A finished run in ``--out`` is reused only if it is this pair's amn run, with these training settings; a run
    the user ``given`` (``--run``) only if it is this pair's amn run."""
    from ..train.result import RunResult

    done = RunResult.read(path / "result.json")
    if given and ((done.source, done.target) != (source, target) or done.method != "amn"):
        raise DataError(f"--run {path}: it holds the {done.method} run of {done.source} -> {done.target}, not an amn run of "
                        f"{source} -> {target}; give the pair it was trained on, or that pair's amn run")
    if given:
        return
    asked = {k: v for k, v in config.fingerprint().items() if v is not None}
    other = {k: (done.config.get(k), v) for k, v in asked.items() if k in done.config and done.config[k] != v}
    if (done.source, done.target) != (source, target) or other:
        what = (f"a run of {done.source} -> {done.target}" if (done.source, done.target) != (source, target)
                else "a run with other settings (" + ", ".join(f"{k} {a!r}, asked {b!r}" for k, (a, b) in other.items())
                + ")")
        raise DataError(f"{path} holds {what}; give another --out (or delete that folder to retrain)")


def find_pivots(network: torch.nn.Module | Sequence[torch.nn.Module], source_X: np.ndarray, target_X: np.ndarray,
                vocab: Sequence[str], class_names: Sequence[str], top: int = 20, min_docs: int = 5) -> list[Pivot]:
    r"""The ``top`` pivot words of a trained ``memnet`` network, or of several trained with different seeds
    (shares and class probabilities averaged over them; module docstring): highest
    :math:`\min(A_S - U_S, A_T - U_T)` among words in at least ``min_docs`` reviews of each domain."""
    if top < 1 or min_docs < 1:
        raise DataError(f"pivots: top and min_docs must be at least 1, got {top} and {min_docs}")
    networks = [network] if isinstance(network, torch.nn.Module) else list(network)
    if not networks:
        raise DataError("pivots: no network given")
    if all(str(w) in SPECIAL for w in vocab):
        raise DataError(f"pivots: the vocabulary holds no word (only {', '.join(map(str, vocab))}): no word occurs in "
                        f"{MIN_COUNT_HINT}; {NO_SPACES_HINT}")
    s = [attention_shares(n, source_X, len(vocab)) for n in networks]
    t = [attention_shares(n, target_X, len(vocab)) for n in networks]
    s_share, s_uniform, s_docs = np.mean([x[0] for x in s], 0), s[0][1], s[0][2]
    t_share, t_uniform, t_docs = np.mean([x[0] for x in t], 0), t[0][1], t[0][2]
    score = np.minimum(s_share - s_uniform, t_share - t_uniform)
    ok = (s_docs >= min_docs) & (t_docs >= min_docs) & ~np.isin(np.asarray(vocab, dtype=object), SPECIAL)
    order = [int(i) for i in np.argsort(-np.where(ok, score, -np.inf), kind="stable") if ok[i]][:top]
    if not order:
        real = ~np.isin(np.asarray(vocab, dtype=object), SPECIAL)
        best = int(np.minimum(s_docs, t_docs)[real].max(initial=0))  # reviews of the rarer domain, best word
        if best >= 1:
            raise DataError(f"pivots: no word occurs in at least {min_docs} reviews of both domains (the most: {best}); "
                            f"lower --min-docs to {best}")
        raise DataError(f"pivots: no word of the vocabulary occurs in reviews of both domains; {NO_SPACES_HINT}")
    proba = np.mean([word_polarity(n, order, np.asarray(source_X).shape[1]) for n in networks], 0)
    return [Pivot(str(vocab[i]), float(score[i]), float(s_share[i]), float(t_share[i]), int(s_docs[i]), int(t_docs[i]),
                  str(class_names[int(p.argmax())]), float(p.max())) for i, p in zip(order, proba)]


# ---- a general sentiment lexicon, to check the pivots against ----

def load_lexicon(name_or_path: str) -> dict[str, float]:
    """A sentiment lexicon as ``{word: valence}`` (sign = polarity). ``vader``: the lexicon shipped in the
    PyPI package vaderSentiment (Hutto & Gilbert, ICWSM 2014; MIT licence; ``pip install --no-deps
    vaderSentiment``; read as a data file, the package is not imported). Otherwise a text file, one
    ``word<tab or space>valence`` per line (VADER's own format: further columns are ignored; lines starting
    with ``#`` are comments)."""
    if name_or_path == "vader":
        spec = importlib.util.find_spec("vaderSentiment")
        if spec is None or not spec.submodule_search_locations:
            raise DataError("--lexicon vader needs the package vaderSentiment: pip install --no-deps vaderSentiment "
                            "(or give a lexicon file: one 'word valence' per line)")
        path = Path(list(spec.submodule_search_locations)[0]) / "vader_lexicon.txt"
    else:
        path = Path(name_or_path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(f"--lexicon {name_or_path}: cannot read {path} ({exc.strerror})") from None
    lexicon: dict[str, float] = {}
    for n, line in enumerate(lines, 1):
        if line.startswith("#") or not line.strip():
            continue
        # tab-separated (VADER: a token may hold spaces), else white space
        parts = [f.strip() for f in line.split("\t")] if "\t" in line else line.split()
        if not parts[0]:
            continue
        try:
            lexicon[parts[0].lower()] = float(parts[1]) if len(parts) > 1 else 1.0
        except ValueError:
            raise DataError(f"--lexicon {path}: line {n} is not 'word valence': {line[:80]!r}") from None
    if not lexicon:
        raise DataError(f"--lexicon {path}: no entries")
    return lexicon


def _sign(class_name: str) -> int:
    name = class_name.lower()
    return 1 if name.startswith("pos") else -1 if name.startswith("neg") else 0


def lexicon_check(pivots: Iterable[Pivot], lexicon: dict[str, float]) -> dict[str, float | int | list[str]]:
    """How many pivots are sentiment words of ``lexicon``, and of those whose class is named positive/negative,
    how many have the lexicon's polarity (``polarity_skipped``: the classes of lexicon words not named so)."""
    pivots = list(pivots)
    inside = [p for p in pivots if _lexicon_word(p.word) in lexicon]
    signed = [p for p in inside if _sign(p.polarity) != 0]
    skipped = sorted({p.polarity for p in inside if _sign(p.polarity) == 0})
    agree = [p for p in signed if np.sign(lexicon[_lexicon_word(p.word)]) == _sign(p.polarity)]
    return {"pivots": len(pivots), "in_lexicon": len(inside), "share_in_lexicon": len(inside) / max(len(pivots), 1),
            "polarity_checked": len(signed), "polarity_agrees": len(agree), "polarity_skipped": skipped,
            "not_in_lexicon": [p.word for p in pivots if _lexicon_word(p.word) not in lexicon]}


def _lexicon_word(word: str) -> str:
    """``word`` as a lexicon spells it: a character bigram of ``cjk=chars`` (``"很 好"``) without its space
    (``"很好"``); a word bigram (``"not good"``) as it is."""
    a, sep, b = word.partition(" ")
    return a + b if sep and len(a) == len(b) == 1 and _CJK_RE.match(a) and _CJK_RE.match(b) else word


# ---- heat-map of a few reviews ----

def _tokens(ids: np.ndarray, vocab: Sequence[str]) -> list[str]:
    return [str(vocab[int(i)]) for i in ids if int(i) != 0]


def heatmap_html(rows: Sequence[tuple[str, list[str], np.ndarray]]) -> str:
    """HTML: one paragraph per review, each word on a red background as strong as its attention (relative to
    the review's largest weight), the weight in its tooltip."""
    parts = ["<!doctype html><meta charset='utf-8'><title>qianyi pivots: attention</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}span{padding:1px 2px;"
             "border-radius:3px;line-height:1.9}</style>",
             "<h1>Word attention of the memory network</h1><p>Background: the last hop's attention weight of each "
             "word, relative to the largest in its review.</p>"]
    for title, words, alpha in rows:
        top = float(alpha.max()) if len(alpha) else 1.0
        spans = "".join(f"<span title='{a:.3f}' style='background:rgba(220,30,30,{a / top:.2f})'>{html.escape(w)}</span> "
                        for w, a in zip(words, alpha))
        parts.append(f"<h3>{html.escape(title)}</h3><p>{spans}</p>")
    return "\n".join(parts) + "\n"


def heatmap_png(rows: Sequence[tuple[str, list[str], np.ndarray]], path: str | Path, words_per_line: int = 14,
                max_words: int = 70) -> None:
    """The same heat-map as a PNG (the first ``max_words`` words of each review)."""
    from matplotlib import colormaps

    from .._report import figure, save_figure

    # the header takes 2 steps; each review a title, its lines and 1.5 steps of space (as drawn below)
    lines_needed = 2 + sum(1.5 + max(1, (min(len(w), max_words) + words_per_line - 1) // words_per_line)
                           for _, w, _ in rows)
    fig = figure((12, 0.32 * lines_needed + 0.5))  # detached from pyplot: no backend chosen
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    step = 1.0 / (lines_needed + 1)
    y = 1.0 - step
    cmap = colormaps["Reds"]
    ax.text(0.01, y, "AMN's attention per word: the darker the red, the more attention (relative to the review's "
            "most attended word, the darkest)", fontsize=8, style="italic", va="center")
    y -= 2 * step
    for title, words, alpha in rows:
        ax.text(0.01, y, title, fontsize=9, fontweight="bold", va="center")
        y -= step
        top = float(alpha.max()) if len(alpha) else 1.0
        for k, (w, a) in enumerate(list(zip(words, alpha))[:max_words]):
            if k and k % words_per_line == 0:
                y -= step
            ax.text(0.01 + (k % words_per_line) / words_per_line * 0.98, y, w[:12], fontsize=8, va="center",
                    bbox=dict(boxstyle="round,pad=0.15", fc=cmap(0.85 * a / top), ec="none"))
        y -= 1.5 * step
    save_figure(fig, path)


def heatmap_rows(network: torch.nn.Module, X: np.ndarray, vocab: Sequence[str], titles: Sequence[str]
                 ) -> list[tuple[str, list[str], np.ndarray]]:
    """``(title, words, attention)`` per review of ``X`` (token ids), padding dropped."""
    ids = _ids(X)
    alpha = word_attention(network, ids).numpy()
    return [(t, _tokens(row, vocab), a[row != 0]) for t, row, a in zip(titles, ids.numpy(), alpha)]


def pivots_table(pivots: Sequence[Pivot], check: dict | None = None, lexicon: str | None = None) -> str:
    """The pivots as a Markdown table, with the lexicon check under it."""
    from .._report import markdown_table

    header = ["word", "pivot score (%)", "share S (%)", "share T (%)", "reviews S", "reviews T", "polarity", "p"]
    text = markdown_table(header, [p.row() for p in pivots])
    text += ("\n\nshare S/T: the word's mean share of AMN's attention per review of the domain (every review read, "
             "texts only, whatever the training cap); pivot score: the smaller of the two shares above what uniform "
             "attention would give the word; reviews S/T: reviews holding the word; polarity, p: the class the network "
             "predicts for the word on its own, and that class's probability.")
    if check is not None:
        skipped = check.get("polarity_skipped") or []
        why = f"class {', '.join(skipped)} not named positive or negative (pos..., neg...)"
        polarity = (f"polarity not checked ({why})" if skipped and not check["polarity_checked"]
                    else f"polarity agrees for {check['polarity_agrees']} of {check['polarity_checked']}"
                    + (f" (not checked for words of {why})" if skipped else ""))
        text += (f"\n\nLexicon {lexicon}: {check['in_lexicon']} of {check['pivots']} pivots are sentiment words "
                 f"({100 * check['share_in_lexicon']:.0f}%); {polarity}. Not in the lexicon: "
                 f"{', '.join(check['not_in_lexicon']) or '-'}.")
    return text


def write_pivots(out: str | Path, pivots: Sequence[Pivot], check: dict | None, rows, meta: dict) -> dict[str, str]:
    """pivots.json, pivots.md (the table), attention.html and attention.png in ``out`` (each atomically)."""
    out = Path(out)
    files = {"json": str(out / "pivots.json"), "md": str(out / "pivots.md"), "html": str(out / "attention.html"),
             "png": str(out / "attention.png")}
    # non-ASCII words as themselves (很好, not \u5f88\u597d): pivots.json is read by people, never hashed
    write_json(files["json"], {**meta, "pivots": [asdict(p) for p in pivots], "lexicon_check": check}, ensure_ascii=False)
    write_text(files["md"], f"# Pivot words: {meta['source']} -> {meta['target']}\n\n"
               + pivots_table(pivots, check, meta.get("lexicon")) + "\n")
    write_text(files["html"], heatmap_html(rows))
    heatmap_png(rows, files["png"])
    return files


@dataclass
class PivotResult:
    pivots: list[Pivot]
    check: dict | None
    files: dict[str, str]
    meta: dict

    def table(self) -> str:
        return pivots_table(self.pivots, self.check, self.meta.get("lexicon"))


def pivots(source: str, target: str, out: str | Path, run_dir: str | Path | None = None, config=None,
           top: int = 20, min_docs: int = 5, lexicon: str | None = None, reviews: int = 3,
           data_dir: str | Path | None = None, max_samples: int | None = None, seeds: int | Sequence[int] = 1,
           text: dict | None = None, log=lambda s: None) -> PivotResult:
    """Train AMN on ``source -> target`` with ``seeds`` (a count N: the config's seed, +1, ..., +N-1; or distinct
    seeds, the config's seed then unused) into ``out/run``, ``out/run-seed1``, ... (the first seed, the second, ...;
    each reused if finished already), or use the finished run ``run_dir`` (one seed); then find the
    pivots over every review of both domains (texts only: labels are not read), averaged over the runs, check
    them against ``lexicon`` and draw the first run's attention on ``reviews`` reviews per domain. ``text``:
    load_task's text settings for the training (e.g. ``{"vectors": "minilm"}``)."""
    from dataclasses import replace

    from ..data.tasks import load_task
    from ..train.artefact import load_domain_for, load_model
    from ..train.config import TrainConfig, normalise_seeds
    from ..train.run import run as train_run

    config = config or TrainConfig()
    seed_list = normalise_seeds(seeds, "pivots", start=config.seed)
    if run_dir is not None and len(seed_list) != 1:
        raise DataError(f"pivots: --run gives one finished run, so seeds is 1 with it, got {seeds!r}")
    for name, v in (("top", top), ("min_docs", min_docs), ("reviews", reviews)):  # before any training
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "reviews" else 1):
            raise DataError(f"pivots: {name} must be a whole number >= {0 if name == 'reviews' else 1}, got {v!r}")
    out = Path(out)
    words = load_lexicon(lexicon) if lexicon else None  # before any training: a missing lexicon stops at once
    paths = [Path(run_dir)] if run_dir is not None else [out / ("run" if k == 0 else f"run-seed{k}")
                                                         for k in range(len(seed_list))]
    task, reused = None, []
    for k, path in enumerate(paths):
        if (path / "result.json").exists():
            _check_reused(path, source, target, replace(config, seed=seed_list[k]), given=run_dir is not None)
            if run_dir is None:
                reused.append(path)
            continue
        if run_dir is not None:
            raise DataError(f"--run {run_dir}: no finished run there (result.json missing)")
        if task is None:
            task = load_task(source, target, max_samples=max_samples, data_dir=data_dir, text=text)
            if not (task.preprocessing or {}).get("text"):
                raise DataError(f"pivots: {source} -> {target} is not a text task (pivot words come from AMN's word "
                                "attention on reviews); give text domains, e.g. amazon/books amazon/kitchen")
            log(task.describe())
        train_run("amn", task, replace(config, seed=seed_list[k]), out=path)
        log(f"amn {source} -> {target} seed {seed_list[k]}: trained, written to {path}")
    models = [load_model(p) for p in paths]
    text_pre = (models[0].meta.get("preprocessing") or {}).get("text")
    if not text_pre:
        raise DataError(f"{paths[0]}: not a model of a text task (no vocabulary in model.json)")
    from ..data.text import MAX_LEN, MAX_VOCAB, MIN_COUNT, TOKEN_OPTIONS

    # the settings asked, the defaults included: a run made with --text max_len=64 is not reused without it
    defaults = {"max_len": MAX_LEN, "max_vocab": MAX_VOCAB, "min_count": MIN_COUNT, "bigrams": False, "vectors": None,
                **TOKEN_OPTIONS}
    asked_text = {**defaults, **(text or {})}
    for p, m in zip(paths, models):
        recorded = (m.meta.get("preprocessing") or {}).get("text") or {}
        # a setting a run does not record is its default (vectors is recorded only when set)
        other = {k: recorded.get(k, defaults.get(k)) for k, v in asked_text.items() if recorded.get(k, defaults.get(k)) != v}
        if other:
            raise DataError(f"{p} was trained with other text settings ({other}, asked "
                            f"{ {k: asked_text[k] for k in other} }); give another --out")
    if reused:  # and on this data (another --max-samples keeps the pair's name)
        from ..methods.registry import get_method
        from ..train.result import RunResult
        from ..train.run import run_fingerprint

        task = task or load_task(source, target, max_samples=max_samples, data_dir=data_dir, text=text)
        now = run_fingerprint(get_method("amn"), config, task)
        for p in reused:
            then = RunResult.read(p / "result.json").fingerprint
            if then.get("data") is not None and (then.get("data"), then.get("sizes")) != (now["data"], now["sizes"]):
                raise DataError(f"{p} was trained on other data (source/val/target/test sizes {then.get('sizes')}, "
                                f"now {now['sizes']}: another --max-samples or changed files); give another --out")
    vocab = text_pre["vocab"]
    if any((m.meta.get("preprocessing") or {}).get("text", {}).get("vocab") != vocab for m in models[1:]):
        raise DataError(f"pivots: the runs in {', '.join(map(str, paths))} have different vocabularies; "
                        "use runs of one task")
    model = models[0]
    S, T = load_domain_for(model, source, data_dir), load_domain_for(model, target, data_dir)
    found = find_pivots([m.network for m in models], S.X, T.X, vocab, model.class_names, top=top, min_docs=min_docs)
    check = lexicon_check(found, words) if words is not None else None
    k = max(0, int(reviews))

    def pick(d) -> list[int]:  # the k shortest reviews of at least 20 words (or of the longest length there is)
        n = (np.asarray(d.X) != 0).sum(1)
        return [int(i) for i in np.argsort(n, kind="stable") if n[i] >= min(20, int(n.max()))][:k]

    si, ti = pick(S), pick(T)
    rows = (heatmap_rows(model.network, S.X[si], vocab, [f"{source}, review {i}" for i in si]) if si else []) + \
           (heatmap_rows(model.network, T.X[ti], vocab, [f"{target}, review {i}" for i in ti]) if ti else [])
    meta = {"source": source, "target": target, "runs": [str(p) for p in paths], "top": top, "min_docs": min_docs,
            "lexicon": lexicon, "reviews_source": len(S), "reviews_target": len(T),
            "target_accuracy": [json.loads((p / "result.json").read_text(encoding="utf-8")).get("target_accuracy")
                                for p in paths]}
    files = write_pivots(out, found, check, rows, meta)
    return PivotResult(found, check, files, meta)


__all__ = ["Pivot", "PivotResult", "pivots", "pivots_table", "attention_shares", "find_pivots", "heatmap_html", "heatmap_png", "heatmap_rows",
           "lexicon_check", "load_lexicon", "word_polarity", "write_pivots"]
