"""Text domains: the Blitzer review reader, csv/jsonl/lines text specs, the tokeniser and vocabulary, the
text encoders (groups E / H / logits) on the one engine, and predict on new raw text."""
from __future__ import annotations

import csv
import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch

import qianyi
from qianyi.cli import main
from qianyi.data import load_domain, load_task, parse_spec
from qianyi.data.builtin import DATASETS
from qianyi.data.domain import Domain, TransferTask
from qianyi.data.text import (AMAZON_DOMAINS, encode_texts, fit_text_preprocessing, parse_reviews, tokenize,
                              tokenize_task)
from qianyi.errors import DataError, DatasetNotFoundError, QianyiWarning, UnknownNameError
from qianyi.nn.text import TextEncoder, embedding_bag, text_cnn
from qianyi.train.artefact import load_domain_for, load_model

from .conftest import DATA, requires_data

FAST = dict(epochs=2, steps_per_epoch=10, batch_size=16, progress=False)


def _review(text: str, title: str = "A title", rating: str = "5.0") -> str:
    return (f"<review>\n<unique_id>\nx\n</unique_id>\n<rating>\n{rating}\n</rating>\n<title>\n{title}\n</title>\n"
            f"<review_text>\n{text}\n</review_text>\n</review>\n")


def _fake_amazon(root, domain: str = "books", n: int = 12) -> None:
    d = root / "amazon-blitzer2007-raw" / domain
    d.mkdir(parents=True)
    for cls, word in (("positive", "great"), ("negative", "awful")):
        body = "".join(_review(f"{word} {domain} item number {i} &quot;ok&quot;") for i in range(n))
        (d / f"{cls}.review").write_text(f"<reviews>\n{body}</reviews>\n")


# --- readers -------------------------------------------------------------------------------------

def test_parse_reviews_decodes_entities_and_skips_malformed_records():
    text = ("<reviews>\n" + _review("Fish &amp; chips &quot;fine&quot; &#45; 5&#46;0, Kitchen & Housewares",
                                     title="Caf&eacute;")
            + "<review>\n<title>\nno text here\n</title>\n</review>\n"        # no <review_text>
            + "<review>\n<review_text>\n   \n</review_text>\n</review>\n"      # empty text
            + "<review>\n<review_text>\nunclosed record\n</review_text>\n"     # no </review> before the next
            + _review("second good one") + "</reviews>\n")
    texts, ratings, bad = parse_reviews(text)
    assert bad == 3
    assert texts == ['Café\nFish & chips "fine" - 5.0, Kitchen & Housewares', "A title\nsecond good one"]
    assert ratings == [5.0, 5.0]


def test_amazon_builtin_reads_a_data_folder_and_refuses_malformed_records(tmp_path, monkeypatch):
    monkeypatch.setattr("qianyi.data.text.AMAZON_REVIEWS_PER_FILE", 12)  # the stand-in's size (the real: 1,000)
    _fake_amazon(tmp_path, "kitchen")
    assert all(f"amazon/{d}" in DATASETS for d in AMAZON_DOMAINS)
    assert parse_spec("amazon/kitchen") == ("amazon/kitchen", [])
    d = load_domain("amazon/kitchen", data_dir=tmp_path)
    assert d.is_text and d.name == "amazon/kitchen" and d.class_names == ("negative", "positive")
    assert np.bincount(d.y).tolist() == [12, 12] and '"ok"' in d.X[0]
    _fake_amazon(tmp_path / "cut", "kitchen")
    bad = tmp_path / "cut" / "amazon-blitzer2007-raw" / "kitchen" / "negative.review"
    bad.write_text(bad.read_text().replace("</review>", "", 1))  # the first record loses its end tag
    with pytest.raises(DataError, match=r"negative.review' holds 11 reviews \(1 malformed record\(s\) skipped\)"):
        load_domain("amazon/kitchen", data_dir=tmp_path / "cut")
    with pytest.raises(DatasetNotFoundError, match="amazon-blitzer2007-raw/books"):
        load_domain("amazon/books", data_dir=tmp_path)


