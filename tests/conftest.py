from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import qianyi
from qianyi.data.domain import Domain, TransferTask

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("QIANYI_DATA", ROOT.parent / "shared" / "data"))
if "QIANYI_DATA" not in os.environ and DATA.is_dir():
    # the library reads $QIANYI_DATA only: a test the default folder does not skip must find the data too
    os.environ["QIANYI_DATA"] = str(DATA)


@pytest.fixture(autouse=True)
def _threads():
    # tiny batches: one thread is faster, and far faster when the machine is shared
    torch.set_num_threads(1)
    yield


def requires_data(sub: str):
    """Skip unless the data directory (QIANYI_DATA, CI: ../shared/data) holds ``sub``."""
    return pytest.mark.skipif(not (DATA / sub).exists(),
                              reason=f"data folder {DATA / sub} absent; set QIANYI_DATA to the shared data directory")


def toy_task(n: int = 240, d: int = 6, shift: float = 1.0, seed: int = 0, classes: int = 3) -> TransferTask:
    """Gaussian blobs; the target is the source moved by ``shift``."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (classes, d))
    ys = rng.integers(0, classes, n)
    yt = rng.integers(0, classes, n)
    Xs = centers[ys] + rng.normal(0, 1, (n, d))
    Xt = centers[yt] + rng.normal(0, 1, (n, d)) + shift
    return TransferTask.from_domains(Domain(Xs, ys, "toy-s"), Domain(Xt, yt, "toy-t"))


@pytest.fixture(scope="session")
def digits_task() -> TransferTask:
    """Real UCI digits (scikit-learn, always available) -> the same digits rotated, disjoint halves."""
    return qianyi.load_task("digits", "digits+rot30")
