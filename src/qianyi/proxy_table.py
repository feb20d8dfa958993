"""Proxy-task transfer on a table: the ``qianyi proxy`` command and its Python twin :func:`fit_table`.

One CSV holds every row's features, a proxy column (abundant: filled on most rows) and a target column
(scarce: blank where unknown). :func:`fit_table` trains :class:`~qianyi.proxy.ProxyTransfer`'s network on
the rows with a proxy value, fits the ridge on the rows with a target value, predicts the target for
every row, and writes the model, the predictions and a report. What it reports of the target step is
its leave-one-out r² on the labelled rows against ridge regression on the inputs themselves: the
labelled rows are the only target labels there are, and they choose nothing but the ridge penalty.
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import ConfigError, DataError, DatasetNotFoundError, OutputError

if TYPE_CHECKING:
    from .proxy import ProxyTransfer

PREDICTIONS = "predictions.csv"
REPORT = "proxy.md"
RESULT = "result.json"


@dataclass(frozen=True)
class Table:
    """A proxy table: ``X`` (n, d) features named ``feature_names``; ``proxy`` and ``target`` with NaN where
    a row has none (both None when the table has no such column, as a table to predict)."""

    X: np.ndarray
    feature_names: tuple[str, ...]
    proxy: np.ndarray | None
    target: np.ndarray | None
    where: str


def _spec(spec: str | os.PathLike) -> tuple[Path, str | None]:
    """The file of a proxy-table spec (``csv:FILE`` or a path) and its ``?sep=`` (None: detected as the ``csv:``
    reader does)."""
    text = str(spec)
    if isinstance(spec, os.PathLike) or Path(text).expanduser().is_file():  # (a file named a:b.csv is one)
        return Path(text[4:] if text.startswith("csv:") else text).expanduser(), None
    reader, colon, _ = text.partition(":")
    if colon and reader.isalpha() and len(reader) > 1 and reader != "csv":
        raise DataError(f"a proxy table is a CSV file (csv:FILE or its path), got the {reader}: spec {text!r}")
    body = text[4:] if text.startswith("csv:") else text
    sep = None
    if "?" in body and not Path(body).expanduser().exists():
        body, _, query = body.partition("?")
        opts: dict[str, str] = {}
        for item in filter(None, query.split("&")):
            key, eq, value = item.partition("=")
            if key != "sep" or not eq:
                raise DataError(f"{text!r}: a proxy table takes one option, ?sep= (the separator: , ; | tab), not "
                                f"{item!r} (`qianyi proxy`: name the columns to leave out with --drop; `qianyi "
                                "predict`: the model reads its feature columns by name and ignores the others)")
            if key in opts:
                raise DataError(f"{text!r}: option {key!r} is given twice")
            opts[key] = value
        sep = opts.get("sep")
    return Path(body).expanduser(), sep


def read_table(spec: str | os.PathLike, proxy: str | None = None, target: str | None = None,
               drop: Sequence[str] = (), features: Sequence[str] | None = None) -> Table:
    """Read a CSV (``csv:FILE`` or a path; gzip read by content) with a header row. ``proxy`` and ``target``
    name columns whose blank cells mean "unknown"; ``drop`` names columns to leave out (an id, a name);
    every other column is a feature and must hold a number in every row. ``features`` (a saved model's
    columns) reads those columns, by name, in that order, and ignores the others. The separator is the
    ``csv:`` reader's: ``;`` when the header line holds ``;`` and no ``,``, else ``,``, or the spec's
    ``?sep=`` (``,``, ``;``, ``|`` or ``tab``)."""
    from .data.readers import (DECIMAL_COMMA_ADVICE, _csv_separator, _csv_text, _lines, _numbered_rows,
                               _unnamed_columns, decimal_comma, separator_hint)

    p, sep = _spec(spec)
    where = f"proxy table {str(p)!r}"
    if not p.is_file():
        raise DatasetNotFoundError(f"{where}: no such file; give a CSV with a header row (features, the proxy "
                                   "column, the target column)")
    text = _csv_text(p, where)
    delimiter = _csv_separator(sep, text, where)
    try:
        numbered = [(n, r) for n, r in _numbered_rows(_lines(text), delimiter) if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise DataError(f"{where} is not a valid CSV table ({exc}); save it as UTF-8 text separated by "
                        f"{'tab' if delimiter == chr(9) else delimiter!r} (or give the separator with ?sep=)") from None
    if len(numbered) < 2:
        raise DataError(f"{where} has {'no header' if not numbered else 'a header but no rows'}; give a header row "
                        "and one row per sample")
    lines = [n for n, _ in numbered[1:]]  # the file's line of each row (blank lines skipped)
    rows = [r for _, r in numbered]
    header = [c.strip() for c in rows[0]]
    width = len(header)
    for i, r in zip(lines, rows[1:]):
        if len(r) != width:
            raise DataError(f"{where}: line {i} has {len(r)} cells, the header {width}; every row needs one cell "
                            "per column")
    # as the csv: reader: a trailing comma's empty column and pandas' index are left out; other unnamed ones refused
    skip = set(_unnamed_columns(iter(numbered), header, where, others="error"))
    if skip:
        keep = [k for k, c in enumerate(header) if c not in skip]
        rows = [[r[k] for k in keep] for r in rows]
        header = [header[k] for k in keep]
    dup = sorted(c for c, k in Counter(header).items() if k > 1)
    if dup:
        raise DataError(f"{where}: duplicate column names {dup[:5]}; rename them")
    named = {"proxy": proxy, "target": target, **{f"drop {d!r}": d for d in drop}}
    for role, col in named.items():
        if col is not None and col not in header:
            raise DataError(f"{where} has no column {col!r} ({role}); its columns are {header[:20]}"
                            f"{separator_hint(header)}")
    if proxy is not None and proxy == target:
        raise ConfigError(f"proxy and target are the same column {proxy!r}; the proxy is another, abundant label")
    if features is not None:
        missing = [c for c in features if c not in header]
        if missing:
            raise DataError(f"{where} lacks the model's feature column(s) {missing[:10]}; give a table with the "
                            f"columns the model was fitted on (their order does not matter){separator_hint(header)}")
        cols = list(features)
    else:
        cols = [c for c in header if c not in (proxy, target, *drop)]
    if not cols:
        raise DataError(f"{where}: no feature columns are left (every column is the proxy, the target or dropped)")
    body = rows[1:]

    def numbers(col: str, may_be_blank: bool) -> np.ndarray:
        k = header.index(col)
        out = np.empty(len(body))
        for i, (r, line) in enumerate(zip(body, lines)):
            cell = r[k].strip()
            if not cell and may_be_blank:
                out[i] = np.nan
                continue
            try:
                out[i] = float(cell)
            except ValueError:
                out[i] = np.nan
            if not math.isfinite(out[i]):
                what = "is blank" if not cell else f"holds {cell!r}"
                if decimal_comma(cell):
                    raise DataError(f"{where}: column {col!r}, line {line} holds {cell!r}, {DECIMAL_COMMA_ADVICE}")
                hint = ("leave the cell blank for an unknown value" if may_be_blank else
                        "every feature the model reads needs a number in every row: impute it or drop the row"
                        if features is not None else
                        "every feature needs a number in every row: impute it, drop the row, or --drop the column")
                raise DataError(f"{where}: column {col!r}, line {line} {what}, not a number; {hint}")
        return out

    X = np.column_stack([numbers(c, False) for c in cols]).astype(np.float64)
    return Table(X, tuple(cols), None if proxy is None else numbers(proxy, True),
                 None if target is None else numbers(target, True), where)


def _loo_r2(Z: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> tuple[float, float]:
    """(r², alpha): ridge's leave-one-out r² (1 - PRESS / SST) at the penalty leave-one-out chose among
    ``alphas`` (choosing it on the same errors makes it slightly optimistic, for every route alike)."""
    from sklearn.linear_model import RidgeCV

    ridge = RidgeCV(alphas=tuple(alphas), store_cv_results=True).fit(Z, y)
    k = int(np.argmin(ridge.cv_results_.mean(0)))
    sst = float(((y - y.mean()) ** 2).sum())
    return (1.0 - float(ridge.cv_results_[:, k].sum()) / sst if sst > 0 else float("nan")), float(ridge.alpha_)


def fit_table(spec: str | os.PathLike, proxy: str, target: str, out: str | os.PathLike | None = None,
              drop: Sequence[str] = (), bins: int | None = None, **settings: object) -> dict:
    """Fit :class:`~qianyi.proxy.ProxyTransfer` on a table and predict the target for every row.

    The network learns the ``proxy`` column on every row that has a value there (``bins``: as that many
    quantile classes, Jean et al.'s low/medium/high night lights, instead of the value); the ridge learns
    ``target`` on every row that has a value there. ``settings`` are ProxyTransfer's (``hidden``, ``steps``,
    ``standardize``, ``random_state``, ...). With ``out``, writes there ``proxy.pt`` + ``proxy.json`` (the
    model: :meth:`ProxyTransfer.load`, ``qianyi predict OUT``), ``predictions.csv`` (every row: the given
    proxy and target, the predicted ones), ``result.json`` and ``proxy.md``. Returns the result dict.
    """
    if out is not None:
        check_proxy_out(Path(out))  # before the work
    from .proxy import ALPHAS, NETWORK_PARAMS, ProxyTransfer, _plain, quantile_bins  # scikit-learn: when used

    t = read_table(spec, proxy=proxy, target=target, drop=drop)
    assert t.proxy is not None and t.target is not None
    has_p, has_t = np.isfinite(t.proxy), np.isfinite(t.target)
    if has_p.sum() < 2:
        raise DataError(f"{t.where}: {int(has_p.sum())} row(s) hold a proxy value in column {proxy!r}; the proxy "
                        "network needs at least 2 (the proxy is the abundant label)")
    if has_t.sum() < 3:
        raise DataError(f"{t.where}: {int(has_t.sum())} row(s) hold a target value in column {target!r}; the "
                        "ridge's leave-one-out penalty needs at least 3")
    if np.ptp(t.target[has_t]) == 0:
        raise DataError(f"{t.where}: the target {target!r} has one value ({t.target[has_t][0]:g}) on all its "
                        f"{int(has_t.sum())} labelled rows: there is nothing to predict")
    p = t.proxy[has_p]
    if bins is not None:
        settings = {**settings, "task": "classification"}
        p = quantile_bins(p, bins).astype(np.float64)
    model = ProxyTransfer(**settings)  # type: ignore[arg-type]
    model.fit_proxy(t.X[has_p], p)
    model.fit(t.X[has_t], t.target[has_t])
    model.feature_names_in_ = np.asarray(t.feature_names, dtype=object)
    y = t.target[has_t]
    alphas = ALPHAS if model.alphas is None else tuple(model.alphas)
    Zs = (model.transform(t.X[has_t]) - model.z_mean_) / model.z_std_
    Xs = (t.X[has_t] - model.x_mean_) / model.x_std_  # the inputs, scaled as the network reads them
    loo_proxy, _ = _loo_r2(Zs, y, alphas)
    loo_ridge, alpha_ridge = _loo_r2(Xs, y, alphas)
    pred_t = model.predict(t.X)
    pred_p = model.predict_proxy(t.X)
    fit_p = model.predict_proxy(t.X[has_p])
    if bins is None:
        sst = float(((p - p.mean()) ** 2).sum())
        proxy_fit = {"r2": 1.0 - float(((p - fit_p) ** 2).sum()) / sst}
    else:
        proxy_fit = {"accuracy": float((fit_p == p).mean())}
    result = {"table": str(_spec(spec)[0]), "proxy": proxy, "target": target, "bins": bins,
              "rows": int(len(t.X)), "features": len(t.feature_names), "rows_with_proxy": int(has_p.sum()),
              "rows_with_target": int(has_t.sum()),
              "settings": {k: _plain(model._setting(k)) for k in NETWORK_PARAMS},
              "proxy_training_fit": proxy_fit, "alpha": model.alpha_,
              "loo_r2": {"proxy+ridge": loo_proxy, "ridge": loo_ridge}, "alpha_ridge": alpha_ridge}
    if out is not None:
        _write(Path(out), model, t, pred_t, pred_p, result)
    return result


def _fmt(v: float) -> str:
    return "" if not math.isfinite(v) else f"{v:.6g}"


def check_proxy_out(out: Path) -> None:
    """Refuse an --out that holds a `qianyi run` (its result.json and model.json would be replaced or mixed)."""
    if (out / "model.json").exists() or ((out / RESULT).exists() and not (out / "proxy.json").exists()):
        raise OutputError(f"--out {str(out)!r} holds the results of another command (a `qianyi run`); choose a "
                          "folder of its own for `qianyi proxy`")


def _write(out: Path, model: ProxyTransfer, t: Table, pred_t: np.ndarray, pred_p: np.ndarray, result: dict) -> None:
    from ._io import write_json, write_text

    out.mkdir(parents=True, exist_ok=True)
    model.save(out)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "proxy", "proxy_predicted", "target", "target_predicted"])
    assert t.proxy is not None and t.target is not None
    for i in range(len(t.X)):
        w.writerow([i, _fmt(t.proxy[i]), _fmt(float(pred_p[i])), _fmt(t.target[i]), _fmt(float(pred_t[i]))])
    write_text(out / PREDICTIONS, buf.getvalue())
    write_json(out / RESULT, result)
    write_text(out / REPORT, report(result))


def report(result: dict) -> str:
    """The Markdown report of :func:`fit_table`'s result."""
    fit = result["proxy_training_fit"]
    fit_text = (f"r² {fit['r2']:.3f} on its training rows" if "r2" in fit else
                f"accuracy {100 * fit['accuracy']:.1f}% on its training rows ({result['bins']} quantile classes)")
    loo = result["loo_r2"]
    better = loo["proxy+ridge"] - loo["ridge"]
    verdict = ("the proxy features predict the target better than the inputs do" if better > 0.02 else
               "the inputs predict the target as well as the proxy features do (the proxy adds little here)"
               if better > -0.02 else "the inputs predict the target better: the proxy does not help here")
    return "\n".join([
        f"# Proxy-task transfer: {result['proxy']} -> {result['target']}", "",
        f"Table `{result['table']}`: {result['rows']:,} rows, {result['features']} feature columns; "
        f"{result['rows_with_proxy']:,} rows with a proxy value, {result['rows_with_target']:,} with a target value.",
        "",
        f"- proxy network {tuple(result['settings']['hidden'])}, {result['settings']['steps']} steps: {fit_text}",
        f"- ridge on its features: alpha {result['alpha']:g} (leave-one-out over the labelled rows)", "",
        "Leave-one-out r² on the labelled rows (each route's penalty chosen by the same leave-one-out errors, "
        "slightly optimistic for both):", "",
        "| route | LOO r² |", "|---|---:|",
        f"| proxy+ridge (the proxy network's features) | {loo['proxy+ridge']:.3f} |",
        f"| ridge on the inputs themselves | {loo['ridge']:.3f} |", "",
        f"Reading: {verdict}. With few labelled rows this estimate is noisy; docs/proxy.md measures the "
        "routes against held-out data.", "",
        f"`{PREDICTIONS}`: every row's given and predicted proxy and target. The model: `proxy.pt` + `proxy.json` "
        "(`qianyi predict DIR --data csv:NEW.csv`, or `qianyi.proxy.ProxyTransfer.load(DIR)`).", ""])