def test_cli_takes_amazon_names_with_a_slash(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("qianyi.data.text.AMAZON_REVIEWS_PER_FILE", 30)  # the stand-in's size (the real: 1,000)
    for name in ("books", "kitchen"):
        _fake_amazon(tmp_path, name, n=30)
    out = tmp_path / "run"
    assert main(["--data-dir", str(tmp_path), "run", "dann", "--source", "amazon/books", "--target", "amazon/kitchen",
                 "--epochs", "1", "--steps-per-epoch", "3", "--no-progress", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["source"] == "amazon/books" and result["target"] == "amazon/kitchen"
    assert result["n_target_test"] == 18  # 30 % of the 60 kitchen reviews, held out
    assert main(["datasets"]) == 0 and "amazon/kitchen" in capsys.readouterr().out


@requires_data("amazon-blitzer2007-raw")
def test_real_blitzer_reviews_hold_1000_per_class_with_entities_decoded():
    for name in AMAZON_DOMAINS:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no malformed record in the real files
            d = load_domain(f"amazon/{name}", data_dir=DATA)
        assert len(d) == 2000 and np.bincount(d.y).tolist() == [1000, 1000], name
        joined = "\n".join(d.X)
        assert "&quot;" not in joined and "&amp;" not in joined and "<review_text>" not in joined
    assert '"' in joined  # &quot; decoded


def test_csv_text_mode_reads_a_text_and_a_label_column(tmp_path):
    p = tmp_path / "reviews.csv"
    with open(p, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "review", "stars"])
        w.writerows([[1, "good, really good", "pos"], [2, 'bad "very"\nbad', "neg"], [3, "ok", "pos"]])
    d = load_domain(f"csv:{p}?text=review&label=stars")
    assert d.is_text and list(d.X) == ["good, really good", 'bad "very"\nbad', "ok"]
    assert d.class_names == ("neg", "pos") and d.y.tolist() == [1, 0, 1]
    assert load_domain(f"csv:{p}?text=review").y is None  # no label-like column: unlabelled
    with pytest.raises(DataError, match=r"reviews.csv.*no text column 'body'.*\?text=COLUMN"):
        load_domain(f"csv:{p}?text=body")
    with pytest.raises(DataError, match=r"takes only the options.*leave out drop"):
        load_domain(f"csv:{p}?text=review&drop=id")
    with pytest.raises(UnknownNameError, match="no option 'txt'"):
        load_domain(f"csv:{p}?txt=review")
    p.write_text("review,label\nfine,pos\nmissing label,\n")
    with pytest.raises(DataError, match=r"reviews.csv.*label 'label' is empty"):
        load_domain(f"csv:{p}?text=review")


def test_jsonl_spec_and_its_errors(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"text": "nice", "label": "positive"}\n\n{"text": "meh", "label": "negative"}\n')
    d = load_domain(f"jsonl:{p}")
    assert list(d.X) == ["nice", "meh"] and d.class_names == ("negative", "positive") and d.y.tolist() == [1, 0]
    p.write_text('{"body": "nice", "y": 1}\n{"body": "meh", "y": 0}\n')
    d = load_domain(f"jsonl:{p}?text=body&label=y")
    assert d.y.tolist() == [1, 0]
    assert load_domain(f"jsonl:{p}?text=body").y is None
    p.write_text('{"text": "nice"}\n{"text": "oops"\n')
    with pytest.raises(DataError, match=r"r.jsonl.*line 2 is not valid JSON"):
        load_domain(f"jsonl:{p}")
    p.write_text('{"text": 3}\n')
    with pytest.raises(DataError, match=r"line 1 holds a int in 'text'"):
        load_domain(f"jsonl:{p}")
    p.write_text('{"review": "x"}\n')
    with pytest.raises(DataError, match=r"line 1 has no key 'text'.*\?text=KEY.*review"):
        load_domain(f"jsonl:{p}")


def test_lines_spec_takes_labels_from_file_names(tmp_path):
    (tmp_path / "positive.txt").write_text("loved it\n\nworks well\n")
    (tmp_path / "negative.txt").write_text("broke at once\n")
    d = load_domain(f"lines:{tmp_path}")
    assert d.class_names == ("negative", "positive") and d.y.tolist() == [0, 1, 1]
    assert list(d.X) == ["broke at once", "loved it", "works well"]
    u = load_domain(f"lines:{tmp_path / 'positive.txt'}")
    assert u.y is None and len(u) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"no <label>.txt files in .*empty"):
        load_domain(f"lines:{empty}")
    (empty / "neutral.txt").write_text("\n\n")
    with pytest.raises(DataError, match=r"neutral.txt.*holds no text"):
        load_domain(f"lines:{empty}")


def test_text_and_vectors_do_not_mix(tmp_path):
    (tmp_path / "a.txt").write_text("x\n")
    (tmp_path / "b.txt").write_text("y\n")
    np.savez(tmp_path / "v.npz", X=np.zeros((4, 3)), y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="holds text but .* holds no text"):
        load_task(f"lines:{tmp_path}", f"npz:{tmp_path / 'v.npz'}")


# --- tokeniser and vocabulary ----------------------------------------------------------------------

def test_tokenizer_and_encoding():
    assert tokenize("Don't BUY it!! 5 stars?") == ["don't", "buy", "it", "!", "!", "5", "stars", "?"]
    assert tokenize("a b c", bigrams=True) == ["a", "b", "a b", "c", "b c"]
    pre = fit_text_preprocessing(["a b c", "a b", "a d", "e"], min_count=2, max_len=3)
    assert pre["vocab"] == ["<pad>", "<unk>", "a", "b"]  # by document count, then alphabetically
    ids = encode_texts(["a b c a b", "zzz", ""], pre)
    assert ids.dtype == np.int64 and ids.tolist() == [[2, 3, 1], [1, 0, 0], [0, 0, 0]]
    assert len(fit_text_preprocessing([f"w{i} w{i}" for i in range(50)] * 2, max_vocab=5)["vocab"]) == 7
    json.dumps(pre)  # plain JSON
    with pytest.raises(DataError, match="max_len must be"):
        fit_text_preprocessing(["a"], max_len=0)
    task = TransferTask.from_domains(Domain(np.array(["a b", "c d"] * 10, dtype=object), np.arange(20) % 2, "s"),
                                     Domain(np.array(["a", "b"] * 10, dtype=object), None, "t"))
    with pytest.raises(DataError, match=r"no setting\(s\) \['bigram'\]; settings: max_vocab"):
        tokenize_task(task, bigram=True)


def test_vocabulary_is_built_from_source_train_and_target_train_inputs_only():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]

    def texts(n, extra):
        return np.array([" ".join(rng.choice(words, 6)) + " " + extra for _ in range(n)], dtype=object)

    s = Domain(texts(100, "srcword"), np.arange(100) % 2, "s", class_names=("neg", "pos"))
    t = Domain(texts(100, "tgtword"), np.arange(100) % 2, "t", class_names=("neg", "pos"))
    task = TransferTask.from_domains(s, t)
    task = dataclasses.replace(task, source_val=task.source_val.replace(X=texts(len(task.source_val), "valonly")),
                               target_test=task.target_test.replace(X=texts(len(task.target_test), "testonly")))
    tok = tokenize_task(task)
    vocab = tok.preprocessing["text"]["vocab"]
    assert "srcword" in vocab and "tgtword" in vocab
    assert "valonly" not in vocab and "testonly" not in vocab
    assert tok.preprocessing["text"]["fitted_on"] == len(task.source) + len(task.target)
    unk = vocab.index("<unk>")
    assert (tok.target_test.X == unk).any(1).all()  # "testonly" is unknown in every test text
    assert tok.source.X.shape == (len(task.source), 256) and tok.source.X.dtype == np.float32


