"""One prepared GPU check (issue 12): the CUDA path with mixed precision, samples/s CPU vs GPU, and
whether GPU runs repeat exactly with the same seed.

    python benchmarks/gpu_check.py --out runs/gpu_check        # ~3 minutes on one GPU, needs no data files

What it runs (built-in UCI digits, so nothing has to be copied to the GPU machine):
1. ``dann`` on ``digits->digits+rot30`` (LeNet) for a fixed number of steps on CPU and on CUDA with
   amp off / bf16 / fp16: seconds, samples/s, source and target accuracy;
2. ResNet-18 (random init) at 64 px on the same pair upsampled, CUDA, amp off / bf16: samples/s;
3. reproducibility: the same CUDA run twice with ``--deterministic`` (expected: identical weights)
   and twice without it (reported, not asserted: cuDNN may pick non-deterministic kernels).
Writes ``OUT/gpu_check.json`` and prints a Markdown table.

It stays a script (not a command): it is the one prepared check for the short GPU sessions some
tasks are lent (docs/scale.md), sized to run in a few minutes with nothing copied.
"""
from __future__ import annotations

import argparse
import sys
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

import qianyi
from qianyi._io import write_text  # noqa: E402
from qianyi.cli import script_main  # noqa: E402
from qianyi.data.canvas import resize
from qianyi.train.config import TrainConfig
from qianyi.train.run import run


def _timed(method: str, task, cfg: TrainConfig, backbone=None) -> dict:
    t0 = time.perf_counter()
    res, fit = run(method, task, cfg, backbone=backbone)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    steps = fit.steps
    return {"seconds": round(fit.train_seconds, 2), "wall": round(time.perf_counter() - t0, 2),
            "samples_per_s": round(steps * 2 * cfg.batch_size / fit.train_seconds),
            "source_accuracy": res.source_accuracy, "target_accuracy": res.target_accuracy,
            "weights": torch.cat([p.detach().float().reshape(-1).cpu() for p in fit.model.parameters()])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", default="runs/gpu_check")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, report = [], {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(0)
    task = qianyi.load_task("digits", "digits+rot30")
    base = TrainConfig(epochs=1, steps_per_epoch=args.steps, batch_size=64, progress=False)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for amp in (["off"] if device == "cpu" else ["off", "bf16", "fp16"]):
            r = _timed("dann", task, replace(base, device=device, amp=amp))
            r.pop("weights")
            rows.append({"network": "lenet 8px", "device": device, "amp": amp, **r})
            print(rows[-1], flush=True)
    if torch.cuda.is_available():
        big = qianyi.data.TransferTask(*[None if d is None else d.replace(X=resize(d.X, 64).repeat(3, 1))
                                         for d in (task.source, task.source_val, task.target, task.target_test)],
                                       name="digits->digits+rot30 @64px")
        for amp in ("off", "bf16"):
            r = _timed("dann", big, replace(base, steps_per_epoch=min(args.steps, 100), device="cuda", amp=amp),
                       backbone="resnet18")
            r.pop("weights")
            rows.append({"network": "resnet18 64px", "device": "cuda", "amp": amp, **r})
            print(rows[-1], flush=True)
        repro = {}
        for det in (True, False):
            cfg = replace(base, steps_per_epoch=100, device="cuda", deterministic=det)
            a, b = _timed("dann", task, cfg), _timed("dann", task, cfg)
            repro["deterministic" if det else "default"] = {
                "identical_weights": bool(torch.equal(a["weights"], b["weights"])),
                "max_abs_diff": float((a["weights"] - b["weights"]).abs().max())}
            torch.use_deterministic_algorithms(False)
        report["reproducibility"] = repro
        print(repro, flush=True)
    report["rows"] = rows
    write_text(out / "gpu_check.json", json.dumps(report, indent=2))
    lines = ["| network | device | amp | samples/s | source acc | target acc |", "|---|---|---|---:|---:|---:|"]
    lines += [f"| {r['network']} | {r['device']} | {r['amp']} | {r['samples_per_s']} | {100 * r['source_accuracy']:.1f} | "
              f"{100 * r['target_accuracy']:.1f} |" for r in rows]
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(script_main(main))