def predict_table(model_dir: str | os.PathLike, spec: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    """A saved proxy model's predictions for a table's rows: (header, rows) of ``row, proxy_predicted,
    target_predicted`` (the target only when the model was fitted on one). Feature columns are found by
    the names the model was fitted on."""
    from .proxy import ProxyTransfer  # scikit-learn: when used

    model = ProxyTransfer.load(model_dir)
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        raise DataError(f"{str(model_dir)!r}: the model does not name its feature columns (saved from arrays, not "
                        "a table); predict in Python: ProxyTransfer.load(DIR).predict(X)")
    t = read_table(spec, features=[str(n) for n in names])
    header = ["row", "proxy_predicted"] + (["target_predicted"] if hasattr(model, "coef_") else [])
    pred_p = model.predict_proxy(t.X)
    pred_t = model.predict(t.X) if hasattr(model, "coef_") else None
    rows = [[str(i), _fmt(float(pred_p[i]))] + ([_fmt(float(pred_t[i]))] if pred_t is not None else [])
            for i in range(len(t.X))]
    return header, rows


# ---------------------------------------------------------------- the command
def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        import argparse

        raise argparse.ArgumentTypeError(f"{text!r}: give positive layer widths, comma-separated, e.g. 256,64")
    return widths


def add_commands(sub, train_args) -> dict:  # noqa: ANN001 (argparse's private types)
    """``qianyi proxy``: :func:`fit_table` from the command line."""
    p = sub.add_parser(
        "proxy", help="proxy-task transfer on a table: learn an abundant proxy label, fit the scarce target on it",
        description="Read a CSV with a header: feature columns, a --proxy column (abundant, e.g. night lights; blank "
                    "where unknown) and a --target column (scarce, e.g. surveyed wealth; blank where unknown). Train "
                    "a network on the proxy (every row that has one), fit ridge regression of the target on its "
                    "penultimate features (the rows that have one; penalty by leave-one-out), predict the target "
                    "for every row. Prints the leave-one-out r² of this route against ridge on the inputs, and with "
                    "--out writes the model (qianyi predict OUT --data csv:NEW.csv), predictions.csv, result.json "
                    "and proxy.md. Python: qianyi.proxy_table.fit_table, qianyi.proxy.ProxyTransfer.",
        epilog="example: qianyi proxy villages.csv --proxy nightlights --target wealth --drop village_id "
               "--out runs/proxy")
    p.add_argument("table", help="a CSV file (csv:FILE or its path; gzip is read too); ';' is detected as the csv: "
                                 "reader does, or give the separator with ?sep=, ; | tab")
    p.add_argument("--proxy", required=True, metavar="COL", help="the proxy column (blank cells: no proxy value)")
    p.add_argument("--target", required=True, metavar="COL", help="the target column (blank cells: unknown)")
    p.add_argument("--drop", default="", metavar="A,B", help="columns that are not features (ids, names)")
    p.add_argument("--bins", type=int, default=None, metavar="K",
                   help="learn the proxy as K quantile classes (Jean et al.: 3) instead of its value")
    p.add_argument("--hidden", type=_widths, default=(256, 64), metavar="W,W",
                   help="hidden widths of the proxy network (default 256,64; the last is the ridge's features)")
    p.add_argument("--steps", type=int, default=2000, help="Adam steps of the proxy network (default 2000)")
    p.add_argument("--batch-size", type=int, default=128, help="default 128")
    p.add_argument("--lr", type=float, default=1e-3, help="default 1e-3")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="default 1e-4")
    p.add_argument("--dropout", type=float, default=0.1, help="default 0.1")
    p.add_argument("--standardize", default="column", choices=("column", "global", "none"),
                   help="input scaling over all rows: column (z-score each), global (one overall spread: for "
                        "histograms whose bins are rarely non-zero), none (default column)")
    from .train.config import seed_int

    p.add_argument("--seed", type=seed_int, default=0, help="seeds the network (default 0)")
    p.add_argument("--out", default=None, help="write the model, predictions.csv, result.json, proxy.md here")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return {"proxy": _proxy}


def _proxy(args) -> int:  # noqa: ANN001
    result = fit_table(args.table, args.proxy, args.target, out=args.out,
                       drop=tuple(c.strip() for c in args.drop.split(",") if c.strip()), bins=args.bins,
                       hidden=args.hidden, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                       weight_decay=args.weight_decay, dropout=args.dropout, standardize=args.standardize,
                       random_state=args.seed)
    print(report(result))
    if args.out:
        print(f"written: {args.out}/ ({PREDICTIONS}, {RESULT}, {REPORT}, proxy.pt, proxy.json)")
    return 0
