"""One reason for an unreadable torch file (nn/torchfile.py), whoever reads it: a file cut short is said to be so."""
from __future__ import annotations

import errno
import io
import zipfile

import pytest
import torch

from qianyi.errors import CheckpointError, DataError
from qianyi.nn import resnet as resnet_module
from qianyi.train import checkpoint
from qianyi.train.checkpoint import load_checkpoint, save_checkpoint, unreadable_reason

TRUNCATED = "it is truncated or corrupt: a zip archive torch cannot open"
CUT_SHORT = "it ends too early (a file cut short)"
PLAIN = "it is a plain pickle, not a file written by torch.save: write it with torch.save(state_dict, path)"


def _saved(legacy: bool = False) -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.randn(40, 20), "b": torch.zeros(3), "note": "x", "n": 3}, buf,
               _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _reason(data: bytes, path) -> tuple[str, str, BaseException]:
    """The reason given for ``data`` read from memory and from ``path`` (both must fail)."""
    path.write_bytes(data)
    with pytest.raises(Exception) as from_bytes:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    with pytest.raises(Exception) as from_path:
        torch.load(path, map_location="cpu", weights_only=True)
    return unreadable_reason(from_bytes.value, data), unreadable_reason(from_path.value, path), from_path.value


def test_one_helper_for_checkpoints_and_weights():
    from qianyi.nn import torchfile

    assert checkpoint.unreadable_reason is torchfile.unreadable_reason
    assert resnet_module.unreadable_reason is unreadable_reason
    assert not hasattr(resnet_module, "_unsafe_reason")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_every_cut_of_a_torch_file_is_called_truncated(tmp_path, legacy):
    data = _saved(legacy)
    cuts = sorted(set(range(1, len(data), max(1, len(data) // 150))) | {1, 2, 3, 4, 5, len(data) - 1})
    seen_einval = False
    for n in cuts:
        a, b, exc = _reason(data[:n], tmp_path / "cut.pt")
        assert a == b, n
        if legacy or n < 4:
            assert a == CUT_SHORT, (n, a)
        else:
            assert a == TRUNCATED, (n, a)
        seen_einval |= isinstance(exc, OSError) and exc.errno == errno.EINVAL
    if not legacy:  # torch.load(path) of a zip cut past its first 4 KiB raises OSError errno 22 (EINVAL)
        assert seen_einval


def test_other_unreadable_files_keep_their_reasons(tmp_path):
    assert unreadable_reason(ValueError(), b"") == "it is empty"
    assert unreadable_reason(ValueError(), b"hello") == "it is not a file written by torch.save"
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("hello.txt", "hi")
    a, b, _ = _reason(plain.getvalue(), tmp_path / "plain.zip")
    assert a == b == "it is a zip file, but not one written by torch.save"
    for legacy in (False, True):
        buf = io.BytesIO()
        torch.save({"a": Exception("an object")}, buf, _use_new_zipfile_serialization=not legacy)
        a, b, _ = _reason(buf.getvalue(), tmp_path / "obj.pt")
        assert a == b == "it holds objects other than tensors and plain values, which are never unpickled"
    assert unreadable_reason(ValueError(), tmp_path / "missing.pt") == "No such file or directory"


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_whole_plain_pickle_is_not_called_cut_short(tmp_path, protocol):
    """pickle.dump(state_dict) holds one pickle, not torch's legacy five: it is a pickle, not a torch.save file."""
    import collections
    import pickle

    for obj in (torch.nn.Linear(3, 3).state_dict(), [1, 2], collections.OrderedDict(a=1), {"w": 2 ** 80}):
        a, b, _ = _reason(pickle.dumps(obj, protocol=protocol), tmp_path / "w.pkl")
        assert a == b == PLAIN, (obj, a)


def test_a_joblib_file_is_a_plain_pickle(tmp_path):
    """joblib writes raw array bytes after its pickle ops: the scan stops at the first value, before them."""
    joblib = pytest.importorskip("joblib")
    import numpy as np

    joblib.dump({"w": np.arange(1000.0), "b": np.zeros((3, 4), np.float32)}, tmp_path / "model.joblib")
    data = (tmp_path / "model.joblib").read_bytes()
    a, b, _ = _reason(data, tmp_path / "copy.joblib")
    assert a == b == PLAIN


def test_a_legacy_file_starts_with_the_magic_number(tmp_path):
    """The first pickle of torch.save's older format is its magic number alone, at any pickle protocol."""
    from qianyi.nn import torchfile

    assert torchfile.LEGACY_MAGIC_NUMBER == torch.serialization.MAGIC_NUMBER
    for protocol in (2, 4):
        buf = io.BytesIO()
        torch.save({"a": Exception("x")}, buf, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
        a, b, _ = _reason(buf.getvalue(), tmp_path / "obj.pt")
        assert a == b == "it holds objects other than tensors and plain values, which are never unpickled"
        a, b, _ = _reason(buf.getvalue()[: len(buf.getvalue()) // 2], tmp_path / "cut.pt")
        assert a == b == CUT_SHORT
    assert unreadable_reason(ValueError(), b"\x80\x02\xff\xfe") == "it is not a file written by torch.save"


def test_a_half_written_checkpoint_is_called_truncated(tmp_path):
    path = save_checkpoint(tmp_path / "checkpoint.pt", {"model": {"w": torch.randn(64, 64)}, "step": 3})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(path)
    assert "not one written by torch.save" not in str(info.value)


def test_cut_imagenet_weights_give_the_same_reason(tmp_path):
    (tmp_path / "cut.pth").write_bytes(_saved()[:3000])
    with pytest.raises(DataError, match="cut.pth.*truncated or corrupt: a zip archive torch cannot open"):
        resnet_module.read_weights(tmp_path / "cut.pth")
