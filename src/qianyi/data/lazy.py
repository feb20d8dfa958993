"""Streamed image folders: inputs decoded from their files only when a batch asks for them.

:class:`LazyImages` stands where a domain's ``X`` array would: it has a ``shape`` (n, c, s, s), a
``dtype`` (float32) and a length, and ``X[i]``, ``X[a:b]`` and ``X[index_array]`` decode just those
images (grey as the in-memory ``folder:`` reader makes it, the mean of the channels; on a canvas
smaller than ``size`` resized once, where the in-memory reader resizes at reading and again to the
canvas, so values differ by resampling there). Indexing never changes which
files it holds; :meth:`LazyImages.view` does (splits and subsamples keep the files unread).

Training reads batches through :meth:`LazyImages.train_batch`, which may add the domain's
augmentations (``flip``: horizontal flip with probability 1/2; ``crop``: reflect-pad by s/8 and
crop back to s at a random offset). Their randomness comes from a generator the engine seeds with
(seed, stream, step), so a resumed run sees the same augmented batches, and so does a run with any
number of loader workers. Evaluation (``X[...]``) never augments.

``folder:DIR?stream=1`` reads a folder this way; ``&augment=flip,crop`` adds augmentations.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError
from .limits import check_bytes, max_image_pixels

AUGMENTATIONS = ("flip", "crop")
#: How files are decoded (:func:`qianyi.data.readers._decoded`). Revision 2 turns a photo upright as its EXIF
#: ``Orientation`` tag says and composites transparency on white; a file whose pixels that changes is keyed with
#: the revision (:meth:`LazyImages.fingerprint`), so runs and checkpoints of the old pixels are not reused.
DECODE_REVISION = 2


def _grey(a: np.ndarray) -> np.ndarray:
    """One channel as the in-memory canvas makes it (``canvas._grey``): the mean of the channels."""
    return a.mean(axis=0, keepdims=True).astype(np.float32)


class LazyImages:
    """(n, c, s, s) float32 images in [0, 1], decoded from ``files`` on demand."""

    ndim = 4
    dtype = np.dtype(np.float32)

    def __init__(self, files: Sequence[str | Path], size: int, grey: Sequence[bool], channels: int | None = None,
                 augment: Sequence[str] = (), index: np.ndarray | None = None, fit: str = "pad",
                 revised: Sequence[bool] | None = None) -> None:
        self.files = tuple(Path(f) for f in files)
        self.grey = np.asarray(grey, bool)
        # per file: whether decoding revision DECODE_REVISION changed its pixels (read_folder decodes each once)
        self.revised = np.zeros(len(self.files), bool) if revised is None else np.asarray(revised, bool)
        if len(self.grey) != len(self.files) or len(self.revised) != len(self.files):
            raise ValueError("one grey flag and one revised flag per file")
        bad = [a for a in augment if a not in AUGMENTATIONS]
        if bad:
            raise DataError(f"unknown augmentation(s) {bad}; choose from {', '.join(AUGMENTATIONS)} "
                            "(e.g. folder:DIR?stream=1&augment=flip,crop)")
        self.size = int(size)
        self.channels = int(channels if channels is not None else (1 if self.grey.all() else 3))
        self.augment = tuple(augment)
        self.fit = fit  # a non-square image padded to a square, or cut to its centre ("crop"): read_folder(resize=)
        self.index = np.arange(len(self.files)) if index is None else np.asarray(index, np.int64)

    # -- array-like ---------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.index), self.channels, self.size, self.size)

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"LazyImages(n={len(self)}, shape={self.shape[1:]}, augment={list(self.augment)})"

    def __getitem__(self, key: int | slice | np.ndarray | Sequence[int]) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self._decode(int(self.index[key]))
        rows = self.index[key] if isinstance(key, slice) else self.index[np.asarray(key, np.int64).reshape(-1)]
        return self._stack(rows)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        """All images at once (bounded by QIANYI_MAX_BYTES); streaming code never needs this."""
        check_bytes(int(np.prod(self.shape)) * 4, f"streamed image folder of {len(self)} images")
        a = self._stack(self.index)
        return a if dtype is None else a.astype(dtype)

    # -- views --------------------------------------------------------------------------------------
    def view(self, index: np.ndarray | Sequence[int]) -> "LazyImages":
        """The images at ``index`` (positions in this view), still unread."""
        return self._with(index=self.index[np.asarray(index, np.int64).reshape(-1)])

    def with_canvas(self, size: int, channels: int) -> "LazyImages":
        """The same files decoded at ``size`` x ``size`` with ``channels`` channels."""
        return self._with(size=size, channels=channels)

    def without_augment(self) -> "LazyImages":
        return self._with(augment=())

    def _with(self, **changes: object) -> "LazyImages":
        kw: dict = dict(files=self.files, size=self.size, grey=self.grey, channels=self.channels,
                        augment=self.augment, index=self.index, fit=self.fit, revised=self.revised)
        kw.update(changes)
        return LazyImages(**kw)

    def fingerprint(self) -> bytes:
        """What these inputs are (files with size and modification time, canvas, augmentations); a file whose
        pixels :data:`DECODE_REVISION` changed is named with it, so only folders holding one get new keys (as
        in-memory folders, keyed by their pixels)."""
        h = hashlib.sha256(repr((self.size, self.channels, self.augment)  # (fit named only when not the default,
                                + ((self.fit,) if self.fit != "pad" else ())).encode())  # as before it existed)
        for i in self.index:
            f = self.files[i]
            try:
                st = f.stat()
                rev = f"|decode{DECODE_REVISION}" if self.revised[i] else ""
                h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}{rev}\n".encode())
            except OSError:
                h.update(f"{f}|missing\n".encode())
        return h.digest()

    # -- decoding -----------------------------------------------------------------------------------
    def _decode(self, i: int) -> np.ndarray:
        from .readers import _read_image

        try:
            a, _ = _read_image(self.files[i], self.size, max_image_pixels(), self.fit)
        except DataError as exc:  # read_folder decoded every file once: this one changed since
            raise DataError(f"{exc}. It could be read when the streamed folder was loaded, so it changed since; a "
                            "run resumes from its checkpoint only over the files it started with (same size and "
                            "modification time: restore it with cp -p from a copy), any other change starts the "
                            "run afresh") from exc
        if self.channels == 1:
            return a[:1] if self.grey[i] else _grey(a)
        return a  # grey images are decoded as RGB with R = G = B

    def _stack(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.channels, self.size, self.size), np.float32)
        for j, i in enumerate(rows):
            out[j] = self._decode(int(i))
        return out

    def train_batch(self, key: np.ndarray | Sequence[int], rng: np.random.Generator) -> np.ndarray:
        """The images at positions ``key`` with this domain's training augmentations drawn from ``rng``."""
        X = self[np.asarray(key, np.int64)]
        if "crop" in self.augment:
            pad = max(1, self.size // 8)
            padded = np.pad(X, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="reflect")
            offsets = rng.integers(0, 2 * pad + 1, size=(len(X), 2))
            for j, (dy, dx) in enumerate(offsets):
                X[j] = padded[j, :, dy:dy + self.size, dx:dx + self.size]
        if "flip" in self.augment:
            flip = rng.random(len(X)) < 0.5
            X[flip] = X[flip][..., ::-1]
        return X


def is_lazy(X: object) -> bool:
    return isinstance(X, LazyImages)
