"""Tabular transfer: CSV separators, row filters (segments of one file) and one-hot categorical columns.

A tiny ``;``-separated table with quoted strings: an ``id``, a segment column ``seg`` (a / b), a
categorical ``color`` whose categories differ between the segments (a: blue, red; b: green, red), a
numeric ``x`` and a yes/no label ``y``.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import qianyi
from qianyi.cli import main
from qianyi.data.readers import read_csv
from qianyi.data.tasks import READER_OPTIONS, load_domain, match_features
from qianyi.errors import DataError, QianyiWarning, UnknownNameError

FAST = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16", "--no-progress", "--threads", "1"]


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    lines = ['"id";"seg";"color";"x";"y"']
    for i in range(80):
        seg = "a" if i < 40 else "b"
        color = ("blue", "red")[i % 2] if seg == "a" else ("green", "red")[i % 2]
        yes = i % 4 == 0
        lines.append(f'{i};"{seg}";"{color}";{rng.normal(2.0 if yes else 0.0):.3f};"{"yes" if yes else "no"}"')
    p = tmp_path / "bank.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_separator_is_sniffed_or_given(table, tmp_path):
    d = read_csv(table, drop="id,seg,color")  # ';' and no ',' in the header: ';'
    assert d.feature_names == ("x",) and len(d) == 80 and d.class_names == ("no", "yes")
    assert read_csv(table, drop="id,seg,color", sep=";").X.tolist() == d.X.tolist()
    with pytest.raises(DataError, match="sep=':' is not a separator"):
        read_csv(table, sep=":")
    with pytest.raises(DataError, match="no column"):  # as ',' the header is one column named like the whole line
        read_csv(table, sep=",", drop="id")
    c = tmp_path / "c.csv"
    c.write_text("a,b;c,label\n1,2,0\n3,4,1\n")  # a ';' inside a name of a ',' table: still ','
    assert read_csv(c).feature_names == ("a", "b;c")


def test_where_and_where_not_filter_rows(table):
    a = read_csv(table, where="seg:a", drop="id,seg,color")
    assert len(a) == 40 and a.origin.endswith("?where=seg:a")
    b = read_csv(table, where_not="seg:a", drop="id,seg,color")
    assert len(b) == 40 and a.origin != b.origin
    both = read_csv(table, where="seg: a , b", where_not="color:green", drop="id,seg,color")
    assert len(both) == 60
    assert len(read_csv(table, where=("seg", ["b"]), drop="id,seg,color")) == 40  # the Python form


def test_a_filter_that_keeps_no_row_names_the_column_and_the_values_present(table):
    with pytest.raises(DataError) as info:
        read_csv(table, where="seg:c,d")
    msg = str(info.value)
    for part in (str(table), "where=seg:c,d", "keeps no row", "'seg'", "'a' (40 rows)", "'b' (40 rows)"):
        assert part in msg, msg
    with pytest.raises(DataError, match="where_not=seg:a,b keeps no row"):
        read_csv(table, where_not="seg:a,b")
    with pytest.raises(DataError, match="no column 'nope' to filter on"):
        read_csv(table, where="nope:a")
    with pytest.raises(DataError, match="must be COLUMN:VALUE"):
        read_csv(table, where="seg")


def test_text_columns_are_refused_unless_one_hot_encoded(table):
    with pytest.raises(DataError, match=r"column 'seg', line 2 holds 'a', which is not numeric.*\?categorical=seg"):
        read_csv(table, drop="id")
    d = read_csv(table, where="seg:a", drop="id,seg", categorical="auto")
    assert d.feature_names == ("color=blue", "color=red", "x")  # in place, categories sorted
    assert d.X[:, :2].sum(1).tolist() == [1.0] * 40 and d.X[0, :2].tolist() == [1.0, 0.0]
    named = read_csv(table, drop="seg", categorical="id,color", where="seg:b")  # numbers taken as text when named
    assert named.feature_names[:3] == ("id=40", "id=41", "id=42") and len(named.feature_names) == 40 + 2 + 1
    with pytest.raises(DataError, match="both the label and categorical"):
        read_csv(table, drop="seg", categorical="y")


def test_too_many_categories_is_an_id_column(table, monkeypatch):
    import qianyi.data.readers as readers

    monkeypatch.setattr(readers, "MAX_CATEGORIES", 10)
    with pytest.raises(DataError, match=r"categorical column 'id' holds more than 10 distinct values.*\?drop=id"):
        read_csv(table, categorical="id", drop="seg,color")


def test_one_hot_columns_line_up_by_name_across_segments(table):
    a = read_csv(table, where="seg:a", drop="id,seg", categorical="auto")
    b = read_csv(table, where="seg:b", drop="id,seg", categorical="auto")
    assert b.feature_names == ("color=green", "color=red", "x")
    with pytest.warns(QianyiWarning, match=r"never saw: \['color=green'\] \(20 of 40 rows\)"):
        m = match_features(a.feature_names, b)
    assert m.feature_names == a.feature_names
    assert m.X[:, 0].tolist() == [0.0] * 40  # 'blue' is unknown to b: a column of zeros
    assert m.X[:, 1].tolist() == b.X[:, 1].tolist() and m.X[:, 2].tolist() == b.X[:, 2].tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = match_features(b.feature_names[1:], a.replace(X=a.X[:, 1:], feature_names=a.feature_names[1:]))
        assert back.feature_names == ("color=red", "x")
    with pytest.raises(DataError, match="different feature columns"):  # a numeric column is not a category
        match_features(("color=red", "z"), a)


def test_load_task_on_two_segments_of_one_file(table):
    assert {"sep", "where", "where_not", "categorical"} <= set(READER_OPTIONS["csv"])
    src = f"csv:{table}?sep=;&where=seg:a&drop=id&categorical=auto"
    tgt = f"csv:{table}?sep=;&where=seg:b&drop=id&categorical=auto"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QianyiWarning)  # the target's unseen categories (tested above)
        task = qianyi.load_task(src, tgt)
    assert len(task.source) + len(task.source_val) == 40 and len(task.target) + len(task.target_test) == 40
    assert task.source.class_names == ("no", "yes") and task.target.feature_names == task.source.feature_names
    assert task.source.feature_names == ("seg=a", "color=blue", "color=red", "x")
    with pytest.raises(DataError, match=r"\?categorical="):  # without one-hot the text columns are refused
        qianyi.load_task(f"csv:{table}?where=seg:a&drop=id", f"csv:{table}?where=seg:b&drop=id")
    with pytest.raises(UnknownNameError, match="no option 'wher'"):
        load_domain(f"csv:{table}?wher=seg:a")


def test_filters_that_may_overlap_are_warned_about(table):
    base = f"csv:{table}?drop=id,seg,color"
    for other in ("&where_not=seg:b", "&where=seg:a", "&where=seg:a,c"):  # disjoint: no warning
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            qianyi.load_task(base + other, base + "&where=seg:b")
        assert not [w for w in seen if "row filters that may overlap" in str(w.message)], other
    with pytest.warns(QianyiWarning, match="may overlap"), pytest.raises(DataError, match="12 of the 12 target test"):
        qianyi.load_task(base, base + "&where=seg:b")  # they do: every target row is a source row, refused
    with pytest.warns(QianyiWarning, match="may overlap"), pytest.raises(DataError, match="12 of the 12 target test"):
        qianyi.load_task(base + "&where_not=seg:a", base + "&where=seg:b")  # seg b rows are on both sides
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QianyiWarning)  # the small test split
        same = qianyi.load_task(base + "&where=seg:b", base + "&where=seg:b")  # one filter: one pool, halves
    assert len(same.source) + len(same.source_val) == 20


def test_cli_source_only_on_two_segments(table, tmp_path, capsys):
    src = f"csv:{table}?where=seg:a&drop=id,seg&categorical=auto"
    tgt = f"csv:{table}?where=seg:b&drop=id,seg&categorical=auto"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QianyiWarning)
        code = main(["run", "source-only", "--source", src, "--target", tgt, *FAST, "--out", str(tmp_path / "r")])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "r" / "result.json").is_file()


def test_a_large_column_leaves_every_other_column_standardised():
    # the 'constant feature' cutoff compared each spread to the largest mean of all columns: next to an income
    # around 1e6, a rate with std 0.05 was left unscaled
    from qianyi.data.tasks import fit_vector_preprocessing

    rng = np.random.default_rng(0)
    X = np.c_[rng.normal(1e6, 2e5, 500), rng.normal(0.02, 0.05, 500), np.full(500, 3.0)]
    std = fit_vector_preprocessing(X, "none", True)["standardize"]["std"]
    assert std[1] == pytest.approx(X[:, 1].std(), rel=1e-4) and std[2] == 1.0  # the constant column: centred only


def test_a_label_column_of_another_name_is_pointed_to_label(tmp_path):
    """A 0/1 `churned` column was read as a feature; the errors advised ?drop= (which loses the label)."""
    from qianyi.data.tasks import load_task
    from qianyi.errors import DataError

    (tmp_path / "s.csv").write_text("a,b,churned\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(12)))
    (tmp_path / "t.csv").write_text("a,b\n" + "".join(f"{i},{i % 4}\n" for i in range(8)))
    with pytest.raises(DataError, match=r"if 'churned' is the label, name it: \?label=churned"):
        load_task(f"csv:{tmp_path / 's.csv'}", f"csv:{tmp_path / 't.csv'}")
    with pytest.raises(DataError, match=r"has no labels.*name another with \?label=COLUMN"):
        load_task(f"csv:{tmp_path / 's.csv'}?drop=churned", f"csv:{tmp_path / 't.csv'}")
    task = load_task(f"csv:{tmp_path / 's.csv'}?label=churned", f"csv:{tmp_path / 't.csv'}")
    assert task.source.X.shape[1] == 2


def test_categorical_auto_refuses_an_id_column(tmp_path):
    """?categorical=auto one-hot encoded a 400-value customer_id (400 of 407 features) without a word."""
    from qianyi.data.readers import read_csv
    from qianyi.errors import DataError

    rows = "".join(f"c{i:03d},{i % 5},{'ab'[i % 2]},{i % 2}\n" for i in range(30))
    (tmp_path / "s.csv").write_text("customer_id,age,city,label\n" + rows)
    with pytest.raises(DataError, match=r"column 'customer_id' holds a different value on every one of its 30 rows: "
                                        r"an ID.*\?drop=customer_id"):
        read_csv(tmp_path / "s.csv", categorical="auto")
    assert read_csv(tmp_path / "s.csv", categorical="auto", drop=["customer_id"]).X.shape == (30, 3)
    assert read_csv(tmp_path / "s.csv", categorical=["customer_id", "city"]).X.shape == (30, 33)  # as asked


def test_predict_on_a_table_read_without_categorical_takes_the_models_encoding(tmp_path, capsys):
    from qianyi.cli import main

    rows = lambda n, off: "".join(f"{'ab'[i % 2]},{(i + off) % 7},{i % 2}\n" for i in range(n))  # noqa: E731
    (tmp_path / "s.csv").write_text("city,age,label\n" + rows(40, 0))
    (tmp_path / "t.csv").write_text("city,age\n" + "".join(r.rsplit(",", 1)[0] + "\n" for r in rows(30, 3).splitlines()))
    src, tgt = f"csv:{tmp_path / 's.csv'}?categorical=auto", f"csv:{tmp_path / 't.csv'}?categorical=auto"
    assert main(["run", "source-only", "--source", src, "--target", tgt, "--epochs", "1", "--no-progress",
                 "--out", str(tmp_path / "run")]) == 0
    # (it was refused, 'city' not numeric: the model's one-hot columns are its own record of the column types)
    assert main(["predict", str(tmp_path / "run"), "--data", f"csv:{tmp_path / 't.csv'}",
                 "--out", str(tmp_path / "plain.csv")]) == 0
    assert main(["predict", str(tmp_path / "run"), "--data", tgt, "--out", str(tmp_path / "p.csv")]) == 0
    assert (tmp_path / "plain.csv").read_text() == (tmp_path / "p.csv").read_text()


def test_an_id_column_is_no_feature_and_names_each_prediction(tmp_path, capsys):
    # a customer table's id column had to be dropped (?drop=id), and the predictions could not be joined back to it
    import csv

    rows = lambda n, off: "".join(f"cust{i + off},{(i + off) % 7},{i % 3}.5,{i % 2}\n" for i in range(n))  # noqa: E731
    (tmp_path / "s.csv").write_text("id,age,score,label\n" + rows(40, 0))
    (tmp_path / "t.csv").write_text("id,age,score\n" + "".join(r.rsplit(",", 1)[0] + "\n"
                                                             for r in rows(30, 100).splitlines()))
    d = read_csv(tmp_path / "s.csv", id_column="id")
    assert d.feature_names == ("age", "score") and d.ids[:2] == ("cust0", "cust1") and d.X.shape == (40, 2)
    dropped = read_csv(tmp_path / "s.csv", drop="id")
    assert np.array_equal(d.X, dropped.X) and dropped.ids is None
    sub = load_domain(f"csv:{tmp_path / 's.csv'}?id=id")
    assert sub.ids == d.ids
    with pytest.raises(DataError, match=r"'label' is both the row id \(\?id=\) and the label"):
        read_csv(tmp_path / "s.csv", id_column="label", label="label")
    with pytest.raises(DataError, match=r"no column 'cid' \(\?id=\)"):
        read_csv(tmp_path / "s.csv", id_column="cid")
    with pytest.raises(DataError, match=r"keep it beside the predictions with \?id=id"):
        read_csv(tmp_path / "s.csv")
    src, tgt = f"csv:{tmp_path / 's.csv'}?id=id", f"csv:{tmp_path / 't.csv'}?id=id"
    assert main(["run", "source-only", "--source", src, "--target", tgt, *FAST, "--out", str(tmp_path / "run")]) == 0
    assert main(["predict", str(tmp_path / "run"), "--data", tgt, "--out", str(tmp_path / "p.csv")]) == 0
    got = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [r["id"] for r in got] == [f"cust{i}" for i in range(100, 130)]
    model = qianyi.load_model(tmp_path / "run")
    want = model.predict(model.prepare(tgt))
    assert [r["predicted"] for r in got] == [model.class_names[k] for k in want]
