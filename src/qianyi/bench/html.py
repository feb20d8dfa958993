"""An HTML report of a benchmark folder (``qianyi report DIR``; ``qianyi bench`` writes one too).

``DIR/report.html`` and its Markdown twin ``DIR/report.md`` hold: the results table with the gap
each method closes, the label-free against the ORACLE choice of epoch, training curves, a 2-D t-SNE
embedding of source and target features for each method, and the per-layer distance profile
(MMD). Figures are PNGs in ``DIR/report/``. The page checks its own images once loaded
(``data-images`` on ``<body>``: loaded/total), so a broken figure is visible to a test.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._io import sha256_file, write_text
from .._report import md_cell, md_cells, save_figure, subplots
from ..train.artefact import absolute_spec, load_model, read_model_meta
from ..train.engine import caller_rng_kept
from ..train.result import MODEL_FILE
from ..train.run import ORACLE_KEY
from ..train.store import RunStore, code_digest
from .runner import BenchResult, drawable

#: Samples per domain in the embedding and the distance profile.
EMBED_SAMPLES = 300


def _own_network(spec: object) -> bool:
    """Whether a run's fingerprint ``backbone`` is a network of the user's (keyed by architecture, or the older
    plain 'custom')."""
    return spec == "custom" or (isinstance(spec, dict) and spec.get("name") == "custom")


@caller_rng_kept()  # building networks draws initial weights: not from the caller's generators
def write_report(res: BenchResult, out: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                 embed: bool = True, log: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Write ``out/report.html``, ``out/report.md`` and their figures; return the files written."""
    out = Path(out)
    figs = out / "report"
    sections: list[tuple[str, str, Path | None]] = [
        ("Results", "Target accuracy (mean ± std over seeds) and the share of the source-only → oracle gap each "
                    "method closes. The oracle trains on target labels.", None),
    ]
    files = {"curves": _curves(res, figs / "curves.png")}
    sections.append(("Training curves", "Per epoch, mean over seeds: source validation accuracy (solid, what "
                                        "selection may see) and target test accuracy (dashed, ORACLE: recorded "
                                        "for this report, never read by training or selection).", files["curves"]))
    own = [r for r in res.runs if _own_network((r.fingerprint or {}).get("backbone"))]
    if embed and res.out is not None and own:  # model.json cannot rebuild it: only its maker has the class
        embed = False
        if log:
            log("no embedding/profile: the runs trained a network of your own, which the report cannot rebuild "
                "(in Python, qianyi.load_model(RUN_DIR, network=<an instance of it>) loads each run's)")
    if embed and res.out is not None:
        try:
            emb, prof, note = _embedding_and_profile(res, figs, data_dir, log)
        except Exception as exc:  # the report must not be lost to a figure that cannot be made
            emb = prof = None
            note = f"no embedding/profile: {type(exc).__name__}: {exc}"
            if log:
                log(note)
        if emb is not None:
            files["embedding"] = emb
            sections.append(("Feature embedding", f"t-SNE of the bottleneck features of up to {EMBED_SAMPLES} "
                                                  f"source and {EMBED_SAMPLES} target samples (inputs only), "
                                                  f"seed 0, {note}.", emb))
        if prof is not None:
            files["profile"] = prof
            sections.append(("Distance per layer", "MMD between source and target at every layer of each "
                                                   "method's network (seed 0): adaptation should lower it in the "
                                                   "adapted layers.", prof))
    if res.out is not None and Path(res.out).resolve() != out.resolve():  # (report --out: written elsewhere)
        sections[0] = (sections[0][0], f"{sections[0][1]} The bench folder: {str(Path(res.out).resolve())!r}.",
                       sections[0][2])
    tables = res.report()
    page = [(heading, text, fig, tables if heading == "Results" else None) for heading, text, fig in sections]
    title = "qianyi benchmark: " + ", ".join(f"{s} → {t}" for s, t in res.pairs)
    files["html"] = write_text(out / "report.html", page_html(title, page, out))
    title = "qianyi benchmark: " + ", ".join(f"{md_cell(s)} → {md_cell(t)}" for s, t in res.pairs)
    files["md"] = write_text(out / "report.md", page_markdown(title, page, out))
    return files


