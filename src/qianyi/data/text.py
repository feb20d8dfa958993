"""Text domains: raw reviews as strings, and the tokeniser + vocabulary that turn them into token ids.

Readers (each returns a :class:`~qianyi.data.Domain` whose ``X`` is a 1-d object array of ``str``,
one review per sample; :func:`qianyi.data.load_task` tokenises it):

* built-in ``amazon/books``, ``amazon/dvd``, ``amazon/electronics``, ``amazon/kitchen``: the Multi-Domain
  Sentiment Dataset (Blitzer et al., ACL 2007), 1,000 positive + 1,000 negative reviews per domain, from
  ``$QIANYI_DATA/amazon-blitzer2007-raw/DOMAIN/{positive,negative}.review`` (:func:`read_reviews`);
* ``csv:PATH?text=COL[&label=COL]`` (the CSV reader in text mode, :func:`read_text_csv`),
  ``jsonl:PATH[?text=KEY&label=KEY]`` (:func:`read_jsonl`), ``lines:DIR`` (one ``DIR/<label>.txt`` per
  class, one text per line) or ``lines:FILE`` (unlabelled, one text per line) (:func:`read_lines`).

Tokenisation (:func:`tokenize`): Unicode text lower-cased, then the tokens of :data:`TOKEN_PATTERN`
(runs of letters/digits with inner apostrophes, ``can't``; and ``!``/``?`` on their own), optionally
followed by word bigrams (``"not good"``); opt-in settings (``normalize``, ``emoji``, ``cjk="chars"`` for text
written without spaces) are recorded only when on, so the default's tokens and record are ``words-v1``'s as they
were, and training texts the default cuts badly (no spaces, NFD, ``İ``, full-width forms) are warned about. The
vocabulary (:func:`fit_text_preprocessing`) is every
token seen in at least ``min_count`` training documents, the ``max_vocab`` most frequent by document
count (ties: alphabetical), after the ids 0 = ``<pad>`` and 1 = ``<unk>``. ``load_task`` fits it on the
source **training** split and the target **training** inputs only (never a label, never the source
validation split or the target test split), and records it, as plain JSON, in ``task.preprocessing["text"]``
(saved in ``model.json``), so ``qianyi predict`` encodes new raw text exactly as the run did
(:func:`encode_texts`): each text becomes ``max_len`` token ids, cut at the end or padded with 0.
"""
from __future__ import annotations

import html
import functools
import json
import os
import re
import sys
import unicodedata
import warnings
import weakref
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import DataError, DatasetNotFoundError, QianyiWarning
from .builtin import data_folder, dataset
from .domain import Domain, TransferTask
from .readers import (LABEL_COLUMNS, MISSING_LABELS, _csv_labels, _csv_separator, _csv_text, _file, _folder, _listable,
                      _numbered_rows, separator_hint)

#: The four domains of the Multi-Domain Sentiment Dataset and their folder.
AMAZON_DOMAINS = ("books", "dvd", "electronics", "kitchen")
AMAZON_FOLDER = "amazon-blitzer2007-raw"
#: Reviews in each of the Multi-Domain Sentiment Dataset's negative.review and positive.review files.
AMAZON_REVIEWS_PER_FILE = 1000
#: Class names of the sentiment data: index 0 = negative.review, 1 = positive.review.
SENTIMENT_CLASSES = ("negative", "positive")

#: Tokens: letters/digits (``\w``: combining marks split a word, docs/text.md) with inner apostrophes, or "!" / "?"
#: alone (they carry sentiment).
TOKEN_PATTERN = r"[^\W_]+(?:['’][^\W_]+)*|[!?]"
_TOKEN_RE = re.compile(TOKEN_PATTERN)
#: Tokeniser defaults (docs/text.md): vocabulary cap and document-frequency floor, padded length.
MAX_VOCAB = 20_000
MIN_COUNT = 2
MAX_LEN = 256
PAD, UNK = "<pad>", "<unk>"
#: The settings of :func:`fit_text_preprocessing` (``load_task(text={...})``).
TEXT_SETTINGS = ("max_vocab", "min_count", "max_len", "bigrams", "tokenizer", "vectors", "normalize", "emoji", "cjk")
#: ``cjk``: ``words`` (the default: words cut at spaces and punctuation only) or ``chars`` (each CJK ideograph, kana
#: and Thai letter one token: :data:`CJK_CHARS`).
CJK_WORDS, CJK_CHARS_SETTING = "words", "chars"
CJK_MODES = (CJK_WORDS, CJK_CHARS_SETTING)
#: The opt-in tokeniser settings (docs/text.md), recorded in the text preprocessing only when on, so the default's
#: record (and every run key made with it) is as it was before they existed.
TOKEN_OPTIONS = {"normalize": False, "emoji": False, "cjk": CJK_WORDS}
#: Pre-trained word vectors a text encoder's ``E`` can start from (``vectors=NAME``; :mod:`qianyi.nn.text`).
WORD_VECTORS = ("minilm",)
#: Bumped whenever :func:`tokenize` changes what it returns: a saved model records it, and a model of
#: another version is refused rather than fed different token ids.
TOKENIZER = "words-v1"
#: A pre-trained model's own WordPiece ids instead of a fitted vocabulary (``text={"tokenizer": ...}``;
#: :mod:`qianyi.data.wordpiece`, needs the weights package to fit, not to encode).
WORDPIECE = "wordpiece:minilm"
#: The raw texts of the domains :func:`tokenize_task` encoded, while those domains live (:func:`retokenize_task`).
_RAW_TEXT: "weakref.WeakKeyDictionary[Domain, np.ndarray]" = weakref.WeakKeyDictionary()