def test_load_task_never_reads_target_test_words_into_the_vocabulary(tmp_path):
    for sub, extra in (("s", "alpha"), ("t", "beta"), ("tt", "gamma")):
        (tmp_path / sub).mkdir()
        for cls, word in (("neg", "bad"), ("pos", "good")):
            (tmp_path / sub / f"{cls}.txt").write_text("".join(f"{word} {extra} {i}\n" for i in range(10)))
    task = load_task(f"lines:{tmp_path / 's'}", f"lines:{tmp_path / 't'}", target_test=f"lines:{tmp_path / 'tt'}",
                     text={"bigrams": True, "max_len": 8})
    vocab = task.preprocessing["text"]["vocab"]
    assert {"alpha", "beta", "good beta"} <= set(vocab) and "gamma" not in vocab and "good gamma" not in vocab
    assert task.sample_shape == (8,) and len(task.target) == 20 and len(task.target_test) == 20


# --- encoders on the engine --------------------------------------------------------------------------

def test_encoders_have_groups_e_h_logits_and_read_token_ids():
    x = torch.tensor([[2, 3, 0, 0], [0, 0, 0, 0], [4, 4, 4, 1]], dtype=torch.float32)
    for net in (embedding_bag(10, 3, embed_dim=8, hidden=(16, 6)), text_cnn(10, 3, embed_dim=8, channels=4)):
        net.eval()
        out = net(x)
        assert net.group_names == ("E", "H", "logits") and out.logits.shape == (3, 3)
        assert out.features.shape[1] == net.feature_dim() and torch.isfinite(out.logits).all()
    bag = embedding_bag(10, 2, embed_dim=4)
    e = bag.groups["E"](x[:2])
    w = bag.groups["E"].embedding.weight
    assert torch.allclose(e[0], (w[2] + w[3]) / 2) and torch.equal(e[1], torch.zeros(4))  # mean, padding ignored