def _curves(res: BenchResult, path: Path) -> Path:
    from matplotlib import colormaps  # more than 10 methods: tab20, so no two share a colour
    fig, axes = subplots(1, len(res.pairs), figsize=(4.8 * len(res.pairs) + 2.8, 3.6), squeeze=False)
    colours = {}
    for ax, pair in zip(axes[0], res.pairs):
        for k, m in enumerate(res.methods):
            runs = [r for r in res.runs if r.method == m and (r.source, r.target) == pair and r.history]
            if not runs:
                continue
            colour = colours.setdefault(m, colormaps["tab20"](k % 20) if len(res.methods) > 10 else f"C{k}")
            n = min(len(r.history) for r in runs)
            epochs = np.arange(1, n + 1)
            sv = np.mean([[row.get("source_val_acc", np.nan) for row in r.history[:n]] for r in runs], 0)
            marker = "o" if n <= 20 else None  # a one-epoch curve is a point: drawn, not an empty axes
            ax.plot(epochs, 100 * sv, color=colour, marker=marker, markersize=3,
                    label=drawable(res.label(m)))
            tt = np.mean([[row.get(ORACLE_KEY, np.nan) for row in r.history[:n]] for r in runs], 0)
            if np.isfinite(tt).any():
                ax.plot(epochs, 100 * tt, color=colour, linestyle="--", marker=marker, markersize=3)
        ax.set_title(drawable(f"{pair[0]} → {pair[1]}"), fontsize=9)
        lo, hi = ax.get_xlim()
        ax.set_xlim(min(lo, 0.5), max(hi, 1.5))
        ax.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)  # whole epochs, even for one
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
    axes[0][0].plot([], [], color="grey", label="solid: source validation (labelled source)")
    axes[0][0].plot([], [], color="grey", linestyle="--", label="dashed: target test (ORACLE, never chose anything)")
    entries: dict[str, Any] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    # beside the last panel, outside the axes: it covers no curve
    axes[0][-1].legend(list(entries.values()), list(entries), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    return save_figure(fig, path)


def _embedding_and_profile(res: BenchResult, figs: Path, data_dir: str | os.PathLike | None,
                           log: Callable[[str], None] | None = None) -> tuple[Path | None, Path | None, str]:
    from sklearn.manifold import TSNE

    from ..measure.profile import layer_profile, plot_profiles
    from ..nn.inference import predict_features
    from ..train.artefact import load_domain_for

    pair = res.pairs[0]
    store = RunStore(res.out / "runs")
    found: list[tuple[str, dict, Path]] = []  # (method, its model.json, its run folder)
    for m in res.methods:
        runs = [r for r in res.runs if r.method == m and (r.source, r.target) == pair and r.seed == 0
                and r.model_file == MODEL_FILE]  # networks only (a shallow method has no features to embed)
        folder = store.path(runs[0].fingerprint) if runs else None
        if folder is not None and (folder / "model.json").exists():
            found.append((m, read_model_meta(folder)[0], folder))
    if not found:
        return None, None, "no saved models with model.json (runs made before qianyi wrote them)"
    # the figures depend only on these models, the pair and the data: a rerun of a finished bench (to resume it,
    # add a method, print the tables) reuses them instead of redrawing (a t-SNE per method: the slow part). The
    # key needs model.json and the files only: a model is loaded (a network built, model.pt read) to redraw
    where = tuple(_where(spec, found[0][1]) for spec in pair)
    folders = [(m, folder) for m, _, folder in found]
    made_of = _figures_key(where, data_dir, folders)
    key_file, emb_file, prof_file = figs / "embedding.key", figs / "embedding.png", figs / "profile.png"
    drawn = key_file.read_text(encoding="utf-8", errors="surrogateescape").split("\n") if key_file.is_file() else []
    if emb_file.is_file() and prof_file.is_file() and drawn and drawn[0].strip() == made_of:
        return emb_file, prof_file, f"{pair[0]} → {pair[1]}"
    code = drawn[1].strip().removeprefix("code ") if len(drawn) > 1 else ""
    if log and code and code != code_digest() and _figures_key(where, data_dir, folders, code) == drawn[0].strip():
        log("redrawing the report figures: the qianyi code changed since they were drawn (the same models; a "
            "t-SNE and a layer profile per method)")
    models = [(m, load_model(folder)) for m, _, folder in found]
    fig, axes = subplots(1, len(models), figsize=(3.2 * len(models), 3.2), squeeze=False)
    profiles = []
    read: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for ax, (m, model) in zip(axes[0], models):
        # each model sees the data as its run did (canvas, column order, tokeniser: model.json), not the
        # defaults of load_task, which a bench with --text, --backbone or --max-samples did not use
        key = json.dumps(model.meta.get("preprocessing", {}), sort_keys=True, default=str)
        if key not in read:
            rng = np.random.default_rng(0)
            src, tgt = (load_domain_for(model, _where(spec, model.meta), data_dir) for spec in pair)
            read[key] = (src.X[rng.permutation(len(src))[:EMBED_SAMPLES]],
                         tgt.X[rng.permutation(len(tgt))[:EMBED_SAMPLES]])
        xs, xt = read[key]
        feats = np.concatenate([predict_features(model.network, x)[0].numpy() for x in (xs, xt)])
        z = TSNE(2, init="pca", perplexity=min(30, len(feats) // 4), random_state=0).fit_transform(feats)
        ax.scatter(*z[:len(xs)].T, s=4, c="#1f77b4", label="source")
        ax.scatter(*z[len(xs):].T, s=4, c="#ff7f0e", label="target")
        ax.set_title(drawable(m), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        profiles.append(layer_profile(model.network, xs, xt, metrics=("mmd",), max_samples=EMBED_SAMPLES, label=drawable(m),
                                      token_ids=bool((model.meta.get("preprocessing") or {}).get("text")),
                                      progress=False))
    axes[0][0].legend(fontsize=7, markerscale=3)
    fig.suptitle(drawable(f"{pair[0]} → {pair[1]}"), fontsize=9)
    fig.tight_layout()
    emb = save_figure(fig, emb_file)
    prof = plot_profiles(profiles, prof_file, title=drawable(f"{pair[0]} → {pair[1]}"))
    # last: a figure written without its key is redrawn next time; the code it was drawn by, to say why it is redrawn
    write_text(key_file, f"{made_of}\ncode {code_digest()}\n")
    return emb, prof, f"{pair[0]} → {pair[1]}"


def _where(spec: str, meta: dict[str, Any]) -> str:
    """``spec`` as its run read it: a relative file path against the folder the run started in (``meta``, its
    model.json: ``cwd``; an older run's is read from here)."""
    cwd = meta.get("cwd")
    return absolute_spec(spec, cwd if isinstance(cwd, str) else None)


def _figures_key(pair: tuple[str, str], data_dir: str | os.PathLike | None, models: list[tuple[str, Path]],
                 code: str | None = None) -> str:
    """What the embedding and profile figures are made of: the pair, the data directory, the sample count, each
    model's method and files (model.pt, model.json), and the code that reads the data, computes and draws them:
    this qianyi's code digest (the one runs record; ``code``: another's) and scikit-learn's version (the t-SNE)."""
    import hashlib

    import sklearn

    from ..data.builtin import resolve_data_dir

    root = resolve_data_dir(data_dir)
    h = hashlib.sha256(json.dumps([code_digest() if code is None else code, sklearn.__version__,
                                   [absolute_spec(spec, os.getcwd()) for spec in pair],
                                   None if root is None else os.path.abspath(root), EMBED_SAMPLES,
                                   [m for m, _ in models]]).encode())
    for _, folder in models:
        for name in (MODEL_FILE, "model.json"):
            h.update(sha256_file(Path(folder) / name).encode())
    return h.hexdigest()


def _md_table_to_html(md: str) -> str:
    """A Markdown table (and the paragraphs around it) as HTML."""
    out, rows = [], []

    def flush() -> None:
        if rows:
            cells = [md_cells(r) for r in rows if not set(r) <= set("|-: ")]
            head, body = cells[0], cells[1:]
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr></thead>"
                       "<tbody>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                                           for r in body) + "</tbody></table>")
            rows.clear()
    for line in md.splitlines():
        if line.startswith("|"):
            rows.append(line)
        else:
            flush()
            if line.strip():
                out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}h2{margin-top:1.6em}"""
_SELF_CHECK = """<script>window.addEventListener("load",function(){var i=document.images,k=0;
for(var j=0;j<i.length;j++){if(i[j].complete&&i[j].naturalWidth>0)k++;}
document.body.setAttribute("data-images",k+"/"+i.length);});</script>"""


Section = tuple  # (heading, text, figure path or None, Markdown table or None)


def page_html(title: str, sections: list[Section], out: Path) -> str:
    """A report page: ``sections`` of (heading, text, figure, Markdown table), figures linked relative to ``out``."""
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style>{_SELF_CHECK}</head><body><h1>{html.escape(title)}</h1>"]
    if any(fig is not None for _, _, fig, _ in sections):  # linked, not inlined: the page alone shows no figure
        folder = html.escape(os.path.relpath(next(f for _, _, f, _ in sections if f is not None), out).split(os.sep)[0])
        parts.append(f"<p>The figures are PNG files in <code>{folder}/</code> beside this page: copy that folder "
                     "with it.</p>")
    for heading, text, fig, table in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>")
        if table:
            parts.append(_md_table_to_html(table))
        if fig is not None:
            parts.append(f'<img src="{html.escape(os.path.relpath(fig, out))}" alt="{html.escape(heading)}">')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def page_markdown(title: str, sections: list[Section], out: Path) -> str:
    """The Markdown twin of :func:`page_html`."""
    lines = [f"# {title}", ""]
    for heading, text, fig, table in sections:
        lines += [f"## {heading}", "", text, ""]
        if table:
            lines += [table, ""]
        if fig is not None:
            lines += [f"![{heading}]({os.path.relpath(fig, out)})", ""]
    return "\n".join(lines)
