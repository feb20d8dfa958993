"""Multi-process training with torchrun (gloo on CPU): equal to one process, and resumable after a kill."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import toy_task

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or shutil.which("torchrun") is None
                                and not (Path(sys.executable).parent / "torchrun").exists(),
                                reason="torch.distributed / torchrun is not available in this torch build")

#: The network trained in the equivalence test has no batch norm and no dropout: with those, each process
#: normalises / drops on its own share, which is DDP's behaviour but not one process's.
PROBE = """
import sys, torch
from qianyi.train.config import TrainConfig
from qianyi.train.run import run
from qianyi.train import distributed
from qianyi.nn.backbones import mlp
from tests.conftest import toy_task
res, fit = run("source-only", toy_task(n=512, d=6), TrainConfig(epochs=3, batch_size=32, lr=0.05, optimizer="sgd", weight_decay=5e-4,
                                                                steps_per_epoch=16, progress=False),
               backbone=lambda shape, k: mlp(shape[0], k, batch_norm=False, dropout=0.0))
if distributed.is_main():
    torch.save({"w": torch.cat([p.detach().reshape(-1) for p in fit.model.parameters()]),
                "cls": torch.tensor([r["cls"] for r in fit.history])}, sys.argv[1])
"""


def _torchrun() -> list[str]:
    exe = Path(sys.executable).parent / "torchrun"
    return [str(exe)] if exe.exists() else [shutil.which("torchrun")]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _launch(args: list[str], nproc: int) -> list[str]:
    return [*_torchrun(), "--standalone", f"--nproc-per-node={nproc}", *args]


def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    subprocess.run([sys.executable, str(script), str(one)], check=True, env=_env(), cwd=ROOT, timeout=300)
    done = subprocess.run(_launch([str(script), str(two)], 2), env=_env(), cwd=ROOT, timeout=300,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = torch.load(one, weights_only=True), torch.load(two, weights_only=True)
    assert len(a["w"]) == len(b["w"]) and not torch.equal(a["w"], torch.zeros_like(a["w"]))
    # float32 reassociation only: the averaged gradient of two 16-sample halves sums in another order than
    # one 32-sample batch (~1e-7 relative per step; 3e-8 measured on these weights after 48 steps)
    assert (a["w"] - b["w"]).abs().max() < 1e-5
    assert torch.allclose(a["cls"], b["cls"], rtol=1e-5, atol=1e-7)


def _write_npz(task, folder: Path) -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    s, t = task.source, task.target
    np.savez(folder / "s.npz", X=np.concatenate([s.X, task.source_val.X]), y=np.concatenate([s.y, task.source_val.y]))
    np.savez(folder / "t.npz", X=t.X, y=np.zeros(len(t), np.int64) if t.y is None else t.y)
    return f"npz:{folder / 's.npz'}", f"npz:{folder / 't.npz'}"


def _rank_pids(parent: int) -> dict[int, int]:
    """{rank: pid} of torchrun's worker processes (read from their environment)."""
    out: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        vars_ = dict(e.split(b"=", 1) for e in env if b"=" in e)
        if b"RANK" in vars_ and b"QIANYI_KILL_TEST" in vars_ and int(stat[1]) == parent:
            out[int(vars_[b"RANK"])] = int(proc.name)
    return out


@pytest.mark.skipif(not Path("/proc").exists(), reason="finding torchrun's workers needs /proc")
def test_torchrun_cli_resumes_after_one_process_is_killed(tmp_path):
    src, tgt = _write_npz(toy_task(n=600, d=6), tmp_path / "data")
    args = ["-m", "qianyi", "run", "dann", "--source", src, "--target", tgt, "--epochs", "40", "--batch-size", "32",
            "--no-progress", "--checkpoint-every", "2"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = subprocess.run(_launch(args + ["--out", str(whole)], 2), env=_env(), cwd=ROOT, timeout=600,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    env = {**_env(), "QIANYI_KILL_TEST": "1"}
    proc = subprocess.Popen(_launch(args + ["--out", str(killed)], 2), env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (killed / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        pids = _rank_pids(proc.pid)
        assert 1 in pids and proc.poll() is None, "the run ended before it could be interrupted"
        os.kill(pids[1], signal.SIGKILL)  # one process dies mid-run: torchrun stops the group
        assert proc.wait(timeout=120) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (killed / "result.json").exists()
    done = subprocess.run(_launch(args + ["--out", str(killed)], 2), env=_env(), cwd=ROOT, timeout=600,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = json.loads((whole / "result.json").read_text()), json.loads((killed / "result.json").read_text())
    assert b["resumed_from_step"] > 0
    assert a["target_accuracy"] == b["target_accuracy"] and a["history"] == b["history"]
    wa = torch.load(whole / "model.pt", weights_only=True)
    wb = torch.load(killed / "model.pt", weights_only=True)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_a_method_with_a_memory_of_its_own_candidates_trains_under_torchrun(tmp_path):
    # att remembers only its agreed, confident candidates: a buffer of another length in each process,
    # which must never be all-reduced (it was, and gloo aborted on the size mismatch)
    args = ["-m", "qianyi", "run", "att", "--source", "digits", "--target", "digits+rot30", "--epochs", "2",
            "--steps-per-epoch", "12", "--lr", "0.05", "--device", "cpu", "--set", "threshold=0.0",
            "--no-progress", "--out", str(tmp_path / "att")]
    proc = subprocess.run(_launch(args, 2), env=_env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "att" / "result.json").read_text())["method"] == "att"