def _toy_text(root, n: int = 60, seed: int = 0, text: dict | None = None):
    """Sentiment in two product domains: shared pivots ('great', 'poor') in half the texts, domain words
    ('sgood'/'sbad' in the source, 'tgood'/'tbad' in the target) in all; filler words around them."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    filler = [f"f{i}" for i in range(40)]
    for dom, (pos, neg), topic in (("s", ("sgood", "sbad"), "book"), ("t", ("tgood", "tbad"), "pan")):
        (root / dom).mkdir()
        for cls, word, pivot in (("negative", neg, "poor"), ("positive", pos, "great")):
            lines = []
            for i in range(n):
                words = list(rng.choice(filler, 8)) + [word, topic] + ([pivot] if i % 2 else [])
                rng.shuffle(words)
                lines.append(" ".join(words))
            (root / dom / f"{cls}.txt").write_text("\n".join(lines) + "\n")
    return load_task(f"lines:{root / 's'}", f"lines:{root / 't'}", text={"max_len": 16, **(text or {})})


def test_freezing_group_e_leaves_the_embedding_unchanged(tmp_path):
    task = _toy_text(tmp_path)
    net = TextEncoder.for_task(task.preprocessing["text"])(task.sample_shape, task.n_classes)
    e0, h0 = net.groups["E"].embedding.weight.detach().clone(), net.groups["H"][1].weight.detach().clone()
    _, fit = qianyi.run("dann", task, qianyi.TrainConfig(freeze=1, seed=0, **FAST), backbone=net)
    trained = fit.model  # a copy of `net` trained (the instance given stays the starting point)
    assert torch.equal(trained.groups["E"].embedding.weight, e0)
    assert not torch.equal(trained.groups["H"][1].weight, h0)


def test_dann_on_a_toy_text_shift_beats_source_only(tmp_path):
    # source-only never trains 'tgood'/'tbad' (target only): it is right on the half of the target texts with a
    # pivot; DANN's discriminator moves them to where the source's sentiment words are (about 0.80 vs 0.98 here)
    task = _toy_text(tmp_path, n=150)
    acc: dict[str, list[float]] = {"source-only": [], "dann": []}
    for seed in (0, 1):
        cfg = qianyi.TrainConfig(epochs=10, steps_per_epoch=20, batch_size=32, seed=seed, progress=False)
        for method in acc:
            result, _ = qianyi.run(method, task, cfg)
            assert result.source_accuracy >= 0.95
            acc[method].append(result.target_accuracy)
    assert np.mean(acc["dann"]) >= np.mean(acc["source-only"]) + 0.05, acc
    assert min(acc["dann"]) >= 0.9, acc


def test_cli_run_then_predict_reproduces_the_target_accuracy(tmp_path, capsys):
    _toy_text(tmp_path)  # writes tmp_path/s, tmp_path/t
    out = tmp_path / "run"
    rc = main(["run", "source-only", "--source", f"lines:{tmp_path / 's'}", "--target", f"lines:{tmp_path / 't'}",
               "--target-test", f"lines:{tmp_path / 't'}", "--epochs", "2", "--steps-per-epoch", "10",
               "--seed", "0", "--no-progress", "--out", str(out)])
    assert rc == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["architecture"]["backbone"] == "embbag" and meta["preprocessing"]["text"]["max_len"] == 256
    result = json.loads((out / "result.json").read_text())
    assert main(["predict", str(out), "--data", f"lines:{tmp_path / 't'}", "--out", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    acc = np.mean([r["predicted"] == r["label"] for r in rows])
    assert len(rows) == 120 and acc == pytest.approx(result["target_accuracy"])
    model = load_model(out)
    assert model.network.group_names == ("E", "H", "logits")
    new = load_domain_for(model, f"lines:{tmp_path / 't' / 'positive.txt'}")  # raw, unlabelled text
    assert new.X.shape == (60, 256) and len(model.predict(new)) == 60
    np.savez(tmp_path / "v.npz", X=np.zeros((2, 256)))
    with pytest.raises(DataError, match="holds vectors, but the model reads text"):
        load_domain_for(model, f"npz:{tmp_path / 'v.npz'}")


def test_cli_text_settings_reach_the_tokeniser_and_are_checked(tmp_path, capsys):
    _toy_text(tmp_path)
    out = tmp_path / "run"
    argv = ["run", "source-only", "--source", f"lines:{tmp_path / 's'}", "--target", f"lines:{tmp_path / 't'}",
            "--epochs", "1", "--steps-per-epoch", "2", "--no-progress", "--out", str(out)]
    assert main(argv + ["--text", "max_len=16,bigrams=true,min_count=1"]) == 0
    text = json.loads((out / "model.json").read_text())["preprocessing"]["text"]
    assert (text["max_len"], text["bigrams"], text["min_count"]) == (16, True, 1)
    assert any(" " in token for token in text["vocab"])  # bigrams in the vocabulary
    assert main(argv[:-1] + [str(tmp_path / "bad"), "--text", "maxlen=16"]) == 2
    assert "--text: expected KEY=VALUE with KEY one of max_len" in capsys.readouterr().err
    with pytest.raises(DataError, match="bigrams is true or false"):
        qianyi.data.text.parse_text_settings("bigrams=maybe")
    with pytest.raises(DataError, match="max_len must be a whole number >= 1"):
        qianyi.data.text.parse_text_settings("max_len=0")


def test_self_training_methods_see_word_deletion_views_and_reconstruction_methods_refuse_text(tmp_path):
    from qianyi.nn.augment import strong_view, weak_view, word_dropout

    torch.manual_seed(0)
    x = torch.tensor([[5.0, 6.0, 7.0, 8.0, 0.0, 0.0]] * 400)
    v = word_dropout(x, 0.5)
    kept = (v != 0).float()
    assert torch.all(v[:, 4:] == 0) and torch.all((v == x) | (v == 0))  # only deletions, padding stays padding
    assert torch.all(v[:, 0] == 5)  # the first word always stays: no text becomes empty
    assert abs(float(kept[:, 1:4].mean()) - 0.5) < 0.05
    assert abs(float((weak_view(x, kind="text")[:, 1:4] != 0).float().mean()) - 0.9) < 0.03
    assert abs(float((strong_view(x, kind="text")[:, 1:4] != 0).float().mean()) - 0.7) < 0.04
    task = _toy_text(tmp_path)
    for name in ("mean-teacher", "cbst", "adamatch"):  # used to stop: their noisy views were not token ids
        result, _ = qianyi.run(name, task, qianyi.TrainConfig(**FAST))
        assert 0.0 <= result.target_accuracy <= 1.0
    for name in ("drcn", "dsn", "cycada"):
        with pytest.raises(DataError, match=f"{name} (reconstructs its inputs|translates images), so it does not apply to text"):
            qianyi.run(name, task, qianyi.TrainConfig(**FAST))


def test_advise_and_measure_model_use_the_text_encoder_of_qianyi_run(tmp_path):
    # the advisor once trained the vector MLP on raw token ids (and `measure --model` loaded a text model
    # into it): its profile and its `--freeze K` advice were about another network than `qianyi run`'s
    from qianyi.measure.advisor import advise
    from qianyi.measure.report import load_weights_for

    task = _toy_text(tmp_path)
    adv = advise(task, config=qianyi.TrainConfig(**FAST), permutations=0, samples=60, log=None, out=tmp_path / "adv")
    assert adv.profile.layers[1:] == ["E", "H", "logits"] and "logits" in adv.report()  # permutations=0: no test
    net = load_weights_for(tmp_path / "adv" / "source" / "model.pt", task)
    assert net.group_names == ("E", "H", "logits")
    folder = load_weights_for(tmp_path / "adv" / "source", task)  # the run folder, as load_model takes it
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), folder.state_dict().values()))


def test_summary_keeps_a_method_that_brings_its_own_network(tmp_path):
    # AMN trains its memory network where the others train the bag-of-embeddings encoder: another network,
    # the same data, so `summary` must not take it for runs on other data and drop it
    from qianyi.bench import bench
    from qianyi.bench.runner import BenchResult

    _toy_text(tmp_path / "data")
    pair = f"lines:{tmp_path / 'data' / 's'}->lines:{tmp_path / 'data' / 't'}"
    res = bench(["dann", "amn"], [pair], seeds=1, out=tmp_path / "out", log=None, text={"max_len": 16},
                config=qianyi.TrainConfig(epochs=1, steps_per_epoch=2, progress=False))
    assert sorted(BenchResult.from_dirs([tmp_path / "out"]).methods) == sorted(res.methods) == ["amn", "dann", "oracle", "source-only"]


@pytest.mark.parametrize("name", ["cotrain", "knn"])
def test_methods_that_read_inputs_as_numbers_or_columns_refuse_token_ids(tmp_path, name):
    task = _toy_text(tmp_path)
    with pytest.raises(DataError, match="text|token ids"):
        qianyi.run(name, task, qianyi.TrainConfig(**FAST))


def test_lines_and_jsonl_records_are_the_files_lines(tmp_path):
    # str.splitlines also broke at form feeds, U+0085, U+2028...: 3 lines gave 4 texts, and valid JSON Lines
    # holding a raw U+2028 in a string was refused
    (tmp_path / "ff.txt").write_text("terrible, broke\x0cday one\ngreat blender\r\nwaste\u2028of money\n")
    assert load_domain(f"lines:{tmp_path / 'ff.txt'}").X.tolist() == ["terrible, broke\x0cday one", "great blender",
                                                                       "waste\u2028of money"]
    rows = [{"text": "great\u2028would buy", "label": "positive"}, {"text": "bad", "label": "negative"}]
    (tmp_path / "u.jsonl").write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    d = load_domain(f"jsonl:{tmp_path / 'u.jsonl'}")
    assert d.X.tolist() == ["great\u2028would buy", "bad"] and len(d.y) == 2


def test_text_settings_on_images_warn_and_shifts_on_text_say_text():
    from qianyi.data.shifts import apply_shifts

    with pytest.warns(QianyiWarning, match="apply to text domains.*ignored"):  # were ignored silently
        load_task("digits", "digits+rot30", text={"max_len": 10})
    with pytest.raises(DataError, match="holds texts"):  # said 'holds vectors of shape ()'
        apply_shifts(np.array(["a review", "another"], dtype=object), ["rot30"], "kitchen+rot30")


def test_a_saved_text_model_of_another_vocabulary_is_copied_by_word_or_refused(tmp_path):
    """Same-sized vocabularies in another order silently fed the model's word vectors to the wrong words."""
    from qianyi.measure.report import load_weights_for

    task = _toy_text(tmp_path / "a")
    qianyi.run("source-only", task, qianyi.TrainConfig(epochs=1, steps_per_epoch=3, progress=False), out=tmp_path / "run")
    other = _toy_text(tmp_path / "b", seed=1, text={"max_vocab": 20})  # another vocabulary
    vocab, saved = other.preprocessing["text"]["vocab"], task.preprocessing["text"]["vocab"]
    assert vocab != saved
    with pytest.raises(DataError, match="another vocabulary"):
        load_weights_for(tmp_path / "run", other)
    trained = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    key = next(k for k, v in trained.items() if k.startswith("groups.E.") and v.ndim == 2 and len(v) == len(saved))
    cfg = qianyi.TrainConfig(epochs=1, steps_per_epoch=1, lr=1e-12, init_from=str(tmp_path / "run" / "model.pt"),
                      freeze=1, progress=False)
    with pytest.warns(QianyiWarning, match="copied word by word.*E is frozen"):
        _, fit = qianyi.run("source-only", other, cfg)
    emb = fit.model.state_dict()[key]
    for i, w in enumerate(vocab):
        if w in saved:
            assert torch.allclose(emb[i], trained[key][saved.index(w)]), w
    # a model.json older than the weights beside it (a run folder reused, its new run unfinished) is not read:
    # here another run's model.json (same size, other order) beside this run's weights
    import os
    import shutil

    from qianyi.train.weights import load_initial_weights
    shuffled = _toy_text(tmp_path / "c", seed=1)
    assert len(shuffled.preprocessing["text"]["vocab"]) == len(saved) and shuffled.preprocessing["text"]["vocab"] != saved
    qianyi.run("source-only", shuffled, qianyi.TrainConfig(epochs=1, steps_per_epoch=1, progress=False),
               out=tmp_path / "run-c")
    reused = tmp_path / "reused"
    reused.mkdir()
    shutil.copy(tmp_path / "run-c" / "model.json", reused / "model.json")
    shutil.copy(tmp_path / "run" / "model.pt", reused / "checkpoint.pt")
    os.utime(reused / "model.json", ns=(1, 1))
    net = TextEncoder.for_task(task.preprocessing["text"])(task.sample_shape, task.n_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no remap by the stale vocabulary, no warning
        load_initial_weights(net, reused / "checkpoint.pt", vocab=saved)
    assert torch.equal(net.state_dict()[key], trained[key])


def test_a_checkpoint_and_the_advisors_source_model_record_their_vocabulary(tmp_path):
    """An unfinished run has no model.json, and the advisor's source/model.pt had none: their word embeddings were
    copied by shape into a task of another vocabulary. The checkpoint now holds the vocabulary, and advise writes
    model.json beside its model."""
    from qianyi.measure.advisor import advise
    from qianyi.train.weights import load_initial_weights

    task = _toy_text(tmp_path / "a")
    shuffled = _toy_text(tmp_path / "c", seed=1)  # a vocabulary of the same size in another order
    saved, vocab = task.preprocessing["text"]["vocab"], shuffled.preprocessing["text"]["vocab"]
    assert len(vocab) == len(saved) and vocab != saved
    qianyi.run("source-only", task, qianyi.TrainConfig(epochs=1, steps_per_epoch=2, progress=False, keep_checkpoint=True),
               out=tmp_path / "r")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (tmp_path / "r" / "checkpoint.pt").rename(unfinished / "checkpoint.pt")  # no model.json beside it
    blob = torch.load(unfinished / "checkpoint.pt", weights_only=True)
    assert blob["vocab"] == saved
    key = next(k for k, v in blob["model"].items() if k.startswith("groups.E.") and v.ndim == 2 and len(v) == len(saved))
    net = TextEncoder.for_task(shuffled.preprocessing["text"])(shuffled.sample_shape, shuffled.n_classes)
    with pytest.warns(QianyiWarning, match="copied word by word"):
        load_initial_weights(net, unfinished / "checkpoint.pt", vocab=vocab)
    emb = net.state_dict()[key]
    for i, w in enumerate(vocab):
        if w in saved:
            assert torch.allclose(emb[i], blob["model"][key][saved.index(w)]), w
    advise(task, config=qianyi.TrainConfig(**FAST), permutations=0, samples=60, log=None, out=tmp_path / "adv")
    model = qianyi.load_model(tmp_path / "adv" / "source")  # a model folder as `qianyi run` writes it
    assert model.meta["preprocessing"]["text"]["vocab"] == saved and model.meta["method"] == "source-only"
    with pytest.raises(DataError, match="another vocabulary"):
        from qianyi.measure.report import load_weights_for

        load_weights_for(tmp_path / "adv" / "source" / "model.pt", shuffled)


def test_a_folder_of_class_folders_holds_one_text_per_file(tmp_path):
    """aclImdb's layout (and load_files'): DIR/<label>/*.txt, one review per file; it was refused."""
    from qianyi.data.text import read_lines

    for label, words in (("negative", "bad awful"), ("positive", "good great")):
        (tmp_path / "books" / label).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "books" / label / f"r{i}.txt").write_text(f"{words} {i}\nsecond line\n")
    dom = read_lines(tmp_path / "books")
    assert dom.class_names == ("negative", "positive") and list(dom.y) == [0, 0, 0, 1, 1, 1]
    assert dom.X[0] == "bad awful 0 second line" and len(dom.X) == 6
    (tmp_path / "books" / "positive" / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="empty.txt' holds no text"):
        read_lines(tmp_path / "books")


