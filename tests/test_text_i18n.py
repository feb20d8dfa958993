"""Text not written the English way: English tokenisation pinned (Amazon reviews), text without spaces (Chinese,
Japanese, Thai: a warning and ``cjk=chars``), and the opt-in ``normalize`` (NFC, Turkish İ, full-width forms,
combining marks) and ``emoji`` settings; none of them changes the default ``words-v1`` tokens or its JSON."""
from __future__ import annotations

import hashlib
import json
import random
import unicodedata
import warnings

import pytest

import qianyi
from qianyi.data import load_domain, load_task
from qianyi.data.text import AMAZON_DOMAINS, encode_texts, fit_text_preprocessing, parse_text_settings, tokenize
from qianyi.errors import DataError, QianyiWarning
from qianyi.train.artefact import preprocessing_digest

from .conftest import DATA, requires_data

#: sha256 (first 16 hex digits) of every review's tokens, one JSON list a line, per domain and bigrams; and of
#: load_task's token ids and its text preprocessing (model.json), recorded before the settings below existed.
AMAZON_TOKENS = {
    ("books", False): "0750237b7e7a0532", ("books", True): "8fe2a73268ef26d5",
    ("dvd", False): "2d8af49cc68de795", ("dvd", True): "781f372b650724be",
    ("electronics", False): "b4f4648d2c6b0505", ("electronics", True): "25f2ff55f8e2a82a",
    ("kitchen", False): "410b90a101ed11a2", ("kitchen", True): "5829c04dd25c7323",
}
AMAZON_TASKS = {
    ("books", "kitchen"): ("275d2760aecf4ac1", "7d93b8b1677e8ded25cc2265e00cb57f1da485fededbaa9d70bb49bcc2531e5d",
                           12800),
    ("dvd", "electronics"): ("63a4cd0c52742f04", "476320e12f7a3f3111bc2aa6dce99f9c4896ba854fd27daad2a6f31d7dee004c",
                             12917),
}


@requires_data("amazon-blitzer2007-raw")
def test_english_reviews_tokenise_exactly_as_before():
    """No documented number and no stored run key moves: the default tokens, ids and model.json text preprocessing
    of the Amazon reviews are byte-identical, no new warning fires on them, and the opt-in settings leave their
    tokens as they are too (the reviews are NFC, hold no full-width form, İ or emoji)."""
    for d in AMAZON_DOMAINS:
        texts = load_domain(f"amazon/{d}", data_dir=DATA).X
        for bigrams in (False, True):
            h = hashlib.sha256()
            for t in texts:
                h.update(json.dumps(tokenize(t, bigrams), ensure_ascii=False).encode() + b"\n")
            assert h.hexdigest()[:16] == AMAZON_TOKENS[d, bigrams], (d, bigrams)
        assert all(tokenize(t, normalize=True, emoji=True) == tokenize(t) for t in texts[:400]), d
    for (s, t), (content, pre, n_vocab) in AMAZON_TASKS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error", QianyiWarning)
            task = load_task(f"amazon/{s}", f"amazon/{t}", data_dir=DATA)
        assert task.content_hash() == content
        assert preprocessing_digest(json.loads(json.dumps(task.preprocessing))) == pre
        assert len(task.preprocessing["text"]["vocab"]) == n_vocab


POS = ["很好", "喜欢", "推荐", "满意", "完美", "精彩", "值得"]
NEG = ["很差", "失望", "糟糕", "退货", "浪费", "无聊", "后悔"]
THINGS = {"books": ["这本书", "小说", "作者", "故事", "情节", "翻译"], "kitchen": ["这口锅", "刀具", "炉子", "搅拌机", "水壶", "餐具"]}
FILL = ["我", "觉得", "真的", "非常", "总体", "上周", "买了", "朋友", "说", "还是", "的", "了", "今天", "收到"]