# --- tokeniser and vocabulary -----------------------------------------------------------------

def tokenize(text: str, bigrams: bool = False, *, normalize: bool = False, emoji: bool = False,
             cjk: str = CJK_WORDS) -> list[str]:
    """``text`` lower-cased and cut into :data:`TOKEN_PATTERN` tokens; with ``bigrams``, each pair of
    neighbouring tokens is added right after its second word (``a b c`` -> ``a b "a b" c "b c"``), so that
    cutting at ``max_len`` keeps words and bigrams of the same stretch of text.

    Opt-in settings (each recorded in the text preprocessing only when on; off, the tokens are ``words-v1``'s):
    ``normalize``: the text in NFC, full-width forms (U+FF01-FF5E, U+3000) as ASCII, ``İ`` lowered to ``i``
    (not ``i`` + U+0307), and combining marks kept inside a word (Devanagari, Thai, Arabic harakat, NFD accents);
    ``emoji``: each emoji (and other pictographic symbol) one token; ``cjk="chars"``: each CJK ideograph, kana
    and Thai letter (with its combining marks) one token, for text written without spaces.

    >>> tokenize("Don't buy it!! Great?")
    ["don't", 'buy', 'it', '!', '!', 'great', '?']
    >>> tokenize("not good at all", bigrams=True)
    ['not', 'good', 'not good', 'at', 'good at', 'all', 'at all']
    >>> tokenize("很好！ＧＯＯＤ", normalize=True, cjk="chars")
    ['很', '好', '!', 'good']
    """
    if normalize:
        text = unicodedata.normalize("NFC", text.translate(_FULL_WIDTH)).replace("İ", "i")
    rx = _TOKEN_RE if not (normalize or emoji or cjk != CJK_WORDS) else _token_re(normalize, emoji, cjk)
    words = rx.findall(text.lower().replace("’", "'"))
    if not bigrams:
        return words
    out: list[str] = []
    for i, w in enumerate(words):
        out.append(w)
        if i:
            out.append(f"{words[i - 1]} {w}")
    return out


#: Full-width ASCII forms (U+FF01-FF5E: ``！？ＡＢＣ１２３``) and the ideographic space, as ASCII (``normalize``).
_FULL_WIDTH = {**{c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}, 0x3000: " "}
#: Characters ``cjk="chars"`` makes one token each: CJK ideographs (with extensions and compatibility forms),
#: hiragana, katakana (and its half-width forms) and Thai; Korean Hangul is written with spaces and stays words.
CJK_CHARS = ("\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
             "\u0e00-\u0e7f\U00020000-\U0002fa1f")
#: Emoji and pictographic symbols ``emoji`` keeps (one token each; skin tones and variation selectors dropped).
EMOJI_CHARS = "\u2600-\u27bf\u2b00-\u2bff\U0001f000-\U0001f3fa\U0001f400-\U0001faff"


@functools.lru_cache(maxsize=None)
def _marks() -> str:
    """A regex character class body of every combining mark (Unicode categories Mn, Mc, Me) of this Python."""
    ranges: list[list[int]] = []
    for c in range(sys.maxunicode + 1):
        if unicodedata.category(chr(c))[0] == "M":
            if ranges and ranges[-1][1] == c - 1:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


@functools.lru_cache(maxsize=None)
def _token_re(normalize: bool, emoji: bool, cjk: str) -> re.Pattern[str]:
    """:data:`TOKEN_PATTERN` with the opt-in settings of :func:`tokenize`."""
    letter = f"(?![{CJK_CHARS}])[^\\W_]" if cjk == CJK_CHARS_SETTING else "[^\\W_]"
    unit = f"{letter}[{_marks()}]*" if normalize else letter
    word = f"(?:{unit})+"
    parts = [f"[{CJK_CHARS}][{_marks()}]*"] if cjk == CJK_CHARS_SETTING else []
    parts += [f"{word}(?:['’]{word})*", "[!?]"]
    if emoji:
        parts.append(f"[{EMOJI_CHARS}]")
    return re.compile("|".join(parts))


