"""The HTML report: written by bench and by `qianyi report`, every figure loads in a headless browser."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from qianyi.cli import main

from .test_hostile import _blobs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    src, tgt = _blobs(d / "s.npz"), _blobs(d / "t.npz", shift=1.0, seed=1)
    rc = main(["bench", "--methods", "dan", "--pairs", f"{src}->{tgt}", "--seeds", "1", "--epochs", "2",
               "--batch-size", "16", "--no-progress", "--threads", "1", "--out", str(d / "b")])
    assert rc == 0
    return d / "b"


def test_bench_writes_the_report_and_its_markdown_twin(bench_dir, capsys):
    html = (bench_dir / "report.html").read_text()
    assert "The figures are PNG files in <code>report/</code> beside this page" in html
    for part in ("Results", "gap closed", "Training curves", "ORACLE", "Feature embedding", "Distance per layer"):
        assert part in html
    for fig in ("curves.png", "embedding.png", "profile.png"):
        assert (bench_dir / "report" / fig).stat().st_size > 5000 and f"report/{fig}" in html
    md = (bench_dir / "report.md").read_text()
    assert "![Feature embedding](report/embedding.png)" in md and "| dan |" in md
    (bench_dir / "report.html").unlink()
    assert main(["report", str(bench_dir), "--no-embedding"]) == 0
    assert "Training curves" in (bench_dir / "report.html").read_text()
    assert "embedding.png" not in (bench_dir / "report.html").read_text()


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_the_report_opens_in_headless_chromium_with_every_image_loaded(bench_dir):
    assert main(["report", str(bench_dir)]) == 0
    url = (bench_dir / "report.html").resolve().as_uri()
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--virtual-time-budget=5000", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'data-images="3/3"' in done.stdout  # the page's own check: loaded images / all images
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console


def test_a_rerun_reuses_the_figures_while_no_model_changed(bench_dir, monkeypatch, capsys):
    # a rerun of a finished bench redrew the t-SNE and the layer profile every time (78% of its time)
    import sklearn.manifold

    class NoTSNE:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("t-SNE ran")

    assert main(["report", str(bench_dir)]) == 0  # (another test may have written it without figures)
    before = (bench_dir / "report" / "embedding.png").read_bytes()
    monkeypatch.setattr(sklearn.manifold, "TSNE", NoTSNE)
    assert main(["report", str(bench_dir)]) == 0
    assert "report/embedding.png" in (bench_dir / "report.html").read_text()
    assert (bench_dir / "report" / "embedding.png").read_bytes() == before
    (bench_dir / "report" / "embedding.key").write_text("made of other models\n")  # as after a retrained model
    capsys.readouterr()
    assert main(["report", str(bench_dir)]) == 0
    assert "no embedding/profile: RuntimeError: t-SNE ran" in capsys.readouterr().err  # redrawn, not reused
    monkeypatch.undo()
    assert main(["report", str(bench_dir)]) == 0 and "report/embedding.png" in (bench_dir / "report.html").read_text()


def test_a_rerun_of_a_finished_bench_loads_no_model_while_its_figures_stand(bench_dir, monkeypatch, capsys):
    # the figures' key needs only the run folders and model.json: every seed-0 model was loaded in full (a MiniLM
    # model built twice and its model.pt read) before the key was compared, half of a cached MiniLM rerun
    import qianyi.bench.html as html_module

    def no_load(*args, **kwargs):
        raise RuntimeError("load_model ran")

    d = bench_dir.parent
    again = ["bench", "--methods", "dan", "--pairs", f"npz:{d / 's.npz'}->npz:{d / 't.npz'}", "--seeds", "1", "--epochs", "2",
             "--batch-size", "16", "--no-progress", "--threads", "1", "--out", str(bench_dir)]
    assert main(["report", str(bench_dir)]) == 0  # (another test may have written it without figures)
    before = (bench_dir / "report" / "embedding.png").read_bytes()
    monkeypatch.setattr(html_module, "load_model", no_load)
    capsys.readouterr()
    assert main(again) == 0
    err = capsys.readouterr().err
    assert "(done earlier)" in err and "load_model ran" not in err and "no embedding/profile" not in err
    assert "report/embedding.png" in (bench_dir / "report.html").read_text()
    assert (bench_dir / "report" / "embedding.png").read_bytes() == before
    (bench_dir / "report" / "embedding.key").write_text("made of other models\n")  # redrawn: then it loads them
    assert main(again) == 0
    assert "no embedding/profile: RuntimeError: load_model ran" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["report", str(bench_dir)]) == 0 and "report/embedding.png" in (bench_dir / "report.html").read_text()


def test_other_code_redraws_the_figures(bench_dir, monkeypatch, capsys):
    # the cache key held the models and data but not the code: a fix to how the per-layer MMD or the t-SNE is
    # computed kept the old figures
    import sklearn.manifold

    import qianyi.bench.html as html_module

    class NoTSNE:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("t-SNE ran")

    assert main(["report", str(bench_dir)]) == 0
    monkeypatch.setattr(sklearn.manifold, "TSNE", NoTSNE)
    capsys.readouterr()
    assert main(["report", str(bench_dir)]) == 0
    assert "t-SNE ran" not in capsys.readouterr().err  # the same code: reused
    monkeypatch.setattr(html_module, "code_digest", lambda: "other code")
    assert main(["report", str(bench_dir)]) == 0
    err = capsys.readouterr().err
    assert "no embedding/profile: RuntimeError: t-SNE ran" in err  # redrawn, not reused
    # and said why (after any source edit a rerun of a finished bench took a minute more, unexplained)
    assert err.count("redrawing the report figures: the qianyi code changed since they were drawn") == 1
    monkeypatch.undo()
    key = bench_dir / "report" / "embedding.key"
    key.write_text("made of other models\ncode an older digest\n")  # other models too: not the code alone
    assert main(["report", str(bench_dir)]) == 0
    assert "the qianyi code changed" not in capsys.readouterr().err
    assert main(["report", str(bench_dir)]) == 0 and "report/embedding.png" in (bench_dir / "report.html").read_text()


def test_report_out_writes_a_bench_report_elsewhere(bench_dir, tmp_path):
    # a read-only bench folder could not be reported: --out writes the report elsewhere, its links work from there
    import re

    before = {p: p.stat().st_mtime_ns for p in bench_dir.rglob("*") if p.is_file()}
    out = tmp_path / "rep"
    assert main(["report", str(bench_dir), "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in bench_dir.rglob("*") if p.is_file()} == before  # nothing written there
    html = (out / "report.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) == 3 and all((out / s).is_file() for s in srcs)
    assert f"The bench folder: {str(bench_dir.resolve())!r}" in (out / "report.md").read_text()


def test_tiny_values_in_tables_show_their_size_not_zero():
    from qianyi._report import fmt, markdown_table

    assert fmt(0.00001234) == "1.23e-05" and fmt(0.0) == "0.0000" and fmt(0.1234) == "0.1234" and fmt(None) == "–"
    assert "1.23e-05" in markdown_table(["layer", "coral"], [["fc1", 0.00001234]])


def test_the_embedding_reads_the_data_as_each_run_did(tmp_path, monkeypatch):
    """A bench with non-default text settings: the report's t-SNE must feed each model the inputs its run
    saw (its model.json's tokeniser), not the defaults of load_task."""
    import random

    import numpy as np

    from qianyi.bench import html
    from qianyi.train.artefact import load_domain_for, load_model

    random.seed(0)
    pos, neg = "good great fine excellent lovely superb".split(), "bad awful poor terrible boring dull".split()
    for dom, extra in (("s", ["paper", "story"]), ("t", ["kitchen", "blender"])):
        (tmp_path / dom).mkdir()
        for name, words in (("positive", pos), ("negative", neg)):
            lines = [" ".join(random.choices(words, k=2) + random.choices(["the", "it", "was", "very"] + extra, k=6))
                     for _ in range(40)]
            (tmp_path / dom / f"{name}.txt").write_text("\n".join(lines) + "\n")
    pair = (f"lines:{tmp_path / 's'}", f"lines:{tmp_path / 't'}")
    seen = []
    from qianyi.nn import inference

    original = inference.predict_features

    def spy(net, x, *a, **k):  # the report imports predict_features where it uses it: patch its home
        seen.append(np.asarray(x))
        return original(net, x, *a, **k)

    monkeypatch.setattr(inference, "predict_features", spy)
    rc = main(["bench", "--methods", "dann", "--pairs", f"{pair[0]}->{pair[1]}", "--seeds", "1", "--epochs", "1",
               "--batch-size", "8", "--text", "bigrams=true,min_count=1", "--no-progress", "--threads", "1",
               "--out", str(tmp_path / "b")])
    assert rc == 0 and "embedding.png" in (tmp_path / "b" / "report.md").read_text()
    run_dir = next(p.parent for p in (tmp_path / "b" / "runs").rglob("model.json") if "dann" in str(p))
    model = load_model(run_dir)
    rng = np.random.default_rng(0)
    src = load_domain_for(model, pair[0])
    expected = src.X[rng.permutation(len(src))[:html.EMBED_SAMPLES]]
    assert any(x.shape == expected.shape and np.array_equal(x, expected) for x in seen)


def test_report_keeps_the_bench_commands_order_of_pairs_and_methods(tmp_path):
    src, tgt = _blobs(tmp_path / "s.npz"), _blobs(tmp_path / "t.npz", shift=1.0, seed=1)
    out = tmp_path / "b"
    assert main(["bench", "--methods", "dann,coral", "--pairs", f"{tgt}->{src}", f"{src}->{tgt}", "--seeds", "1",
                 "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16", "--no-progress", "--threads", "1",
                 "--out", str(out)]) == 0
    bench_md = (out / "results.md").read_text()
    assert main(["report", str(out), "--no-embedding"]) == 0
    report_md = (out / "report.md").read_text()
    first = lambda t: t[t.index("| method"):].split("\n\n")[0]  # noqa: E731
    assert first(report_md) == first(bench_md)
    assert first(bench_md).index("| dann") < first(bench_md).index("| coral")  # the command's order, not a-z


def test_report_tabulates_the_runs_the_last_bench_tabulated(tmp_path, capsys):
    # bench --seeds 2, then --seeds 1 into the folder: results.md showed seed 0 (24.0) and `qianyi report` rewrote
    # report.md from every stored run (23.2 ± 1.2, seeds [0, 1]): two tables of one folder
    import csv

    src, tgt = _blobs(tmp_path / "s.npz"), _blobs(tmp_path / "t.npz", shift=1.0, seed=1)
    out = tmp_path / "b"
    flags = ["--methods", "dann", "--pairs", f"{src}->{tgt}", "--epochs", "1", "--steps-per-epoch", "2",
             "--batch-size", "16", "--no-progress", "--threads", "1", "--no-embedding", "--out", str(out)]
    assert main(["bench", *flags, "--seeds", "2"]) == 0
    assert main(["bench", *flags, "--seeds", "1"]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    # each row's key names its stored run (a glob is a generator, always true: any() asks for one match)
    assert len(rows) == 3 and all(any((out / "runs").glob(f"*/*/seed0-{r['run']}/result.json")) for r in rows)
    assert not any((out / "runs").glob("*/*/seed0-nosuchkey/result.json"))
    bench_md = (out / "results.md").read_text()
    table = lambda t: t[t.index("| method"):t.index("\n\n", t.index("Seeds ["))]  # noqa: E731
    assert "Seeds [0];" in table(bench_md)
    capsys.readouterr()
    assert main(["report", str(out), "--no-embedding"]) == 0
    report_md = (out / "report.md").read_text()
    assert table(report_md) == table(bench_md)
    assert "Tabulated: the 3 runs" in report_md and "warning" not in capsys.readouterr().err
    # a folder of an earlier bench (no run column): every stored run, and the report and stderr say so
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, [k for k in rows[0] if k != "run"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    assert main(["report", str(out), "--no-embedding"]) == 0
    report_md = (out / "report.md").read_text()
    assert "Seeds [0, 1];" in table(report_md) and "Tabulated: every finished run in" in report_md
    assert "does not list the runs its bench tabulated" in capsys.readouterr().err
    # no results.csv at all (a select folder, a bench killed before its tables): no advice to rerun a bench
    (out / "results.csv").unlink()
    assert main(["report", str(out), "--no-embedding"]) == 0
    report_md, err = (out / "report.md").read_text(), capsys.readouterr().err
    assert "Seeds [0, 1];" in table(report_md) and "a select folder, or a bench that has not finished" in report_md
    assert "a select folder, or a bench that has not finished" in err
    assert "before they were recorded" not in report_md + err and "rerun that bench" not in report_md + err


def test_a_method_trained_on_target_labels_is_marked_oracle_wherever_it_shows(tmp_path, capsys):
    """MULT (or a plugin declaring uses_target_labels) is marked like the oracle: by what its runs did,
    not by the name 'oracle'; it gets no gap closed and no label-free-choice row."""
    from qianyi.bench.runner import bench

    res = bench(["mult", "dan"], ["digits->digits+rot30@150"], seeds=1, out=tmp_path,
                config=qianyi_config(), log=None)
    table, summary = res.table(), res.summary_table()
    assert "| mult (ORACLE: target labels) |" in table and "| dan |" in table
    mult_row = next(line for line in table.splitlines() if line.startswith("| mult"))
    assert mult_row.split("|")[3].strip() == "–"  # no gap closed of its own
    assert "except in the rows marked ORACLE" in table
    assert "| mult (ORACLE: target labels) |" in summary
    assert "mult" not in res.honesty_table()
    assert main(["summary", str(tmp_path)]) == 0
    assert "| mult (ORACLE: target labels) |" in capsys.readouterr().out


def qianyi_config():
    from qianyi.train import TrainConfig

    return TrainConfig(epochs=1, steps_per_epoch=2, batch_size=16, progress=False)


def test_a_report_of_runs_on_a_network_of_your_own_says_why_it_has_no_embedding(tmp_path):
    from torch import nn

    from qianyi.bench.html import write_report
    from qianyi.bench.runner import bench
    from qianyi.nn import as_backbone

    def net(shape, k):
        return as_backbone(nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, k)))
    res = bench(["dann"], ["digits->digits+rot30@100"], seeds=1, out=tmp_path, config=qianyi_config(),
                backbone=net, log=None)
    said: list[str] = []
    files = write_report(res, tmp_path, log=said.append)
    assert "embedding" not in files and any("network of your own" in s and "network=" in s for s in said)
    assert files["html"].exists()


def test_a_dollar_pair_in_a_name_is_drawn_as_written(tmp_path):
    # a file named sales_$5_to_$10.npz: matplotlib read the text between the dollars as math and the plot failed
    from qianyi._report import save_figure, subplots

    fig, ax = subplots()
    ax.set_title("npz:sales_$5_to_$10.npz -> npz:t.npz")
    ax.bar(["a $x$ b", "c"], [1, 2], label="$5_to_$")
    ax.legend()
    fig.suptitle("$_^$")
    fig.tight_layout()
    assert save_figure(fig, tmp_path / "f.png").stat().st_size > 0
    # a figure drawn without tight_layout is plain too (mutation2 R3: every figure tested called it): a bare one
    # and the pivots heat map, whose review text holds '$' pairs that are no valid math
    import numpy as np

    from qianyi._report import figure
    from qianyi.measure.pivots import heatmap_png

    bare = figure()
    bare.add_subplot().set_title("review: $x^^2$ and $\\nothing$")
    assert save_figure(bare, tmp_path / "bare.png").stat().st_size > 0
    words = ["$5", "great", "$50"]
    heatmap_png([("review 3 (positive): a_b_c $x^^2$ and $\\nothing$", words, np.array([0.2, 0.9, 0.5]))],
                tmp_path / "attention.png")
    assert (tmp_path / "attention.png").stat().st_size > 0


def test_a_bar_or_a_tag_in_a_name_keeps_the_table_columns_and_stays_text():
    # a domain file 'a|b.npz' shifted every column of results.md and report.html; '<img onerror=...>' in a name
    # was raw HTML in the Markdown twins
    from qianyi._report import markdown_table, md_cell, md_cells
    from qianyi.bench.html import _md_table_to_html

    name = "npz:d|x/a|b.npz→t<img src=x onerror=alert(1)>.npz"
    md = markdown_table(["method", name + " acc. (%)", "gap"], [["dan", 1.0, name]])
    head, sep, row = md.splitlines()
    assert len(md_cells(head)) == len(md_cells(sep)) == len(md_cells(row)) == 3
    assert md_cells(row)[2] == name and "<img" not in md.replace("\\<img", "")
    page = _md_table_to_html(f"| method | {md_cell(name)} |\n|---|---:|\n| dan | 1.0 |")
    assert page.count("<th>") == 2 and "&lt;img" in page and "<img" not in page


def test_select_and_bench_text_escape_names_too():
    # select's table header and bench's "Pairs:"/"Per pair" lines carried a raw '|' (the table stopped rendering)
    import numpy as np

    from qianyi._report import md_cells
    from qianyi.bench.selection import SelectionResult

    res = SelectionResult("dan", "dev", ["npz:a<b>.npz->npz:c|d.npz"], [{"note": "x|y"}, {}], np.zeros((2, 1, 1)),
                          np.full((2, 1, 1), np.nan), np.array([1.0, 2.0]), 0)
    head, sep, row = res.table().splitlines()[:3]
    assert len(md_cells(head)) == len(md_cells(sep)) == len(md_cells(row)) == 3
    assert "<b>" not in res.table().replace("\\<b>", "") and md_cells(head)[1] == "npz:a<b>.npz->npz:c|d.npz dev"


def test_the_bench_report_reads_relative_specs_from_the_folder_the_runs_started_in(tmp_path, monkeypatch):
    # the embedding read 'npz:s.npz' from wherever `qianyi report` ran: another folder's files of the same name
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _blobs(a / "s.npz")
    _blobs(a / "t.npz", shift=1.0, seed=1)
    _blobs(b / "s.npz", seed=5)
    _blobs(b / "t.npz", shift=3.0, seed=6)  # other data, the same names
    monkeypatch.chdir(a)
    assert main(["bench", "--methods", "dan", "--pairs", "npz:s.npz->npz:t.npz", "--seeds", "1", "--epochs", "1",
                 "--batch-size", "16", "--no-progress", "--threads", "1", "--out", "bench"]) == 0
    before = (a / "bench" / "report" / "embedding.png").read_bytes()
    (a / "bench" / "report" / "embedding.key").unlink()  # drawn again, from b
    monkeypatch.chdir(b)
    assert main(["report", str(a / "bench")]) == 0
    assert (a / "bench" / "report" / "embedding.png").read_bytes() == before  # a's data, not b's


def test_summary_refuses_a_pair_given_twice(bench_dir, capsys):
    # summary --pairs A A counted pair A twice in the mean over pairs
    from qianyi.bench.runner import BenchResult

    s, t = BenchResult.from_dirs([bench_dir]).pairs[0]
    assert main(["summary", str(bench_dir), "--pairs", f"{s}->{t}", f"{s}->{t}"]) == 2
    assert "is given twice" in capsys.readouterr().err


def test_report_reads_the_runs_results_csv_lists_whatever_the_locale(tmp_path):
    """results.csv is UTF-8; its run keys were read in the locale's encoding, so a pair spec holding 'é' made
    `qianyi report` under an ASCII locale tabulate every stored run and say the folder predates the keys."""
    import csv
    import os
    import sys

    from qianyi.bench.runner import RUN_COLUMN

    path = tmp_path / "results.csv"
    with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "source", "target", RUN_COLUMN])
        w.writerow(["dan", "csv:/data/données/s.csv", "csv:/data/迁移/t.csv", "abc123"])
        w.writerow(["dan", "csv:/data/\udce9/s.csv", "csv:t.csv", "def456"])  # an undecodable file-name byte
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIOENCODING"))}
    env.update(PYTHONUTF8="0", PYTHONCOERCECLOCALE="0", LC_ALL="C", LANG="C",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    code = ("import sys; from qianyi.bench.runner import _tabulated_keys; "
            "print(sorted(_tabulated_keys(sys.argv[1]) or []))")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['abc123', 'def456']"


def test_report_of_a_summary_out_folder_says_its_runs_are_elsewhere(bench_dir, tmp_path, capsys):
    """A `summary --out` folder holds results.csv and no runs/: report blamed a deletion and a bench command."""
    import shutil

    out = tmp_path / "sum"
    assert main(["summary", str(bench_dir), "--out", str(out)]) == 0
    assert (out / "results.csv").is_file() and not (out / "runs").exists()
    capsys.readouterr()
    assert main(["report", str(out), "--no-embedding"]) == 2
    err = capsys.readouterr().err
    assert f"{str(out)!r} holds a results.csv but no runs/ (a `qianyi summary --out` folder?)" in err, err
    assert "deleted" not in err and "bench command" not in err
    # a bench folder whose listed runs are gone from its runs/ still says so
    gone = tmp_path / "gone"
    shutil.copytree(bench_dir, gone)
    shutil.rmtree(gone / "runs")
    (gone / "runs").mkdir()
    assert main(["report", str(gone), "--no-embedding"]) == 2
    assert "(deleted?); rerun the bench command that wrote it" in capsys.readouterr().err



def test_figure_labels_with_an_undecodable_byte_are_drawn(tmp_path):
    """matplotlib refuses the surrogates an undecodable file-name byte is read as (set_text(): TypeError): the bench
    figures draw their names through drawable (the whole bench: test_scripting.py)."""
    import numpy as np

    from qianyi.bench.run_report import _prediction_shares
    from qianyi.bench.runner import drawable

    assert drawable("npz:/d\udce9/s.npz") == "npz:/d\ufffd/s.npz"  # no UTF-8: the replacement character
    assert drawable("/donn\udcc3\udca9es") == "/données"  # a UTF-8 name read under an ASCII locale: as it is
    assert drawable("a\ud800b") == "a?b" and drawable("plain → text") == "plain → text"
    png, _ = _prediction_shares(("a\udce9", "b"), np.array([0, 1]), np.array([1, 1]), tmp_path / "shares.png")
    assert png.read_bytes()[:4] == b"\x89PNG"  # a class named after an undecodable folder, in a run's report


def test_prediction_shares_with_many_long_class_names_draw_the_tables_classes_whole(tmp_path, monkeypatch):
    """review (classes) finding 6: 120 long names drew all 120 bars under a 3.2-inch figure, tick labels cut to their
    last characters, the legend on the bars and matplotlib's 'Tight layout not applied' warning; the table beside
    it showed the 20 classes whose shares differ most."""
    import warnings

    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from qianyi.bench import run_report
    from qianyi.bench.run_report import _prediction_shares, _tick_label

    names = tuple(f"Klasse ü Nr. {i:03d} — 很长的类别名称 very long descriptive class name {i}" for i in range(120))
    ys = np.repeat(np.arange(120), 5)
    pred = np.random.default_rng(0).integers(0, 30, 600)  # the target given to 30 of the classes
    figures = []
    save = run_report.save_figure
    monkeypatch.setattr(run_report, "save_figure", lambda fig, path: figures.append(fig) or save(fig, path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png, table = _prediction_shares(names, ys, pred, tmp_path / "shares.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert not [str(w.message) for w in caught], [str(w.message) for w in caught]
    in_table = [row.split(" | ")[0][2:] for row in table.splitlines()[2:22]]
    assert len(in_table) == 20 and "(the 20 classes of 120 whose shares differ most)" in table
    (fig,) = figures
    (ax,) = fig.axes
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    ticks = [t for t in ax.get_xticklabels() if t.get_text()]
    assert [t.get_text() for t in ticks] == [_tick_label(n) for n in in_table]  # the table's classes, in its order
    assert all(len(t.get_text()) <= 24 for t in ticks)
    assert _tick_label(names[7]) == "Klasse ü Nr. 00…s name 7" and _tick_label("short") == "short"
    box = fig.bbox
    for t in ticks:  # every label whole inside the figure
        e = t.get_window_extent(renderer)
        assert e.x0 >= box.x0 and e.y0 >= box.y0 and e.x1 <= box.x1 and e.y1 <= box.y1, (t.get_text(), e, box)
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.y0 >= ax.get_window_extent(renderer).y1 - 1  # above the bars, not on them