def _chinese(root, domain: str, n: int = 200, seed: int = 0):
    """``lines:`` folder of unspaced Chinese reviews (the reviewer's generator, smaller): 好评.txt / 差评.txt."""
    rng = random.Random(seed)
    d = root / domain
    d.mkdir()
    for name, words in (("好评", POS), ("差评", NEG)):
        lines = []
        for _ in range(n // 2):
            clauses = []
            for _ in range(rng.randint(2, 4)):
                parts = rng.sample(FILL, 2) + [rng.choice(THINGS[domain]), rng.choice(words), rng.choice(FILL)]
                rng.shuffle(parts)
                clauses.append("".join(parts))
            lines.append("，".join(clauses) + "。")
        (d / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f"lines:{d}"


def test_cjk_chars_cuts_ideographs_kana_and_thai_one_character_each():
    assert tokenize("这个产品质量很好，我非常喜欢！") == ["这个产品质量很好", "我非常喜欢"]  # words-v1 as it was
    assert tokenize("这个产品很好，我喜欢！", cjk="chars") == ["这", "个", "产", "品", "很", "好", "我", "喜", "欢"]
    assert tokenize("iPhone手机很好用 5星!", cjk="chars") == ["iphone", "手", "机", "很", "好", "用", "5", "星", "!"]
    assert tokenize("この商品は良い。カメラ", cjk="chars") == ["こ", "の", "商", "品", "は", "良", "い", "カ", "メ", "ラ"]
    assert tokenize("ดีมาก", cjk="chars") == ["ดี", "ม", "า", "ก"]  # a Thai letter keeps its vowel sign
    assert tokenize("很好吗", bigrams=True, cjk="chars") == ["很", "好", "很 好", "吗", "好 吗"]
    assert tokenize("이 제품 정말 좋아요", cjk="chars") == ["이", "제품", "정말", "좋아요"]  # Korean is spaced: words
    assert parse_text_settings("cjk=chars,bigrams=true") == {"cjk": "chars", "bigrams": True}
    with pytest.raises(DataError, match="cjk.*chars"):
        parse_text_settings("cjk=yes")
    with pytest.raises(DataError, match="cjk.*chars"):
        fit_text_preprocessing(["a b"], cjk="words2")


def test_unspaced_chinese_warns_and_learns_with_cjk_chars(tmp_path):
    src, tgt = _chinese(tmp_path, "books"), _chinese(tmp_path, "kitchen", seed=1)
    with pytest.warns(QianyiWarning, match=r"(?s)100 % of the training tokens.*without spaces.*cjk=chars.*jieba"):
        task = load_task(src, tgt)
    assert task.preprocessing["text"]["vocab"] == ["<pad>", "<unk>"]
    assert "cjk" not in task.preprocessing["text"]  # (the default records nothing new)
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)
        task = load_task(src, tgt, text={"cjk": "chars", "bigrams": True})
    pre = task.preprocessing["text"]
    assert pre["cjk"] == "chars" and "很" in pre["vocab"] and "很 好" in pre["vocab"]
    ids = encode_texts(["很好！"], pre)  # what predict does with model.json's record
    assert list(ids[0, :3]) == [pre["vocab"].index(w) for w in ("很", "好", "很 好")]
    result, _ = qianyi.run("source-only", task, qianyi.TrainConfig(epochs=3, steps_per_epoch=20, batch_size=32,
                                                                    progress=False, seed=0))
    accuracies = (result.source_accuracy, result.target_accuracy)
    assert min(accuracies) > 0.9, accuracies  # (words-v1 on these texts: 50 % / 50 %, chance)


def test_mostly_unknown_tokens_warn_naming_the_share():
    texts = [f"w{i}a w{i}b w{i}c" for i in range(40)]
    with pytest.warns(QianyiWarning, match=r"100 % of the training tokens are <unk> .*100 % occur in fewer than "
                      "min_count=2"):
        fit_text_preprocessing(texts)
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)
        fit_text_preprocessing(["a good book", "a bad book"] * 20)


def test_normalize_joins_turkish_nfd_full_width_and_combining_marks():
    assert tokenize("İyi ürün. İSTANBUL") == ["i", "yi", "ürün", "i", "stanbul"]  # words-v1 as it was
    assert tokenize("İyi ürün. İSTANBUL IŞIK", normalize=True) == ["iyi", "ürün", "istanbul", "işik"]
    nfd = unicodedata.normalize("NFD", "naïve très déçu")
    assert tokenize(nfd) == ["nai", "ve", "tre", "s", "de", "c", "u"]
    assert tokenize(nfd, normalize=True) == ["naïve", "très", "déçu"]
    assert tokenize("great!!! ＧＲＥＡＴ！！！ 最好！", normalize=True) == ["great", "!", "!", "!", "great", "!", "!", "!",
                                                                        "最好", "!"]
    assert tokenize("ＡＢＣ　１２３！？很好！", normalize=True) == ["abc", "123", "!", "?", "很好", "!"]
    assert tokenize("यह उत्पाद अच्छा है", normalize=True) == ["यह", "उत्पाद", "अच्छा", "है"]
    assert tokenize("उत्पाद") == ["उत", "प", "द"]
    assert parse_text_settings("normalize=true,emoji=true") == {"normalize": True, "emoji": True}


def test_emoji_setting_keeps_emoji_as_tokens():
    assert tokenize("great 😀😡 product 👍🏽 ♥") == ["great", "product"]
    assert tokenize("great 😀😡 product 👍🏽 ♥", emoji=True) == ["great", "😀", "😡", "product", "👍", "♥"]


