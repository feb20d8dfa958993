"""Memory and noise of bench and select outside training: one pair's task held at a time, no PyTorch warnings."""
from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import requires_data


@pytest.mark.parametrize("pair", [("digits", "digits+rot30"), ("digits", "digits+blur1.5"),
                                  pytest.param(("mnist", "mnist+rot30"), marks=requires_data("mnist"))])
def test_a_rotated_or_blurred_builtin_loads_without_pytorchs_not_writable_warning(pair):
    # rotate() and blur() handed the read-only cached array to torch.from_numpy: "The given NumPy array is not writable" once
    # per bench (PyTorch says it once per process: a fresh one here)
    code = ("import warnings, numpy as np; warnings.simplefilter('always')\n"
            "from qianyi.data.tasks import load_task\n"
            f"t = load_task({pair[0]!r}, {pair[1]!r}, max_samples=200)\n"
            "print(float(np.asarray(t.target.X).sum()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "not writable" not in done.stderr
    assert float(done.stdout.split()[-1]) > 0  # the images were rotated, not lost
