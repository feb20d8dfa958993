"""AMN (issue 16): the memory network's attention, the method on the one engine, and `qianyi pivots`."""
from __future__ import annotations

import json

import pytest
import torch

import qianyi
from qianyi.cli import main
from qianyi.errors import DataError
from qianyi.measure.pivots import Pivot, lexicon_check, load_lexicon, word_polarity
from qianyi.nn.text import MemoryAttention, memory_network, word_attention
from qianyi.train.artefact import load_model

from .test_text import _toy_text


def test_memory_attention_is_the_stated_formula_and_ignores_padding():
    torch.manual_seed(0)
    att = MemoryAttention(4, hops=2)
    m = torch.randn(2, 5, 4)
    m[0, 3:] = 0.0  # padding
    m[1] = 0.0  # an empty text
    q, alphas = att.attend(m)
    # by hand: k_i = tanh(W m_i + b), s_i = q . k_i, softmax over the non-padding words, q <- q + sum alpha_i m_i
    q_hand = att.query.detach().clone()
    for k in range(2):
        s = torch.stack([q_hand @ torch.tanh(att.W(m[0, i])) for i in range(3)])
        a = torch.softmax(s, 0)
        assert torch.allclose(alphas[k][0, :3], a, atol=1e-6) and torch.equal(alphas[k][0, 3:], torch.zeros(2))
        q_hand = q_hand + (a.unsqueeze(1) * m[0, :3]).sum(0)
    assert torch.allclose(q[0], q_hand, atol=1e-6)
    assert torch.equal(alphas[-1][1], torch.zeros(5)) and torch.allclose(q[1], att.query)  # empty text: q_0
    assert torch.allclose(alphas[-1][0].sum(), torch.tensor(1.0))


def test_memnet_encoder_has_e_h_logits_and_its_attention_reads_token_ids():
    net = memory_network(12, 2, embed_dim=8, hidden=(6,))
    x = torch.tensor([[2, 3, 4, 0], [5, 0, 0, 0]], dtype=torch.float32)
    assert net.group_names == ("E", "H", "logits") and net(x).features.shape == (2, 6)
    a = word_attention(net, x)
    assert a.shape == (2, 4) and torch.allclose(a.sum(1), torch.ones(2)) and a[0, 3] == 0 and a[1, 0] == 1
    with pytest.raises(DataError, match="memnet"):
        word_attention(qianyi.nn.text.embedding_bag(12, 2), x)


def test_amn_brings_its_memory_network_and_plays_dann_s_game_on_a_text_task(tmp_path):
    # whether AMN helps is measured on the Amazon tasks (docs/text.md): on this toy it is not reliably better than
    # source-only (one seed in four collapses the target to one class; the run flags it)
    task = _toy_text(tmp_path, n=60)
    cfg = qianyi.TrainConfig(epochs=4, steps_per_epoch=20, batch_size=32, seed=0, progress=False)
    result, fit = qianyi.run("amn", task, cfg)
    assert isinstance(fit.backbone.groups["H"][0], MemoryAttention)  # AMN brings its encoder
    assert result.source_accuracy >= 0.95 and "domain_acc" in result.history[-1]
    assert result.hparams == qianyi.methods.get_method("dann").hparams()  # the loss is DANN's
    _, dann_fit = qianyi.run("dann", task, cfg)
    assert not isinstance(dann_fit.backbone.groups["H"][0], MemoryAttention)  # dann keeps the default encoder