def test_settings_are_recorded_only_when_given_and_applied_by_encode_texts():
    texts = ["İyi ürün 😀", "İyi kitap 😀", "kötü ürün", "kötü kitap"] * 3
    with pytest.warns(QianyiWarning, match="İ"):
        plain = fit_text_preprocessing(texts)
    assert not {"normalize", "emoji", "cjk"} & set(plain)
    pre = fit_text_preprocessing(texts, normalize=True, emoji=True)
    assert pre["normalize"] is True and pre["emoji"] is True and "iyi" in pre["vocab"] and "😀" in pre["vocab"]
    ids = encode_texts(["İYİ 😀"], pre)
    assert list(ids[0, :2]) == [pre["vocab"].index("iyi"), pre["vocab"].index("😀")]
    with pytest.raises(DataError, match="normalize"):
        encode_texts(["x"], {**pre, "normalize": "yes"})


def test_text_that_normalize_would_join_warns_naming_it():
    nfd = [unicodedata.normalize("NFD", t) for t in ["très déçu", "très bon", "déçu encore", "bon produit"] * 5]
    with pytest.warns(QianyiWarning, match=r"(?s)not in NFC.*normalize=true"):
        fit_text_preprocessing(nfd)
    with pytest.warns(QianyiWarning, match=r"(?s)İ.*normalize=true"):
        fit_text_preprocessing(["İyi ürün", "İyi kitap", "kötü ürün", "kötü kitap"] * 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", QianyiWarning)
        fit_text_preprocessing(nfd, normalize=True)


def test_minilm_wordpiece_refuses_the_word_tokeniser_settings():
    """WordPiece keeps its own rules: the settings are refused by name, never dropped silently."""
    from qianyi.data.text import WORDPIECE

    with pytest.raises(DataError, match=r"cjk, normalize apply to the word tokeniser|normalize, cjk apply"):
        fit_text_preprocessing(["a"], tokenizer=WORDPIECE, cjk="chars", normalize=True)


def _thai(n: int = 300, seed: int = 0, sep: str = "") -> list[str]:
    """Synthetic Thai reviews (the reviewer's generator): words run together (``sep=""``) or split by spaces."""
    rng = random.Random(seed)
    pos, neg = ["ดีมาก", "ชอบ", "แนะนำ", "คุ้มค่า", "ประทับใจ"], ["แย่", "ผิดหวัง", "ไม่ชอบ", "เสียดาย", "ห่วย"]
    fill = ["สินค้า", "ฉัน", "ซื้อ", "เมื่อวาน", "ร้าน", "ส่ง", "เร็ว", "ของ", "นี้", "จริงๆ", "มาก", "หนังสือ", "เล่ม"]
    texts = []
    for i in range(n):
        parts = rng.sample(fill, 4) + [rng.choice(pos if i % 2 else neg)]
        rng.shuffle(parts)
        texts.append(sep.join(parts) + " " + sep.join(rng.sample(fill, 3)))
    return texts


def _warned(texts: list[str], **settings) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_text_preprocessing(texts, **settings)
    return [str(w.message) for w in caught if issubclass(w.category, QianyiWarning)]


def test_unspaced_thai_is_told_cjk_chars_not_normalize():
    """Thai vowel signs cut unspaced Thai into short pieces under words-v1: the 'without spaces' warning still sees
    it and names cjk=chars; normalize (which makes each clause one token) is not recommended."""
    said = " ".join(_warned(_thai()))
    assert "without spaces" in said and "cjk=chars" in said
    assert "normalize=true" not in said and "'normalize': True" not in said
    # cjk=chars keeps each Thai letter with its marks: nothing is 'cut into pieces' any more
    assert not any("combining marks" in w for w in _warned(_thai(), cjk="chars"))
    # Thai split into words with spaces is not 'without spaces'; there normalize does keep the marks in the words
    spaced = " ".join(_warned(_thai(sep=" ")))
    assert "without spaces" not in spaced and "combining marks" in spaced and "normalize=true" in spaced
    # segmented Chinese and Japanese are not 'without spaces' either
    assert not any("without spaces" in w for w in _warned(["很 好", "很 差", "喜欢 这 本 书", "不 喜欢"] * 5))
    assert not any("without spaces" in w for w in _warned(["この 商品 は とても 良い です", "最悪 な 商品 でした"] * 5))


def test_full_width_punctuation_warning_says_it_is_dropped():
    said = " ".join(_warned(["这个产品很好！", "质量很差？", "我很喜欢"] * 5, cjk="chars"))
    assert "！" in said and "dropped" in said and "ＡＢＣ" not in said  # no full-width letter in these texts
    assert tokenize("很好！", cjk="chars") == ["很", "好"]  # (dropped indeed)
    said = " ".join(_warned(["ＧＯＯＤ product", "ＢＡＤ product"] * 5))
    assert "tokens apart from their ASCII forms" in said and "dropped" not in said
