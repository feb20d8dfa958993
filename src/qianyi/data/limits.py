"""Size limits for reading user files: declared sizes are checked against them before anything is allocated.

* ``QIANYI_MAX_BYTES`` (default 4 GiB): the most memory one array may take once loaded (as
  float32: a uint8 image file counts four times its size), and the most bytes one decompressed
  file or one table may take. A number of bytes, optionally with a binary suffix: ``500M``, ``16G``.
* ``QIANYI_MAX_IMAGE_PIXELS`` (default 100,000,000): the most pixels (width x height) one image
  file may declare.

Both are read at each call, so a change to the environment takes effect at once.
"""
from __future__ import annotations

import os

from ..errors import DataError

DEFAULT_MAX_BYTES = 4 << 30
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
_SUFFIXES = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _env_int(var: str, default: int) -> int:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    text = raw.upper().removesuffix("B").replace("_", "")
    scale = _SUFFIXES.get(text[-1:], 1)
    try:
        value = int(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        value = 0
    if value <= 0:
        raise DataError(f"environment variable {var}={raw!r} is not a positive whole number; "
                        f"set it to e.g. {default} (suffixes K, M, G, T are allowed) or unset it")
    return value


def max_bytes() -> int:
    """The most bytes one loaded array or decompressed file may take (``QIANYI_MAX_BYTES``, default 4 GiB)."""
    return _env_int("QIANYI_MAX_BYTES", DEFAULT_MAX_BYTES)


def max_image_pixels() -> int:
    """The most pixels one image may declare (``QIANYI_MAX_IMAGE_PIXELS``, default 100,000,000)."""
    return _env_int("QIANYI_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)


def check_bytes(nbytes: int, what: str, shape: tuple[int, ...] | list[int] | None = None) -> None:
    """Raise :class:`DataError` if ``what`` (naming the file) declares more than :func:`max_bytes`."""
    limit = max_bytes()
    if nbytes > limit:
        dims = f" (shape {tuple(shape)})" if shape is not None else ""
        raise DataError(f"{what} declares {nbytes:,} bytes once loaded{dims}, more than the limit of {limit:,} bytes "
                        "(QIANYI_MAX_BYTES); the file is corrupt or hostile, or, if it is genuine, "
                        "raise QIANYI_MAX_BYTES (e.g. QIANYI_MAX_BYTES=16G) if this machine has the memory")


def check_memory(nbytes: int, what: str, advice: str) -> None:
    """Raise :class:`DataError` before work whose arrays would take more than :func:`max_bytes`: ``what`` holds
    about ``nbytes``; ``advice`` says how to ask for less."""
    limit = max_bytes()
    if nbytes > limit:
        raise DataError(f"{what}, about {nbytes / 2 ** 30:.1f} GiB, more than the limit of {limit / 2 ** 30:.1f} GiB "
                        f"(QIANYI_MAX_BYTES); {advice}")
