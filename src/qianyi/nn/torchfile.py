"""Why a ``torch.load(..., weights_only=True)`` failed, in words, without torch's advice to load unsafely.

One helper for every torch file qianyi reads: checkpoints, ``model.pt``, ``proxy.pt``, ``--init-from``,
``translate``'s generators and ImageNet weights (re-exported by :mod:`qianyi.train.checkpoint`). It lives
here, in the lowest layer that reads torch files, so that :mod:`qianyi.nn.resnet` can use it too.
"""
from __future__ import annotations

import errno
import io
import os
import pickletools
import zipfile

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6: a zip archive
LEGACY_MAGIC = b"\x80"  # torch.save's older format: a pickle (protocol 2+) stream
TRUNCATED = "it is truncated or corrupt: a zip archive torch cannot open"
CUT_SHORT = "it ends too early (a file cut short)"
PLAIN_PICKLE = "it is a plain pickle, not a file written by torch.save: write it with torch.save(state_dict, path)"
#: ``torch.serialization.MAGIC_NUMBER``: the first pickle of torch.save's older format holds this int alone.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PICKLES = 5  # magic number, protocol, system info, the object, its storage keys; then the raw storages
_RAN_OUT = ("not enough data", "but only", "no newline found", "pickle exhausted")  # pickletools at end of data


def _zip_state(data: bytes) -> str:
    """``"broken"`` (no readable central directory, or an entry fails its CRC), ``"foreign"`` (a sound zip
    without torch.save's ``*/data.pkl``) or ``"ok"``."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()
            if z.testzip() is not None:
                return "broken"
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return "broken"
    return "ok" if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names) else "foreign"


def _first_pickle(data: bytes) -> str:
    """What the first pickle of ``data`` (which starts with a protocol 2+ header) is, read without unpickling
    it (:func:`pickletools.genops`): ``"magic"`` (torch.save's older format: :data:`LEGACY_MAGIC_NUMBER` alone),
    ``"cut"`` (it runs out before any other value, as a torch file cut within its first bytes), ``"pickle"``
    (any other pickle: ``pickle.dump``, joblib) or ``"garbage"`` (not a pickle past its first byte)."""
    magic = False
    try:
        for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
            if op.name in ("PROTO", "FRAME"):
                continue
            if op.name == "STOP":
                return "magic" if magic else "pickle"
            if not magic and type(arg) is int and arg == LEGACY_MAGIC_NUMBER:
                magic = True
                continue
            return "pickle"  # another value (stops the scan: joblib writes raw array bytes after its pickle ops)
    except ValueError as err:
        return "cut" if any(s in str(err) for s in _RAN_OUT) else "garbage"
    return "cut"  # (genops raises before its end without a STOP)


def _legacy_cut_short(data: bytes) -> bool:
    """True if the pickles at the head of an old-format torch.save file run out of data."""
    stream = io.BytesIO(data)
    for _ in range(_LEGACY_PICKLES):
        try:
            for _op in pickletools.genops(stream):
                pass
        except ValueError as err:
            return any(s in str(err) for s in _RAN_OUT)
    return False


def unreadable_reason(exc: BaseException, source: bytes | bytearray | memoryview | str | os.PathLike) -> str:
    """A short reason why ``torch.load(source, weights_only=True)`` raised ``exc``; ``source`` is the file's
    path or its bytes. A file cut short or damaged is said to be so (never "not written by torch.save")."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        try:
            with open(source, "rb") as fh:
                data = fh.read()
        except OSError as err:
            return err.strerror or str(err)
    if not data:
        return "it is empty"
    text = str(exc)
    if data[:4] == ZIP_MAGIC:
        state = _zip_state(data)
        if state == "foreign":
            return "it is a zip file, but not one written by torch.save"
        if state == "broken" or (isinstance(exc, OSError) and exc.errno == errno.EINVAL) \
                or "inline_container" in text or "archive" in text:
            return TRUNCATED
    elif data[:1] == LEGACY_MAGIC:
        first = _first_pickle(data)
        if first == "pickle":
            return PLAIN_PICKLE
        if first == "garbage":
            return "it is not a file written by torch.save"
        if first == "cut" or _legacy_cut_short(data) or isinstance(exc, EOFError) or "Ran out of input" in text \
                or "unexpected EOF" in text:
            return CUT_SHORT
    elif ZIP_MAGIC.startswith(data):  # the first bytes of a zip and nothing more
        return CUT_SHORT
    else:
        return "it is not a file written by torch.save"
    if "weights_only" in text or "Unpickl" in type(exc).__name__:
        return "it holds objects other than tensors and plain values, which are never unpickled"
    return f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else 'unreadable'}"
