"""`qianyi proxy`: proxy-task transfer on a CSV table, its saved model, and `qianyi predict` on it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from qianyi import proxy as P
from qianyi.cli import main
from qianyi.errors import ConfigError, DataError, DatasetNotFoundError
from qianyi.proxy_table import fit_table, predict_table, read_table

from .test_proxy import FAST, _world

ARGS = ["--hidden", "32,8", "--steps", "400", "--batch-size", "64", "--lr", "3e-3", "--dropout", "0", "--threads", "1"]


def _table(path, n=600, every_target=15, every_blank_proxy=9):
    """The test_proxy world as a table: an id column, features, a proxy with blanks, a scarce target."""
    X, y, proxy = _world(n=n, d=20)
    lines = ["id," + ",".join(f"f{k}" for k in range(X.shape[1])) + ",nl,wealth"]
    for i in range(n):
        p = "" if i % every_blank_proxy == 0 else f"{proxy[i]:.6f}"
        t = f"{y[i]:.6f}" if i % every_target == 0 else ""
        lines.append(f"v{i}," + ",".join(f"{v:.6f}" for v in X[i]) + f",{p},{t}")
    path.write_text("\n".join(lines) + "\n")
    return X, y, proxy


def test_the_table_route_fits_reports_saves_and_predicts_every_row(tmp_path, capsys):
    X, y, proxy = _table(tmp_path / "t.csv")
    rc = main(["proxy", str(tmp_path / "t.csv"), "--proxy", "nl", "--target", "wealth", "--drop", "id", *ARGS,
               "--out", str(tmp_path / "o")])
    assert rc == 0
    res = json.loads((tmp_path / "o" / "result.json").read_text())
    assert (res["rows"], res["features"], res["rows_with_target"]) == (600, 20, 40)
    assert res["rows_with_proxy"] == 600 - len(range(0, 600, 9))
    # 40 labels: the proxy's features carry the target, the raw inputs do not (as test_proxy's curve shows)
    assert res["loo_r2"]["proxy+ridge"] > res["loo_r2"]["ridge"] + 0.3
    rows = (tmp_path / "o" / "predictions.csv").read_text().splitlines()
    assert rows[0] == "row,proxy,proxy_predicted,target,target_predicted" and len(rows) == 601
    assert rows[1].split(",")[1] == "" and rows[1].split(",")[3] != ""  # row 0: no proxy given, a target given
    pred = np.array([float(r.split(",")[4]) for r in rows[1:]])
    unlabelled = np.arange(600) % 15 != 0
    assert np.corrcoef(pred[unlabelled], y[unlabelled])[0, 1] ** 2 > 0.5  # predictions for the rows without one
    md = (tmp_path / "o" / "proxy.md").read_text()
    assert md.startswith("Command: `qianyi proxy ") and "| proxy+ridge" in md
    # the saved model predicts what the fitted one did, from a table whose columns come in another order
    lines = (tmp_path / "t.csv").read_text().splitlines()
    cells = [line.split(",") for line in lines]
    (tmp_path / "new.csv").write_text("\n".join(",".join(c[::-1]) for c in cells) + "\n")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "o"), "--data", f"csv:{tmp_path / 'new.csv'}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "row,proxy_predicted,target_predicted"
    assert np.allclose([float(r.split(",")[2]) for r in out[1:]], pred, atol=1e-5)
    model = P.ProxyTransfer.load(tmp_path / "o")
    assert np.allclose(model.predict(X), pred, atol=1e-4)  # the CSV's six digits against the arrays themselves


def test_save_and_load_round_trip_for_both_proxy_tasks(tmp_path):
    X, y, proxy = _world(n=300)
    for task, p in (("regression", proxy), ("classification", P.quantile_bins(proxy, 3))):
        m = P.ProxyTransfer(**FAST, task=task, random_state=1).fit_proxy(X, p).fit(X[:40], y[:40])
        m.save(tmp_path / task)
        back = P.ProxyTransfer.load(tmp_path / task)
        assert np.array_equal(back.predict(X), m.predict(X)) and np.array_equal(back.predict_proxy(X),
                                                                                  m.predict_proxy(X))
        assert back.get_params() == {**m.get_params(), "hidden": tuple(m.hidden)} and back.alpha_ == m.alpha_
        back.fit(X[40:80], y[40:80])  # a loaded model refits its ridge on new labels
    only_proxy = P.ProxyTransfer(**FAST).fit_proxy(X, proxy)
    only_proxy.save(tmp_path / "p")
    with pytest.raises(ConfigError, match="no target model yet"):
        P.ProxyTransfer.load(tmp_path / "p").predict(X)
    with pytest.raises(ConfigError, match="nothing to save"):
        P.ProxyTransfer().save(tmp_path / "none")


def test_corrupt_or_missing_model_files_are_named(tmp_path):
    X, y, proxy = _world(n=200)
    P.ProxyTransfer(**{**FAST, "steps": 5}).fit_proxy(X, proxy).fit(X[:20], y[:20]).save(tmp_path / "m")
    with pytest.raises(DatasetNotFoundError, match="holds no proxy.json"):
        P.ProxyTransfer.load(tmp_path)
    (tmp_path / "m" / "proxy.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="proxy.pt' is not the network .*its hash differs"):
        P.ProxyTransfer.load(tmp_path / "m")
    (tmp_path / "m" / "proxy.json").write_text('{"format": 1, "params": {}}')
    with pytest.raises(DataError, match="is not a proxy model description"):
        P.ProxyTransfer.load(tmp_path / "m")


@pytest.mark.parametrize("text, kwargs, words", [
    ("a,nl,w\n1,2,3\n,2,3\n1,2,3\n", {}, "column 'a', line 3 is blank"),
    ("a,nl,w\n1,2,3\nx,2,3\n1,2,3\n", {}, "column 'a', line 3 holds 'x'"),
    ("a,nl,w\n1,2,3\n1,nan,3\n", {}, "column 'nl', line 3 holds 'nan'"),
    ("a,nl,w\n1,2,3\n1,2\n", {}, "line 3 has 2 cells"),
    ('id,a,nl,w\n"two\nlines",1,2,3\n\nz,q,2,3\n', {"drop": ("id",)}, "column 'a', line 5 holds 'q'"),
    ("a,nl,w\n1,2,3\n", {"proxy": "light"}, "no column 'light' \\(proxy\\)"),
    ("a,nl,w\n1,2,3\n", {"drop": ("id",)}, "no column 'id' \\(drop 'id'\\)"),
    ("a,,w\n1,2,3\n", {}, "column 2 has no name"),
    ("nl,w\n1,2\n", {}, "no feature columns are left"),
    ("a,nl,w\n", {}, "a header but no rows"),
])
def test_table_errors_name_the_cell_or_column(tmp_path, text, kwargs, words):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(DataError, match=words):
        read_table(tmp_path / "t.csv", **{"proxy": "nl", "target": "w", **kwargs})


def test_too_few_labels_or_proxies_and_a_proxy_that_is_the_target_are_refused(tmp_path):
    (tmp_path / "t.csv").write_text("a,nl,w\n" + "".join(f"{i},{i % 3},{'' if i > 1 else i}\n" for i in range(9)))
    with pytest.raises(DataError, match="2 row\\(s\\) hold a target value in column 'w'.*at least 3"):
        fit_table(tmp_path / "t.csv", "nl", "w", steps=2)
    with pytest.raises(ConfigError, match="the same column 'nl'"):
        fit_table(tmp_path / "t.csv", "nl", "nl")
    with pytest.raises(DatasetNotFoundError, match="no such file"):
        read_table(tmp_path / "missing.csv", "nl", "w")
    P.ProxyTransfer(**{**FAST, "steps": 2}).fit_proxy(np.eye(3), [0.0, 1.0, 2.0]).save(tmp_path / "arrays")
    with pytest.raises(DataError, match="does not name its feature columns"):
        predict_table(tmp_path / "arrays", tmp_path / "t.csv")


def test_a_save_with_numpy_settings_writes_both_files_and_load_refuses_mismatched_ones(tmp_path):
    """random_state=np.int64(1): save wrote proxy.pt, then failed on proxy.json, and load paired the new weights
    with the old scaling and ridge (r2 0.98 -> -0.27)."""
    X, y, proxy = _world(n=200)
    a = P.ProxyTransfer(**{**FAST, "steps": 20}, random_state=0).fit_proxy(X, proxy).fit(X[:30], y[:30])
    a.save(tmp_path / "m")
    b = P.ProxyTransfer(**{**FAST, "steps": np.int64(20)}, random_state=np.int64(1)).fit_proxy(X, proxy)
    b.fit(X[:30], y[:30]).save(tmp_path / "m")
    assert np.array_equal(P.ProxyTransfer.load(tmp_path / "m").predict(X), b.predict(X))
    a.save(tmp_path / "other")
    (tmp_path / "m" / "proxy.pt").write_bytes((tmp_path / "other" / "proxy.pt").read_bytes())  # another save's weights
    with pytest.raises(DataError, match="is not the network .*proxy.json' describes"):
        P.ProxyTransfer.load(tmp_path / "m")
    import json

    meta = json.loads((tmp_path / "other" / "proxy.json").read_text())
    del meta["weights_sha256"]  # a save of the first, unchecked format
    (tmp_path / "other" / "proxy.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="records no hash of its weights .*refit"):
        P.ProxyTransfer.load(tmp_path / "other")
    b.fit_proxy(X, proxy)  # a new network: the ridge fitted on the old one's features is gone
    with pytest.raises(ConfigError, match="no target model yet"):
        b.predict(X)


def test_table_edge_cases_blank_lines_trailing_commas_index_constant_target_and_ties(tmp_path, monkeypatch):
    from qianyi.errors import OutputError, QianyiWarning

    _table(tmp_path / "t.csv", n=60)
    lines = (tmp_path / "t.csv").read_text().splitlines()
    bad = lines[:3] + ["", ""] + lines[3:]
    cells = bad[9].split(",")
    cells[2] = "oops"
    bad[9] = ",".join(cells)  # file line 10
    (tmp_path / "b.csv").write_text("\n".join(bad) + "\n")
    with pytest.raises(DataError, match="column 'f1', line 10 holds 'oops'"):
        read_table(tmp_path / "b.csv", "nl", "wealth", drop=("id",))
    (tmp_path / "c.csv").write_text("\n".join(f"{i if k else ''},{line}," for k, (i, line) in
                                              enumerate(zip(range(-1, 60), lines))) + "\n")  # pandas' index, trailing ,
    t = read_table(tmp_path / "c.csv", "nl", "wealth", drop=("id",))
    assert t.feature_names == tuple(f"f{k}" for k in range(20)) and t.X.shape == (60, 20)
    const = [lines[0]] + [",".join(line.split(",")[:-1] + (["1.5"] if line.split(",")[-1] else [""]))
                          for line in lines[1:]]
    (tmp_path / "k.csv").write_text("\n".join(const) + "\n")
    with pytest.raises(DataError, match="target 'wealth' has one value \\(1.5\\) on all its 4 labelled rows"):
        fit_table(tmp_path / "k.csv", "nl", "wealth", drop=("id",), steps=2)
    with pytest.warns(QianyiWarning, match="2 of 3 classes hold samples"):
        P.quantile_bins(np.r_[np.zeros(90), np.arange(10.0)], 3)
    for spec, words in (("npz:x.npz", "got the npz: spec"),
                        (f"csv:{tmp_path / 't.csv'}?drop=id", "takes one option, \\?sep=.*not 'drop=id'.*--drop"),
                        (f"{tmp_path / 't.csv'}?sep=;&sep=,", "'sep' is given twice"),
                        (f"{tmp_path / 't.csv'}?sep=x", "sep='x' is not a separator")):
        with pytest.raises(DataError, match=words):
            read_table(spec, "nl", "wealth")
    (tmp_path / "survey:wave2.csv").write_bytes((tmp_path / "t.csv").read_bytes())  # a file named like a spec
    monkeypatch.chdir(tmp_path)
    assert len(read_table("survey:wave2.csv", "nl", "wealth", drop=("id",)).X) == len(read_table(
        tmp_path / "t.csv", "nl", "wealth", drop=("id",)).X)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.json").write_text("{}")
    with pytest.raises(OutputError, match="holds the results of another command"):
        fit_table(tmp_path / "t.csv", "nl", "wealth", drop=("id",), out=tmp_path / "run", steps=2)


def test_a_table_is_read_with_the_csv_readers_separator(tmp_path, capsys):
    """`qianyi proxy` read a ';' table as one column the csv: reader splits, and refused ?sep= to say so."""
    _table(tmp_path / "t.csv", n=120)
    comma = read_table(tmp_path / "t.csv", "nl", "wealth", drop=("id",))
    text = (tmp_path / "t.csv").read_text()
    (tmp_path / "semi.csv").write_text(text.replace(",", ";"))
    for spec in (tmp_path / "semi.csv", f"csv:{tmp_path / 'semi.csv'}", f"{tmp_path / 'semi.csv'}?sep=;"):
        t = read_table(spec, "nl", "wealth", drop=("id",))
        assert t.feature_names == comma.feature_names and np.array_equal(t.X, comma.X)
        assert np.array_equal(t.proxy, comma.proxy, equal_nan=True)
    (tmp_path / "tab.tsv").write_text(text.replace(",", "\t"))
    with pytest.raises(DataError, match="has no column 'nl'.*holds tabs: is that the separator\\? give it with \\?sep=tab"):
        read_table(tmp_path / "tab.tsv", "nl", "wealth", drop=("id",))
    t = read_table(f"csv:{tmp_path / 'tab.tsv'}?sep=tab", "nl", "wealth", drop=("id",))
    assert np.array_equal(t.X, comma.X)
    rc = main(["proxy", f"{tmp_path / 'semi.csv'}?sep=;", "--proxy", "nl", "--target", "wealth", "--drop", "id",
               "--hidden", "8", "--steps", "5", "--threads", "1", "--out", str(tmp_path / "o")])
    assert rc == 0 and json.loads((tmp_path / "o" / "result.json").read_text())["table"] == str(tmp_path / "semi.csv")
    header, rows = predict_table(tmp_path / "o", f"{tmp_path / 'tab.tsv'}?sep=tab")
    assert len(rows) == 120


def test_a_run_refuses_a_proxy_folder_as_its_out(tmp_path):
    from qianyi import TrainConfig, run
    from qianyi.errors import OutputError

    from .conftest import toy_task

    X, y, proxy = _world(n=100)
    P.ProxyTransfer(**{**FAST, "steps": 2}).fit_proxy(X, proxy).fit(X[:10], y[:10]).save(tmp_path / "p")
    with pytest.raises(OutputError, match="holds a `qianyi proxy` model"):
        run("source-only", toy_task(n=60), TrainConfig(epochs=1, steps_per_epoch=1, progress=False), out=tmp_path / "p")


def test_read_table_names_a_decimal_comma(tmp_path):
    """A German Excel export: '69,6' is a number with a decimal comma, and the message says so."""
    (tmp_path / "eu.csv").write_text("a;b;nl\n1;69,6;0\n2;70,1;1\n")
    with pytest.raises(DataError, match=r"column 'b', line 2 holds '69,6'.*decimal comma.*'\.' as the decimal mark"):
        read_table(tmp_path / "eu.csv", "nl")
    (tmp_path / "x.csv").write_text("a,b,nl\n1,x,0\n")
    with pytest.raises(DataError) as info:
        read_table(tmp_path / "x.csv", "nl")
    assert "decimal comma" not in str(info.value)


def test_proxy_table_duplicate_column_names_are_named_sorted_and_capped(tmp_path):
    """The header is checked in one pass: each repeated name is said once, sorted, at most 5 of them."""
    cols = ["nl", "w"] + [f"f{i}" for i in range(3000)] + ["f9", "f2", "f2", "f5", "f1", "f4", "f0"]
    (tmp_path / "t.csv").write_text(",".join(cols) + "\n" + ",".join("1" for _ in cols) + "\n")
    with pytest.raises(DataError, match=r"t\.csv'?: duplicate column names \['f0', 'f1', 'f2', 'f4', 'f5'\]; "
                                        r"rename them"):
        read_table(tmp_path / "t.csv", "nl", "w")
