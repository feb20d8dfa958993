"""One canvas per pair: how two image domains are brought to the same shape.

Rules (documented in docs/data.md):

* size = the smaller of the two native sizes; channels = the larger of the two channel counts
  (grey images are repeated to RGB; RGB images are averaged to grey only if the canvas is grey).
* If either domain is in the UCI 8x8 block-count format (``digits``), the canvas follows the UCI
  protocol, and the other domain is brought to it the way UCI built its data: crop the ink bounding
  box, pad it to a square, resize to 32x32, binarise, count the ink pixels of each 4x4 block
  (0..16, divided by 16). Upsampling 8x8 images instead would invent detail, and a plain
  average-pool to 8x8 halves source-only accuracy.
* Otherwise images are padded to a square and resized (bilinear, anti-aliased).
Values are floats in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from .domain import Domain
from .lazy import is_lazy

UCI = "uci"
#: The side of the UCI digits' block-count images.
UCI_SIZE = 8
RESIZE = "resize"

#: Binarisation threshold of the UCI protocol, applied to a 32x32 bilinear resize of the
#: ink box (images in [0, 1]); see docs/data.md for how it was chosen (unlabelled pixels only).
UCI_THRESHOLD = 0.35
#: A pixel above this counts as ink when looking for the bounding box.
INK_THRESHOLD = 0.1


@dataclass(frozen=True)
class Canvas:
    size: int
    channels: int
    protocol: str = RESIZE

    def __str__(self) -> str:
        return f"{self.channels}x{self.size}x{self.size} ({self.protocol})"


def native_canvas(domain: Domain) -> Canvas:
    c, h, w = domain.sample_shape
    return Canvas(max(h, w), c, UCI if domain.style == UCI else RESIZE)


def common_canvas(a: Domain, b: Domain) -> Canvas:
    """The canvas on which domains ``a`` and ``b`` form a task (see the module docstring)."""
    ca, cb = native_canvas(a), native_canvas(b)
    protocol = UCI if UCI in (ca.protocol, cb.protocol) else RESIZE
    size = UCI_SIZE if protocol == UCI else min(ca.size, cb.size)
    return Canvas(size, max(ca.channels, cb.channels), protocol)


def to_canvas(domain: Domain, canvas: Canvas) -> Domain:
    """Return ``domain`` drawn on ``canvas`` (a no-op when it already is)."""
    if not domain.is_image:
        return domain
    X = domain.X
    if is_lazy(X):  # a streamed folder is decoded straight onto the canvas
        if canvas.protocol == UCI:
            raise DataError(f"{domain.name!r} is a streamed folder (stream=1), which cannot be drawn on the UCI 8x8 "
                            "canvas; drop stream=1 for this pair")
        if X.shape[1:] == (canvas.channels, canvas.size, canvas.size):
            return domain
        return domain.replace(X=X.with_canvas(canvas.size, canvas.channels))
    if canvas.protocol == UCI and domain.style != UCI and X.shape[2:] == (UCI_SIZE, UCI_SIZE):
        pass  # already 8x8 block counts (digits saved to a file, `qianyi translate` output): not blocked twice
    elif canvas.protocol == UCI and domain.style != UCI:
        if X.shape[1] > 1 and not all(np.array_equal(X[:, 0], X[:, k]) for k in range(1, X.shape[1])):
            raise DataError(f"{domain.name!r} is a colour image set, and the UCI digits' 8x8 protocol counts ink "
                            "on a black background (grey digits such as mnist): its conversion of colour photos "
                            "(mnist-m) would keep no digit. Pair it with grey ink-on-black images, or pair the "
                            "colour set with a 28x28 domain")
        X = uci_blocks(_grey(X))
    elif X.shape[2:] != (canvas.size, canvas.size):
        X = resize(X, canvas.size)
    if X.shape[1] != canvas.channels:
        if X.shape[1] != 1 and canvas.channels != 1:  # (grey averaged 4 channels to 1 on a canvas of 3)
            raise DataError(f"{domain.name!r} has images of {X.shape[1]} channels and the pair's canvas {canvas.channels}; "
                            "give grey (1 channel) or RGB (3) images")
        X = np.repeat(X, canvas.channels, axis=1) if X.shape[1] == 1 else _grey(X)
    if X is domain.X:
        return domain
    style = UCI if canvas.protocol == UCI else domain.style
    return domain.replace(X=X, style=style)


def _grey(X: np.ndarray) -> np.ndarray:
    return X if X.shape[1] == 1 else X.mean(axis=1, keepdims=True)


def pad_square(X: np.ndarray) -> np.ndarray:
    h, w = X.shape[-2:]
    if h == w:
        return X
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    out = np.zeros(X.shape[:-2] + (s, s), X.dtype)
    out[..., top:top + h, left:left + w] = X
    return out


def resize(X: np.ndarray, size: int, chunk: int = 4096) -> np.ndarray:
    """Pad (n, c, h, w) images to a square, then resize them to ``size`` x ``size`` (bilinear, anti-aliased)."""
    X = pad_square(X)
    if X.shape[-1] == size:
        return X.astype(np.float32, copy=True)
    out = []
    for i in range(0, len(X), chunk):
        t = torch.from_numpy(np.ascontiguousarray(X[i:i + chunk], dtype=np.float32))
        out.append(F.interpolate(t, size=(size, size), mode="bilinear", antialias=True,
                                 align_corners=False).clamp_(0, 1).numpy())
    return np.concatenate(out)


def uci_blocks(X: np.ndarray, threshold: float = UCI_THRESHOLD) -> np.ndarray:
    """Grey (n, 1, h, w) ink-on-black images -> (n, 1, 8, 8) UCI-style block counts / 16.

    Per image: crop the bounding box of pixels above ``INK_THRESHOLD``, pad it to a square
    (centred), resize to 32x32, binarise at ``threshold``, count ink pixels in each 4x4 block.
    """
    n = len(X)
    boxes = np.zeros((n, 1, 32, 32), np.float32)
    imgs = X[:, 0]
    ink = imgs > INK_THRESHOLD
    rows, cols = ink.any(2), ink.any(1)  # (n, h), (n, w): which rows / columns hold ink
    h, w = imgs.shape[1:]
    r0, r1 = rows.argmax(1), h - 1 - rows[:, ::-1].argmax(1)  # each bounding box at once
    c0, c1 = cols.argmax(1), w - 1 - cols[:, ::-1].argmax(1)
    hh, ww = r1 - r0 + 1, c1 - c0 + 1
    side = np.maximum(hh, ww)
    inked = rows.any(1)  # a blank image stays blank
    for s in np.unique(side[inked]):  # one resize per square size (as pad_square centres each crop)
        idx = np.flatnonzero(inked & (side == s))
        sq = np.zeros((len(idx), 1, s, s), np.float32)
        for j, i in enumerate(idx):
            top, left = (s - hh[i]) // 2, (s - ww[i]) // 2
            sq[j, 0, top:top + hh[i], left:left + ww[i]] = imgs[i, r0[i]:r1[i] + 1, c0[i]:c1[i] + 1]
        boxes[idx] = F.interpolate(torch.from_numpy(sq), size=(32, 32), mode="bilinear", antialias=True,
                                   align_corners=False).numpy()
    binary = (boxes > threshold).astype(np.float32)
    counts = binary.reshape(n, 1, 8, 4, 8, 4).sum(axis=(3, 5))
    return counts / 16.0
