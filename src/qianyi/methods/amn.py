"""AMN: Adversarial Memory Network for cross-domain sentiment classification (Li, Zhang, Wei, Wu, Yang,
IJCAI 2017)."""
from __future__ import annotations

from .dann import DANN
from .registry import register


@register
class AMN(DANN):
    r"""AMN: a word-attention memory network shared by a sentiment classifier and an adversarial domain
    classifier; the words the shared attention settles on are the pivots.

    .. math::
        \mathcal{L} = \frac{1}{n_s}\sum_{i=1}^{n_s} \ell\big(F(G(x_i^s)), y_i^s\big)
            - \frac{1}{n_s + n_t}\Big[\sum_{i=1}^{n_s} \log \sigma\big(D(R(G(x_i^s)))\big)
            + \sum_{j=1}^{n_t} \log\big(1 - \sigma(D(R(G(x_j^t))))\big)\Big],
        \qquad G(x) = h\Big(q_K\Big), \; q_{k+1} = q_k + \sum_i \alpha^{(k)}_i m_i

    :math:`G` is the memory network (text encoder ``memnet``, :class:`~qianyi.nn.text.MemoryAttention`):
    word memories :math:`m_i` (the embeddings of a review's words), attention :math:`\alpha^{(k)}` from a
    learned query over ``hops`` = 3 hops, then a fully connected layer :math:`h`. Because the sentiment
    classifier :math:`F` and the domain classifier :math:`D` read the *same* attention (the paper's two
    parameter-shared memory networks are one network with two heads), words that help the sentiment but
    tell the domains apart are pushed out of the attention and words that carry sentiment in both domains
    — pivots — stay in it. :math:`R` is gradient reversal with DANN's schedule
    :math:`\lambda_p = \lambda (2/(1+e^{-10p}) - 1)`; the regulariser of the paper is the engine's weight
    decay. The loss is DANN's (:class:`~qianyi.methods.dann.DANN`); what AMN adds is the attention
    encoder, chosen by this method when no ``--backbone`` is given on a text task.

    Differences from the paper: word embeddings are learned from the reviews (128-d) rather than
    pre-trained word2vec, and training follows the engine's schedule for text (Adam, 20 epochs, the last
    epoch kept). ``qianyi pivots S T`` trains it and lists the pivots (attention in both domains, polarity
    from the classifier).

    Inputs: token ids of source and target reviews (a text task); source labels.

    Paper: Zheng Li, Yu Zhang, Ying Wei, Yuxiang Wu, Qiang Yang. "End-to-End Adversarial Memory Network
    for Cross-domain Sentiment Classification". IJCAI 2017, 2237-2243.

    Example:
        >>> import qianyi
        >>> result, fit = qianyi.run("amn", qianyi.load_task("amazon/books", "amazon/kitchen"))  # doctest: +SKIP
    """

    name = "amn"
    text_encoder = "memnet"