def _check_settings(max_vocab: int, min_count: int, max_len: int) -> None:
    for key, value, low in (("max_vocab", max_vocab, 1), ("min_count", min_count, 1), ("max_len", max_len, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise DataError(f"text preprocessing: {key} must be a whole number >= {low}, got {value!r}")


#: The settings ``--text`` takes, with their types (``tokenizer`` is set by ``--backbone minilm`` itself).
CLI_TEXT_SETTINGS = {"max_len": int, "min_count": int, "max_vocab": int, "bigrams": bool, "vectors": str,
                     "normalize": bool, "emoji": bool, "cjk": str}


def parse_text_settings(text: str | None) -> dict | None:
    """``"max_len=400,bigrams=true"`` -> ``{"max_len": 400, "bigrams": True}`` (the CLI's ``--text``); None or
    blank -> None. Unknown keys and values of the wrong type are a :class:`DataError` naming them."""
    if text is None or not text.strip():
        return None
    out: dict = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = (x.strip() for x in part.partition("="))
        if not sep or key not in CLI_TEXT_SETTINGS:
            raise DataError(f"--text: expected KEY=VALUE with KEY one of {', '.join(CLI_TEXT_SETTINGS)}, got {part!r}")
        if key in out:  # (the last would win without a word)
            raise DataError(f"--text gives {key} twice; give each setting once")
        if CLI_TEXT_SETTINGS[key] is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise DataError(f"--text: {key} is true or false, got {value!r}")
            out[key] = value.lower() in ("true", "1", "yes")
        elif CLI_TEXT_SETTINGS[key] is str:
            out[key] = value
        else:
            try:
                out[key] = int(value)
            except ValueError:
                raise DataError(f"--text: {key} is a whole number, got {value!r}") from None
    _check_settings(out.get("max_vocab", MAX_VOCAB), out.get("min_count", MIN_COUNT), out.get("max_len", MAX_LEN))
    _check_cjk(out.get("cjk", CJK_WORDS), "--text")
    return out


def _check_cjk(cjk: object, where: str) -> None:
    if cjk not in CJK_MODES:
        raise DataError(f"{where}: cjk is {' or '.join(CJK_MODES)} (chars: each Chinese/Japanese character and Thai "
                        f"letter one token, for text written without spaces), got {cjk!r}")


def fit_text_preprocessing(texts: Iterable[str], *, max_vocab: int = MAX_VOCAB, min_count: int = MIN_COUNT,
                           max_len: int = MAX_LEN, bigrams: bool = False, tokenizer: str = TOKENIZER,
                           vectors: str | None = None, normalize: bool = False, emoji: bool = False,
                           cjk: str = CJK_WORDS) -> dict:
    """The plain-JSON text preprocessing fitted on training inputs ``texts`` (no labels): tokeniser
    settings and the vocabulary, ``vocab[i]`` being the token of id ``i`` (0 ``<pad>``, 1 ``<unk>``).

    A token is kept when it occurs in at least ``min_count`` of the texts; of those, the ``max_vocab``
    occurring in the most texts (ties broken alphabetically, so the result does not depend on order).
    ``tokenizer=WORDPIECE`` fits nothing: MiniLM's WordPiece vocabulary (:mod:`qianyi.nn.minilm`; only
    ``max_len`` applies). ``vectors`` (``minilm``): the text encoder's word embeddings start from these
    pre-trained vectors where a word has one (:func:`qianyi.nn.text.init_word_vectors`); recorded here.
    ``normalize``, ``emoji``, ``cjk``: :func:`tokenize`'s opt-in settings, recorded only when on.

    Warns (:class:`~qianyi.errors.QianyiWarning`) when most training tokens are left out of the vocabulary (text
    without spaces, too few texts), and when ``normalize`` is off but the texts hold what it would join (text not in
    NFC, ``İ``, full-width forms, combining marks).
    """
    _check_settings(max_vocab, min_count, max_len)
    _check_cjk(cjk, "text preprocessing")
    for key, value in (("normalize", normalize), ("emoji", emoji)):
        if not isinstance(value, (bool, np.bool_)):
            raise DataError(f"text preprocessing: {key} is true or false, got {value!r}")
    options = {k: v for k, v in (("normalize", bool(normalize)), ("emoji", bool(emoji)), ("cjk", cjk))
               if v != TOKEN_OPTIONS[k]}
    if vectors is not None and vectors not in WORD_VECTORS:
        raise DataError(f"text preprocessing: unknown word vectors {vectors!r}; available: {', '.join(WORD_VECTORS)}")
    if tokenizer == WORDPIECE:
        if vectors is not None:
            raise DataError(f"text preprocessing: vectors={vectors} are for the word tokeniser's encoders (embbag, "
                            "textcnn, memnet); minilm brings its own embeddings")
        if bigrams or options:
            given = ", ".join(["bigrams"] * bool(bigrams) + list(options))
            raise DataError(f"text preprocessing: {given} apply to the word tokeniser {TOKENIZER!r}, not to "
                            f"{WORDPIECE!r} (minilm's WordPiece keeps its own rules)")
        from .wordpiece import wordpiece_preprocessing

        return wordpiece_preprocessing(int(max_len))
    if tokenizer != TOKENIZER:
        raise DataError(f"text preprocessing: unknown tokenizer {tokenizer!r}; available: {TOKENIZER}, {WORDPIECE}")
    df: Counter[str] = Counter()
    n = 0
    plain_texts: list[str] = []
    for t in texts:
        words = tokenize(t, bigrams, **options)
        df.update(set(words))
        n += 1
        if not t.isascii():
            plain_texts.append(t)
    if n == 0:
        raise DataError("text preprocessing: no training texts to build a vocabulary from")
    kept = sorted((w for w, c in df.items() if c >= min_count), key=lambda w: (-df[w], w))[:max_vocab]
    unspaced = _unspaced(plain_texts) if cjk == CJK_WORDS else None
    _warn_unknown(df, set(kept), n, min_count, max_vocab, unspaced)
    if not normalize:
        _warn_unnormalised(plain_texts, n, skip_cjk_marks=cjk == CJK_CHARS_SETTING or unspaced is not None)
    return {"tokenizer": TOKENIZER, "lowercase": True, "pattern": TOKEN_PATTERN, "bigrams": bool(bigrams),
            "max_len": int(max_len), "min_count": int(min_count), "max_vocab": int(max_vocab),
            "fitted_on": n, **({"vectors": vectors} if vectors else {}), **options, "vocab": [PAD, UNK, *kept]}


#: :func:`fit_text_preprocessing` warns when at least this share of the training tokens is not in the vocabulary.
UNKNOWN_SHARE_WARN = 0.5


#: Text counts as written without spaces when its CJK/Thai characters are at least 30 % of its letters and their
#: runs (between spaces, punctuation, other scripts) hold this many on average: Chinese and Japanese words are 1-3
#: characters, Thai words (vowel signs and tone marks included) mostly under 10.
UNSPACED_RUN = {"cjk": 4.0, "thai": 10.0}
_CJK_RUN_RE = re.compile(f"[{CJK_CHARS}]+")


def _unspaced(non_ascii: list[str]) -> tuple[float, bool] | None:
    """``(characters per run, mostly Thai)`` when the texts are Chinese, Japanese or Thai written without spaces,
    else None; judged on the texts themselves (not on words-v1's tokens, which Thai vowel signs cut short)."""
    letters = chars = runs = thai = 0
    for t in non_ascii:
        letters += len(_LETTER_RE.findall(t))
        for r in _CJK_RUN_RE.findall(t):
            chars += len(r)
            runs += 1
            thai += sum(1 for ch in r if "\u0e00" <= ch <= "\u0e7f")
    if not runs or chars < 0.3 * letters:
        return None
    is_thai = thai >= 0.5 * chars
    per_run = chars / runs
    return (per_run, is_thai) if per_run >= UNSPACED_RUN["thai" if is_thai else "cjk"] else None


def _warn_unknown(df: Counter, kept: set[str], n: int, min_count: int, max_vocab: int,
                  unspaced: tuple[float, bool] | None) -> None:
    """Warn when most training tokens are ``<unk>`` (each counted once per text: ``df``, the document counts), and
    whenever the texts are Chinese, Japanese or Thai written without spaces but cut into words (``unspaced``:
    :func:`_unspaced`, None when they are not or ``cjk="chars"``)."""
    total = sum(df.values())
    unknown = sum(c for w, c in df.items() if w not in kept)
    if not total or unknown / total < UNKNOWN_SHARE_WARN and not unspaced:
        return
    rare = sum(c for c in df.values() if c < min_count)
    why = [f"{rare / total:.0%} occur in fewer than min_count={min_count} texts"] * bool(rare) + \
        [f"{(unknown - rare) / total:.0%} are beyond max_vocab={max_vocab:,}"] * bool(unknown - rare)
    head = (f"text preprocessing: {unknown / total:.0%} of the training tokens are <unk> (each token counted once per "
            f"text: {unknown:,} of {total:,}, in {n:,} texts{': ' if why else ''}{' and '.join(why)}); the vocabulary "
            f"holds {len(kept):,} token(s)"
            ).replace("%", " %")
    if unspaced:
        per_run, thai = unspaced
        # (Thai: normalize alone makes each clause one token; cjk=chars already keeps each letter's marks)
        tips, py = (("cjk=chars,bigrams=true", "'cjk': 'chars', 'bigrams': True") if thai else
                    ("cjk=chars,normalize=true,bigrams=true", "'cjk': 'chars', 'normalize': True, 'bigrams': True"))
        cut = ("cuts Thai only at spaces, punctuation and vowel signs or tone marks: the tokens are pieces of "
               "clauses, not words" if thai else
               "cuts only at spaces and punctuation: each clause became one token, seen in hardly any other text")
        warnings.warn(f"{head}. The texts are mostly Chinese, Japanese or Thai written without spaces between words "
                      f"({per_run:.1f} such characters between spaces or punctuation on average), and the word "
                      f"tokeniser {TOKENIZER!r} {cut}. Give --text {tips} (Python: "
                      f"load_task(..., text={{{py}}})): each character one token, plus character "
                      "bigrams; or split the texts into words first (jieba for Chinese, MeCab/fugashi for Japanese, "
                      "pythainlp for Thai) and join the words with spaces (docs/text.md, 'Text without spaces')",
                      QianyiWarning, stacklevel=3)
        return
    warnings.warn(f"{head}, so the model sees mostly <unk> and may stay at chance. Give more texts, lower min_count "
                  "(--text min_count=1) or raise max_vocab, and check that the texts are words separated by spaces "
                  "(text without spaces: --text cjk=chars, docs/text.md)", QianyiWarning, stacklevel=3)


def _warn_unnormalised(non_ascii: list[str], n: int, skip_cjk_marks: bool = False) -> None:
    """Warn when texts hold what ``normalize`` would tokenise otherwise, naming each kind found; ``skip_cjk_marks``
    (``cjk="chars"``, which keeps a Thai letter's marks, or text without spaces, told ``cjk=chars`` instead): marks
    after a :data:`CJK_CHARS` letter are not counted."""
    if not non_ascii:
        return
    marks = _MARK_AFTER_LETTER_RE(skip_cjk_marks)
    kinds = {"are not in NFC (decomposed accents, e.g. from macOS: they cut words in two)":
             lambda t: not unicodedata.is_normalized("NFC", t),
             "hold a capital İ (lowered to i + a combining dot, which cuts the word)": lambda t: "İ" in t,
             "hold full-width letters or digits (ＡＢＣ１２３: tokens apart from their ASCII forms)":
             lambda t: _FULL_WIDTH_RE.search(t) is not None,
             "hold a full-width ！ or ？ (dropped, while ! and ? are tokens)": lambda t: "！" in t or "？" in t,
             "hold combining marks after a letter (Devanagari, Thai or Arabic vowel signs, NFD accents: words cut "
             "into pieces)": lambda t: marks.search(t) is not None}
    found = [f"{count:,} {what}" for what, has in kinds.items() if (count := sum(1 for t in non_ascii if has(t)))]
    if found:
        warnings.warn(f"text preprocessing: of the {n:,} training texts, {'; '.join(found)}. --text normalize=true "
                      "(Python: text={'normalize': True}) puts the texts in NFC, maps full-width forms to ASCII, "
                      "lowers İ to i and keeps combining marks inside words (docs/text.md)", QianyiWarning,
                      stacklevel=3)


_LETTER_RE = re.compile(r"[^\W\d_]")
_CJK_RE = re.compile(f"[{CJK_CHARS}]")
#: Full-width letters and digits, which ``normalize`` tokenises as ASCII (``！`` and ``？``: checked apart).
_FULL_WIDTH_RE = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")


@functools.lru_cache(maxsize=None)
def _MARK_AFTER_LETTER_RE(skip_cjk: bool = False) -> re.Pattern[str]:
    letter = f"(?![{CJK_CHARS}])[^\\W_]" if skip_cjk else "[^\\W_]"
    return re.compile(f"{letter}[{_marks()}]")


def encode_texts(texts: Sequence[str], text_pre: dict, name: str = "the data") -> np.ndarray:
    """Token ids (int64, ``(n, max_len)``) of ``texts`` under a recorded text preprocessing: unknown tokens
    are 1, each row is cut after ``max_len`` tokens or padded with 0."""
    if text_pre.get("tokenizer") == WORDPIECE:
        from .wordpiece import encode_wordpiece

        return encode_wordpiece(texts, text_pre)
    if text_pre.get("tokenizer") != TOKENIZER:
        raise DataError(f"{name!r}: the model's tokeniser is {text_pre.get('tokenizer')!r} but this qianyi has "
                        f"{TOKENIZER!r}; rerun the run with this version")
    vocab, max_len, bigrams = text_pre["vocab"], int(text_pre["max_len"]), bool(text_pre["bigrams"])
    options = {k: text_pre.get(k, default) for k, default in TOKEN_OPTIONS.items()}
    bad = [k for k in ("normalize", "emoji") if not isinstance(options[k], bool)]
    if bad or options["cjk"] not in CJK_MODES:
        raise DataError(f"{name!r}: the model's text preprocessing holds {', '.join(bad) or 'cjk'} = "
                        f"{options[(bad or ['cjk'])[0]]!r}, not {'true or false' if bad else ' or '.join(CJK_MODES)}; "
                        "model.json was edited: use the run's own model.json")
    index = {w: i for i, w in enumerate(vocab)}
    out = np.zeros((len(texts), max_len), np.int64)
    for r, t in enumerate(texts):
        ids = [index.get(w, 1) for w in tokenize(t, bigrams, **options)[:max_len]]
        out[r, :len(ids)] = ids
    return out


def tokenize_task(task: TransferTask, preprocessing: dict | None = None, **settings: Any) -> TransferTask:
    """``task`` (a :class:`~qianyi.data.TransferTask` of raw text) with every split encoded as token ids,
    the vocabulary fitted on ``task.source`` and ``task.target`` inputs only (``settings``: those of
    :func:`fit_text_preprocessing`); ``task.preprocessing`` (``preprocessing`` plus ``"text"``) records it.

    The ids are stored as the domain's float32 inputs (exact below 2**24); the text encoders read them
    as int64 (:mod:`qianyi.nn.text`).
    """
    for d in (task.source, task.source_val, task.target, task.target_test):
        if d is not None and not d.is_text:
            raise DataError(f"{d.name!r} holds {'images' if d.is_image else 'vectors'}, not text; every domain of a "
                            "text task must be text")
    unknown = sorted(set(settings) - set(TEXT_SETTINGS))
    if unknown:
        raise DataError(f"text preprocessing has no setting(s) {unknown}; settings: {', '.join(TEXT_SETTINGS)}")
    text_pre = fit_text_preprocessing([*task.source.X, *task.target.X], **settings)
    pre = {**(preprocessing or task.preprocessing or {}), "text": text_pre}
    parts = {k: getattr(task, k) for k in ("source", "source_val", "target", "target_test")}
    encoded = {k: None if d is None else d.replace(X=encode_texts(d.X, text_pre, d.name)) for k, d in parts.items()}
    for k, d in encoded.items():
        if d is not None:
            _RAW_TEXT[d] = parts[k].X
    return replace(task, preprocessing=pre, **encoded)


def retokenize_task(task: TransferTask, **settings: Any) -> TransferTask:
    """A task that :func:`tokenize_task` encoded, encoded again from its raw texts with other ``settings``
    (``tokenizer=WORDPIECE`` for ``minilm``); as it is when its text preprocessing already has them."""
    text = (task.preprocessing or {}).get("text") or {}
    if all(text.get(k) == v for k, v in settings.items()):
        return task
    if text.get("vectors"):  # kept (or refused, for minilm's WordPiece ids), never dropped silently
        settings = {"vectors": text["vectors"], **settings}
    if text.get("bigrams"):  # likewise (WordPiece refuses bigrams: said, not dropped)
        settings = {"bigrams": True, **settings}
    for k, default in TOKEN_OPTIONS.items():  # likewise (normalize, emoji, cjk)
        if text.get(k, default) != default:
            settings = {k: text[k], **settings}
    if "max_len" in text:  # the user's --text max_len holds for the new tokeniser too
        settings = {"max_len": text["max_len"], **settings}
    parts = {k: getattr(task, k) for k in ("source", "source_val", "target", "target_test")}
    if any(d is not None and d not in _RAW_TEXT for d in parts.values()):
        raise DataError(f"{task.name}: its raw texts are no longer at hand to tokenise it with {settings}; load it "
                        f"with load_task(..., text={settings!r})")
    raw = replace(task, preprocessing={k: v for k, v in (task.preprocessing or {}).items() if k != "text"},
                  **{k: None if d is None else d.replace(X=_RAW_TEXT[d]) for k, d in parts.items()})
    return tokenize_task(raw, **settings)


def encode_domain(d: Domain, text_pre: dict | None, name: str | None = None) -> Domain:
    """A freshly read text domain encoded with a model's recorded text preprocessing (``qianyi predict``)."""
    name = name or d.name
    if text_pre is None:
        raise DataError(f"{name!r} holds text, but the model reads images or vectors; give the kind of data the "
                        "run was trained on")
    if not d.is_text:
        raise DataError(f"{name!r} holds {'images' if d.is_image else 'vectors'}, but the model reads text; give a "
                        "text spec (csv:PATH?text=COL, jsonl:PATH, lines:DIR or amazon/DOMAIN)")
    return d.replace(X=encode_texts(d.X, text_pre, name))


# --- the Multi-Domain Sentiment Dataset (Blitzer et al. 2007) ------------------------------------

_REVIEW_OPEN = re.compile(r"<review>")
_FIELD = {tag: re.compile(rf"<{tag}>(.*?)</{tag}>", re.S) for tag in ("review_text", "title", "rating")}


def _unescape(text: str) -> str:
    """HTML entities decoded; twice when the first pass leaves entities (``&amp;quot;`` in the kitchen
    reviews: escaped twice at the source)."""
    once = html.unescape(text)
    return html.unescape(once) if once != text and re.search(r"&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);", once) else once


def parse_reviews(text: str) -> tuple[list[str], list[float | None], int]:
    """The reviews of one ``.review`` file's text: (texts, ratings, number of malformed records skipped).

    Each ``<review> ... </review>`` record must hold exactly one non-empty ``<review_text>``; a record
    that does not (or whose ``</review>`` is missing before the next ``<review>``) is malformed and
    skipped. A review's text is its ``<title>`` (when present) and its ``<review_text>``, one line each,
    with HTML entities decoded (``&quot;``, ``&#45;``, twice-escaped ``&amp;quot;``; a bare ``&`` stays) and
    runs of blank space inside a line squeezed.
    """
    texts: list[str] = []
    ratings: list[float | None] = []
    bad = 0
    for chunk in _REVIEW_OPEN.split(text)[1:]:
        body, closed, _ = chunk.partition("</review>")
        bodies = _FIELD["review_text"].findall(body) if closed else []
        if len(bodies) != 1 or not bodies[0].strip():
            bad += 1
            continue
        titles = _FIELD["title"].findall(body)
        parts = [_unescape(p) for p in (titles[:1] + bodies)]
        texts.append("\n".join(" ".join(p.split()) for p in parts if p.strip()))
        rating = _FIELD["rating"].findall(body)
        try:
            ratings.append(float(rating[0]) if rating else None)
        except ValueError:
            ratings.append(None)
    return texts, ratings, bad


def _review_file(path: str | os.PathLike) -> tuple[list[str], int, str]:
    """(the review texts of one ``.review`` file, its number of malformed records, how errors name it)."""
    p = _file(path, "review file", "amazon")
    where = f"review file {str(p)!r}"
    texts, _, bad = parse_reviews(_csv_text(p, where))
    return texts, bad, where


def read_reviews(path: str | os.PathLike) -> list[str]:
    """The review texts of one Blitzer ``.review`` file (pseudo-XML; see :func:`parse_reviews`); malformed
    records are skipped with a :class:`~qianyi.errors.QianyiWarning` that counts them."""
    texts, bad, where = _review_file(path)
    if bad:
        warnings.warn(f"{where}: skipped {bad} malformed review record(s) (no single non-empty <review_text>, or "
                      f"no </review>); {len(texts)} read", QianyiWarning, stacklevel=2)
    if not texts:
        raise DataError(f"{where} holds no <review> record with a <review_text>; expected the Multi-Domain "
                        "Sentiment Dataset's pseudo-XML (<review> ... <review_text> ... </review_text> ... </review>)")
    return texts


def load_amazon_reviews(root: Path | None, domain: str) -> Domain:
    """One domain of the Multi-Domain Sentiment Dataset: negative.review then positive.review, as text; each
    file must hold its :data:`AMAZON_REVIEWS_PER_FILE` reviews (a cut or edited copy is refused)."""
    folder = data_folder(root, f"{AMAZON_FOLDER}/{domain}", f"amazon/{domain}",
                         f"{AMAZON_FOLDER}/{domain}/{{positive,negative}}.review")
    texts, labels = [], []
    for k, cls in enumerate(SENTIMENT_CLASSES):
        t, bad, where = _review_file(folder / f"{cls}.review")
        if len(t) != AMAZON_REVIEWS_PER_FILE:
            malformed = f" ({bad} malformed record(s) skipped)" if bad else ""
            raise DataError(f"amazon/{domain}: {where} holds {len(t):,} reviews{malformed}, but the dataset's "
                            f"{cls}.review holds {AMAZON_REVIEWS_PER_FILE:,}: the file is cut or edited; restore it "
                            f"from its SOURCE.md ({root / AMAZON_FOLDER / 'SOURCE.md'})")
        texts += t
        labels += [k] * len(t)
    return Domain(np.array(texts, dtype=object), np.array(labels), name=f"amazon/{domain}",
                  class_names=SENTIMENT_CLASSES, origin=f"{AMAZON_FOLDER}:{domain}")


def _register_amazon(domain: str) -> None:
    @dataset(f"amazon/{domain}", f"Amazon {domain} reviews (Blitzer et al. 2007), 1,000 positive + 1,000 negative, "
             f"raw text from DATA/{AMAZON_FOLDER}; tokenised by load_task (docs/text.md)")
    def load(root: Path | None) -> Domain:
        return load_amazon_reviews(root, domain)


for _d in AMAZON_DOMAINS:
    _register_amazon(_d)


# --- users' own text: csv, jsonl, lines ---------------------------------------------------------

def _labels(raw: list[str], rows: list[int], where: str, label: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
    missing = [n for n, v in zip(rows, raw) if v.strip().lower() in MISSING_LABELS]
    if missing:
        raise DataError(f"{where}: label {label!r} is empty or missing ('', nan, NA, null, ?) in {len(missing)} "
                        f"record(s) (first: {missing[:5]}); drop those records or fill in their labels")
    return _csv_labels([v.strip() for v in raw], where, label)


def _text_domain(texts: list[str], y: np.ndarray | None, class_names: tuple[str, ...] | None, name: str,
                 origin: str, where: str, ids: Sequence[str] | None = None) -> Domain:
    """``ids``: where each text is (``FILE:LINE``, a file's path): predict writes it beside each prediction."""
    if not texts:
        raise DataError(f"{where} holds no texts; expected one text per record")
    X = np.empty(len(texts), dtype=object)
    X[:] = texts
    return Domain(X, y, name=name, class_names=class_names, origin=origin, ids=None if ids is None else tuple(ids),
                  sorted_names=class_names is not None)  # sorted from text labels, file or folder names


def read_text_csv(path: str | os.PathLike, name: str | None = None, text: str = "text", label: str | None = None,
                  sep: str | None = None) -> Domain:
    """A CSV table (UTF-8, header row) whose column ``text`` holds one text per row; ``label`` names the label
    column (default: the one column named label, labels, y, class or target, if any; else unlabelled).
    Other columns are ignored."""
    import csv
    import io

    p = _file(path, "CSV file", "csv")
    at = f"CSV file {str(p)!r}"
    body = _csv_text(p, at)
    delimiter = _csv_separator(sep, body, at)
    try:
        rows = list(_numbered_rows(io.StringIO(body, newline=""), delimiter))
    except csv.Error as exc:
        raise DataError(f"{at} is not a valid CSV table ({exc}); quote texts that hold the separator or line "
                        "breaks (\"...\"), or give the separator with ?sep=") from exc
    if not rows:
        raise DataError(f"{at} is empty; expected a header line and one row per text")
    cols = [c.strip() for c in rows[0][1]]
    if text not in cols:
        hint = separator_hint(cols) or " (choose it with ?text=COLUMN)"
        raise DataError(f"{at} has no text column {text!r}; columns: {cols[:20]}{hint}")
    if label is not None and label not in cols:
        raise DataError(f"{at} has no label column {label!r}; columns: {cols[:20]}")
    if label == text:
        raise DataError(f"{at}: column {text!r} is both the text and the label; choose two columns")
    if label is None:
        likes = [c for c in cols if c.lower() in LABEL_COLUMNS and c != text]
        if len(likes) > 1:
            raise DataError(f"{at} has several label-like columns {likes}; choose one with ?label=NAME")
        label = likes[0] if likes else None
    ti, li = cols.index(text), None if label is None else cols.index(label)
    texts, raw, rownos = [], [], []
    for n, r in rows[1:]:
        if len(r) != len(cols):
            raise DataError(f"{at}: line {n} has {len(r)} fields, the header has {len(cols)}; quote texts that hold "
                            f"the separator {delimiter!r} (\"...\")")
        texts.append(r[ti])
        rownos.append(n)
        if li is not None:
            raw.append(r[li])
    y, names = _labels(raw, rownos, at, label) if label is not None and rownos else (None, None)
    return _text_domain(texts, y, names, name or p.stem, f"{p.resolve()}?text={text}", at,
                        ids=[f"{p.name}:{n}" for n in rownos])


def _file_lines(text: str) -> list[str]:
    """A file's lines, split at line ends only (\\n, \\r\\n, \\r): not at the other breaks ``str.splitlines`` knows
    (form feed, U+0085, U+2028, ...), which a review may hold and JSON allows inside a string; the records then
    stay the file's lines (a prediction's index is its line's)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def read_jsonl(path: str | os.PathLike, name: str | None = None, text: str = "text", label: str | None = None
               ) -> Domain:
    """JSON Lines: one JSON object per line, its key ``text`` a string; ``label`` the label key (default
    ``label`` when the first record has it, else unlabelled). Blank lines are skipped."""
    p = _file(path, "JSON Lines file", "jsonl")
    at = f"JSON Lines file {str(p)!r}"
    texts, raw, rownos = [], [], []
    for n, line in enumerate(_file_lines(_csv_text(p, at)), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{at}: line {n} is not valid JSON ({exc.msg} at column {exc.colno}); write one JSON "
                            "object per line, e.g. {\"text\": \"...\", \"label\": \"positive\"}") from None
        if not isinstance(rec, dict):
            raise DataError(f"{at}: line {n} holds a JSON {type(rec).__name__}, not an object; write one object "
                            "per line, e.g. {\"text\": \"...\", \"label\": \"positive\"}")
        if label is None and not rownos and "label" in rec:
            label = "label"
        if text not in rec or not isinstance(rec[text], str):
            what = "has no key" if text not in rec else f"holds a {type(rec[text]).__name__} in"
            raise DataError(f"{at}: line {n} {what} {text!r}; every record needs its text as a string (choose the "
                            f"key with ?text=KEY; keys here: {sorted(rec)[:10]})")
        if label is not None:
            v = rec.get(label)
            if isinstance(v, bool) or not isinstance(v, (str, int, float)) and v is not None:
                raise DataError(f"{at}: line {n}: label {label!r} holds a {type(v).__name__}; give a class name "
                                "or a class index")
            raw.append("" if v is None else str(v))
        texts.append(rec[text])
        rownos.append(n)
    y, names = _labels(raw, rownos, at, label) if label is not None and rownos else (None, None)
    return _text_domain(texts, y, names, name or p.stem, f"{p.resolve()}?text={text}", at,
                        ids=[f"{p.name}:{n}" for n in rownos])


def read_lines(path: str | os.PathLike, name: str | None = None) -> Domain:
    """One text per line. A folder: every ``<label>.txt`` in it is one class, named by the file (classes in
    sorted order); or, with no such file, ``<label>/*.txt``: one class per sub-folder, one text per file (the
    layout of aclImdb and scikit-learn's ``load_files``). A file: its lines, unlabelled. Blank lines are skipped."""
    p = Path(path)
    if p.is_file():
        at = f"text file {str(p)!r}"
        kept = _text_lines(p)
        return _text_domain([t for _, t in kept], None, None, name or p.stem, str(p.resolve()), at,
                            ids=[f"{p.name}:{n}" for n, _ in kept])
    d = _folder(p, "lines folder", "lines: expects a folder of <label>.txt files, of <label>/ sub-folders of .txt "
                "files (one text each), or one .txt file (unlabelled)")
    files = sorted(f for f in d.iterdir() if f.suffix == ".txt" and f.is_file())
    subs = [_listable(x, "lines folder's class sub-folder") for x in sorted(d.iterdir())
            if x.is_dir() and not x.name.startswith(".")]  # (one that cannot be listed: said, not a traceback)
    classes = [x for x in subs if any(f.suffix == ".txt" and f.is_file() for f in x.iterdir())]
    if not files and classes:
        return _read_text_files(d, classes, name)
    if not files:
        raise DatasetNotFoundError(f"no <label>.txt files in {str(d)!r}; put one file per class there (e.g. "
                                   "positive.txt, negative.txt), one text per line, or one sub-folder per class "
                                   "holding one .txt file per text")
    texts, labels, ids = [], [], []
    for k, f in enumerate(files):
        kept = _text_lines(f)
        lines = [t for _, t in kept]
        ids += [f"{f.name}:{n}" for n, _ in kept]
        if not lines:
            raise DataError(f"text file {str(f)!r} holds no text; write one text per line, or remove the file "
                            f"(it would be an empty class {f.stem!r})")
        texts += lines
        labels += [k] * len(lines)
    return _text_domain(texts, np.array(labels), tuple(f.stem for f in files), name or d.name, str(d.resolve()),
                        f"lines folder {str(d)!r}", ids=ids)


def _text_lines(f: Path) -> list[tuple[int, str]]:
    """A text file's non-blank lines with their line numbers (blank lines are skipped: a prediction names the
    line, not its index)."""
    return [(n, t) for n, t in enumerate(_file_lines(_csv_text(f, f"text file {str(f)!r}")), 1) if t.strip()]


def _read_text_files(d: Path, classes: Sequence[Path], name: str | None) -> Domain:
    """``d/<label>/*.txt``: one text per file (its lines joined by spaces), one class per sub-folder."""
    texts, labels, ids = [], [], []
    for k, sub in enumerate(classes):
        for f in sorted(f for f in sub.iterdir() if f.suffix == ".txt" and f.is_file()):
            text = " ".join(t.strip() for _, t in _text_lines(f))
            if not text:
                raise DataError(f"text file {str(f)!r} holds no text; remove it or write the text in it")
            texts.append(text)
            labels.append(k)
            ids.append(f.relative_to(d).as_posix())
    return _text_domain(texts, np.array(labels), tuple(c.name for c in classes), name or d.name, str(d.resolve()),
                        f"lines folder {str(d)!r}", ids=ids)


#: Readers of text specs (added to :data:`qianyi.data.tasks.READERS`) and their ``?key=value`` options.
TEXT_READERS = {
    "jsonl": lambda path, name, opts: read_jsonl(path, name, text=opts.get("text", "text"), label=opts.get("label")),
    "lines": lambda path, name, opts: read_lines(path, name),
}
TEXT_READER_OPTIONS = {"jsonl": ("name", "text", "label"), "lines": ("name",)}
#: Options of ``csv:PATH?text=COL``: the CSV reader in text mode.
CSV_TEXT_OPTIONS = ("name", "text", "label", "sep")


def csv_text_reader(path: str, name: str, opts: dict) -> Domain:
    """``csv:PATH?text=COL...``: :func:`read_text_csv`; options of the numeric table reader are refused."""
    other = sorted(set(opts) - set(CSV_TEXT_OPTIONS) - {"max_samples", "seed"})
    if other:
        raise DataError(f"csv:{path}: with ?text= the CSV reader reads texts and takes only the options "
                        f"{', '.join(CSV_TEXT_OPTIONS)}; leave out {', '.join(other)}")
    return read_text_csv(path, name, text=opts["text"], label=opts.get("label"), sep=opts.get("sep"))