def test_pivots_command_finds_the_shared_sentiment_words_with_their_polarity(tmp_path, capsys):
    _toy_text(tmp_path, n=150)
    lex = tmp_path / "lexicon.txt"
    lex.write_text("# word valence\ngreat 3.1\npoor -2.1\nsgood 1.0\n")
    out = tmp_path / "pv"
    s, t = f"lines:{tmp_path / 's'}", f"lines:{tmp_path / 't'}"
    argv = ["pivots", s, t, "--top", "4", "--lexicon", str(lex), "--epochs", "10", "--steps-per-epoch", "20",
            "--batch-size", "32", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    saved = json.loads((out / "pivots.json").read_text())
    words = {p["word"]: p for p in saved["pivots"]}
    first, second = saved["pivots"][:2]
    # one attended pivot is enough to tell the two classes apart here (the toy has one per class, and the
    # network settles on one of them): it leads, far ahead of any filler word, with its own polarity
    assert first["word"] in ("great", "poor") and first["score"] > 2 * second["score"], saved["pivots"]
    assert first["polarity"] == {"great": "positive", "poor": "negative"}[first["word"]]
    # domain-only words never reach the list: they occur in one domain only
    assert not {"sgood", "sbad", "tgood", "tbad"} & set(words)
    assert saved["lexicon_check"]["in_lexicon"] >= 1 and saved["lexicon_check"]["polarity_agrees"] >= 1
    # the polarity of both pivots, read from the trained network (one-word reviews)
    model = load_model(out / "run")
    vocab = model.meta["preprocessing"]["text"]["vocab"]
    proba = word_polarity(model.network, [vocab.index("great"), vocab.index("poor")], 256)
    assert proba[0].argmax() == model.class_names.index("positive") and proba[1].argmax() == model.class_names.index("negative")
    html = (out / "attention.html").read_text()
    assert html.count("<h3>") == 6 and ("great" in html or "poor" in html)
    assert (out / "attention.png").stat().st_size > 1000
    assert "pivot score" in capsys.readouterr().out
    # a second call reuses the finished run (no retraining) and gives the same list
    mtime = (out / "run" / "model.pt").stat().st_mtime
    assert main(argv) == 0 and (out / "run" / "model.pt").stat().st_mtime == mtime
    assert json.loads((out / "pivots.json").read_text())["pivots"] == saved["pivots"]
    assert load_model(out / "run").meta["architecture"]["backbone"] == "memnet"
    # --seeds 2: seed 0 reused, seed 1 trained; shares and polarity averaged over both
    assert main(argv + ["--seeds", "2"]) == 0 and (out / "run" / "model.pt").stat().st_mtime == mtime
    two = json.loads((out / "pivots.json").read_text())
    assert len(two["runs"]) == 2 and (out / "run-seed1" / "result.json").exists()
    assert two["pivots"][0]["word"] in ("great", "poor")
    # the finished runs were trained with the default text settings: other ones are refused, not mixed in
    assert main(argv + ["--text", "max_len=20"]) == 2
    assert "trained with other text settings" in capsys.readouterr().err
    # ... and so are another pair or other training settings (they were reused silently)
    assert main([*argv[:1], t, s, *argv[3:]]) == 2
    assert f"holds a run of {s} -> {t}; give another --out" in capsys.readouterr().err
    assert main(argv[:argv.index("--epochs") + 1] + ["3"] + argv[argv.index("--epochs") + 2:]) == 2
    assert "a run with other settings (epochs 10, asked 3)" in capsys.readouterr().err


def test_lexicon_file_errors_and_check(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        load_lexicon("/nonexistent/lexicon.txt")
    # `qianyi pivots` reads its lexicon before training AMN (a missing one cost the whole training first)
    from qianyi.measure.pivots import pivots

    with pytest.raises(DataError, match="cannot read"):
        pivots("lines:/nonexistent/s", "lines:/nonexistent/t", tmp_path, lexicon="/nonexistent/lexicon.txt")
    p = [Pivot("great", 0.1, 0.1, 0.1, 9, 9, "positive", 0.9), Pivot("awful", 0.1, 0.1, 0.1, 9, 9, "positive", 0.6),
         Pivot("the", 0.1, 0.1, 0.1, 9, 9, "negative", 0.5)]
    c = lexicon_check(p, {"great": 3.1, "awful": -2.0})
    assert (c["in_lexicon"], c["polarity_checked"], c["polarity_agrees"], c["not_in_lexicon"]) == (2, 2, 1, ["the"])


def test_lexicon_matches_character_bigrams_without_their_space():
    """cjk=chars,bigrams=true stores a character bigram as '很 好'; a Chinese lexicon holds '很好'."""
    p = [Pivot("很 好", 0.1, 0.1, 0.1, 9, 9, "positive", 0.9), Pivot("很 差", 0.1, 0.1, 0.1, 9, 9, "positive", 0.6),
         Pivot("not good", 0.1, 0.1, 0.1, 9, 9, "negative", 0.5), Pivot("好", 0.1, 0.1, 0.1, 9, 9, "positive", 0.5)]
    c = lexicon_check(p, {"很好": 2.0, "很差": -2.0, "notgood": -1.0})
    assert (c["in_lexicon"], c["polarity_checked"], c["polarity_agrees"]) == (2, 2, 1)
    assert c["not_in_lexicon"] == ["not good", "好"]  # a word bigram keeps its space: 'notgood' is no match


def test_vader_lexicon_reads_when_installed():
    import importlib.util

    if importlib.util.find_spec("vaderSentiment") is None:
        pytest.skip("vaderSentiment not installed (optional extra 'lexicon': pip install --no-deps vaderSentiment)")
    lex = load_lexicon("vader")
    assert len(lex) > 7000 and lex["great"] > 0 and lex["waste"] < 0 and "( '}{' )" in lex  # tab-separated tokens


def test_pivots_does_not_reuse_a_run_of_other_text_settings_when_text_is_left_out(tmp_path, capsys):
    _toy_text(tmp_path, n=40)
    s, t = f"lines:{tmp_path / 's'}", f"lines:{tmp_path / 't'}"
    argv = ["pivots", s, t, "--top", "2", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16",
            "--no-progress", "--out", str(tmp_path / "pv")]
    assert main(argv + ["--text", "max_len=20"]) == 0
    capsys.readouterr()
    assert main(argv) == 2  # the defaults (max_len 256) asked: the max_len=20 run is not theirs
    assert "trained with other text settings ({'max_len': 20}" in capsys.readouterr().err
    # nor a run on fewer reviews (--max-samples keeps the pair's name)
    assert main(argv + ["--text", "max_len=20", "--max-samples", "30"]) == 2
    assert "was trained on other data" in capsys.readouterr().err
    assert main(argv + ["--text", "max_len=20"]) == 0  # the same data again: reused
    capsys.readouterr()
    # a setting the run does not record is its default: vectors=... is not the plain run (it was reused)
    import qianyi.nn.text as text_mod

    monkey = dict(text_mod.VECTORS)
    text_mod.VECTORS.setdefault("stub", (lambda: 8, None))
    try:
        assert main(argv + ["--text", "max_len=20,vectors=stub"]) == 2
        assert "'vectors': None" in capsys.readouterr().err
    finally:
        text_mod.VECTORS.clear()
        text_mod.VECTORS.update(monkey)
    # the opt-in tokeniser settings are text settings too, named with their defaults
    assert main(argv + ["--text", "max_len=20,normalize=true"]) == 2
    assert "trained with other text settings ({'normalize': False}" in capsys.readouterr().err
    assert main(argv + ["--text", "max_len=20,cjk=chars"]) == 2
    assert "'cjk': 'words'" in capsys.readouterr().err
    emoji = argv[:-1] + [str(tmp_path / "pv-emoji")]
    assert main(emoji + ["--text", "max_len=20,emoji=true"]) == 0
    capsys.readouterr()
    assert main(emoji + ["--text", "max_len=20"]) == 2  # the run's setting, left out, is named
    assert "trained with other text settings ({'emoji': True}, asked {'emoji': False})" in capsys.readouterr().err
    # --run: a finished run of another pair is named, not read as this pair's
    assert main(["pivots", t, s, "--run", str(tmp_path / "pv" / "run"), "--top", "2", "--out", str(tmp_path / "q")]) == 2
    assert f"it holds the amn run of {s} -> {t}, not an amn run of {t} -> {s}" in capsys.readouterr().err



def test_attention_heatmap_png_fills_its_height(tmp_path, monkeypatch):
    """The PNG is as tall as its lines: the last review ends near the bottom, none runs off it."""
    import numpy as np

    import qianyi._report as report
    from qianyi.measure.pivots import heatmap_png
    seen, save = {}, report.save_figure

    def keep(fig, path):
        seen["ys"] = [t.get_position()[1] for t in fig.axes[0].texts]
        save(fig, path)

    monkeypatch.setattr(report, "save_figure", keep)
    rng = np.random.default_rng(0)
    rows = [(f"review {i}", [f"w{j}" for j in range(n)], rng.random(n)) for i, n in enumerate([20, 0, 45, 70, 9])]
    heatmap_png(rows, tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 0
    ys = seen["ys"]
    assert min(ys) > 0 and max(ys) < 1
    assert min(ys) < 0.1, f"blank space under the last review: its lowest line at {min(ys):.2f} of the height"


def test_pivots_with_no_word_at_all_says_so_not_lower_min_docs():
    """Chinese without spaces: the vocabulary holds no word ('<pad>', '<unk>' only); 'lower --min-docs' cannot
    help, the error says what happened and points to docs/text.md's section on such text."""
    import torch

    from qianyi.measure.pivots import find_pivots

    net = torch.nn.Linear(1, 2)  # never reached: the vocabulary is checked first
    X = [[1, 1, 1]] * 4
    with pytest.raises(DataError, match="vocabulary holds no word") as info:
        find_pivots(net, X, X, ["<pad>", "<unk>"], ("好评", "差评"))
    assert "lower --min-docs" not in str(info.value) and "Text without spaces" in str(info.value)


def test_lexicon_check_with_class_names_it_cannot_sign_says_skipped(tmp_path):
    """Classes named 好评/差评: the polarity check is skipped and the report says why, not 'agrees for 0 of 0';
    pivots.json keeps the words readable (not \\uXXXX escapes) and the table aligns wide characters."""
    from qianyi.measure.pivots import pivots_table, write_pivots

    p = [Pivot("很好", 0.1, 0.1, 0.1, 9, 9, "好评", 0.9), Pivot("bad", 0.1, 0.1, 0.1, 9, 9, "差评", 0.6)]
    c = lexicon_check(p, {"很好": 2.0, "bad": -2.0})
    assert c["polarity_checked"] == 0 and c["polarity_skipped"] == ["好评", "差评"]
    table = pivots_table(p, c, "zh.txt")
    assert "agrees for 0 of 0" not in table and "polarity not checked" in table and "好评" in table
    rows = table.split("\n")[:4]
    from unicodedata import east_asian_width

    width = [sum(2 if east_asian_width(ch) in "WF" else 1 for ch in r) for r in rows]
    assert len(set(width)) == 1, rows
    files = write_pivots(tmp_path, p, c, [], {"source": "s", "target": "t"})
    text = open(files["json"], encoding="utf-8").read()
    assert '"word": "很好"' in text and "\\u" not in text