def test_each_text_knows_the_line_or_file_it_came_from(tmp_path):
    """predict's index skipped blank lines: the row of a prediction was not the text's line."""
    from qianyi.data.text import read_jsonl, read_lines, read_text_csv

    (tmp_path / "t.txt").write_text("first\n\nthird\n")
    assert read_lines(tmp_path / "t.txt").ids == ("t.txt:1", "t.txt:3")
    (tmp_path / "t.jsonl").write_text('{"text": "a"}\n\n{"text": "b"}\n')
    assert read_jsonl(tmp_path / "t.jsonl").ids == ("t.jsonl:1", "t.jsonl:3")
    (tmp_path / "t.csv").write_text('text\n"two\nlines"\nnext\n')
    assert read_text_csv(tmp_path / "t.csv").ids == ("t.csv:2", "t.csv:4")  # a row's first line
    (tmp_path / "d" / "pos").mkdir(parents=True)
    (tmp_path / "d" / "pos" / "r1.txt").write_text("good")
    assert read_lines(tmp_path / "d").ids == ("pos/r1.txt",)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "neg.txt").write_text("bad\n\nworse\n")
    assert read_lines(tmp_path / "c").ids == ("neg.txt:1", "neg.txt:3")


def test_text_csv_of_tabs_points_at_sep_tab(tmp_path):
    """A tab-separated file read with ','. the header is one column holding tabs: say ?sep=tab, not ?text=."""
    from qianyi.data.text import read_text_csv

    p = tmp_path / "t.tsv"
    p.write_text("text\tlabel\ngood book\t1\nbad book\t0\n")
    with pytest.raises(DataError, match=r"holds tabs: is that the separator\? give it with \?sep=tab") as info:
        read_text_csv(p)
    assert "choose it with ?text=" not in str(info.value)
    assert read_text_csv(p, sep="tab").X.tolist() == ["good book", "bad book"]


def test_utf16_text_files_say_utf16_for_every_text_reader(tmp_path):
    """jsonl, lines and csv text mode share one decoder: a UTF-16 file is named as such, with the right iconv."""
    from qianyi.data.text import read_jsonl, read_lines, read_text_csv

    (tmp_path / "t.jsonl").write_bytes('{"text": "a", "label": 0}\n'.encode("utf-16"))
    (tmp_path / "t.txt").write_bytes("one\ntwo\n".encode("utf-16"))
    (tmp_path / "t.csv").write_bytes("text\tlabel\r\na\t0\r\n".encode("utf-16"))
    for read, f in ((read_jsonl, "t.jsonl"), (read_lines, "t.txt"), (read_text_csv, "t.csv")):
        with pytest.raises(DataError, match=r"UTF-16.*iconv -f utf-16 -t utf-8") as info:
            read(tmp_path / f)
        assert f in str(info.value) and "latin1" not in str(info.value)
