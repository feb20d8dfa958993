"""DA training throughput as a ratio to plain source+target training, same batches, same run.

The baseline forwards the same source+target mini-batches through the same network but adds no
DA term (cross-entropy only), so each ratio is the cost of the method's own terms and modules.
Methods are timed in interleaved rounds and the median per method is reported, because these
machines are noisy.

    python benchmarks/throughput.py --pair 'mnist->digits' --steps 300 --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import qianyi
from qianyi._io import write_json, write_text
from qianyi.bench import parse_pair
from qianyi.methods import Batch, Method
from qianyi.train import TrainConfig, Trainer


class SourceTargetCE(Method):
    """Baseline: forwards source and target together, minimises source cross-entropy only."""

    name = "source+target (no DA)"

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"cls": self.source_ce(batch)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", default="mnist->digits")
    ap.add_argument("--methods", default="ddc,dan,dann")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--out", default="runs/throughput")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    task = qianyi.load_task(*parse_pair(args.pair))
    names = ["baseline"] + args.methods.split(",")
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for n in names:
            method = SourceTargetCE() if n == "baseline" else qianyi.get_method(n)
            cfg = TrainConfig(epochs=1, steps_per_epoch=args.steps, batch_size=args.batch_size, progress=False,
                              device=args.device, seed=r)
            t0 = time.perf_counter()
            fit = Trainer(method, cfg).fit(task)
            times[n].append(fit.train_seconds)  # training steps only (includes one source-val pass)
            print(f"round {r} {n:10s} {fit.train_seconds:.2f}s (wall {time.perf_counter() - t0:.2f}s)", flush=True)
    samples = args.steps * 2 * args.batch_size
    base = statistics.median(times["baseline"])
    rows = []
    for n in names:
        med = statistics.median(times[n])
        rows.append({"method": n, "median_seconds": round(med, 3), "samples_per_s": round(samples / med),
                     "throughput_ratio": round(base / med, 3)})
    device = str(qianyi.train.resolve_device(args.device))
    lines = [f"Throughput on {args.pair}, {args.steps} steps of {args.batch_size}+{args.batch_size} samples, "
             f"median of {args.rounds} interleaved rounds, device {device}, torch threads "
             f"{torch.get_num_threads()}.", "",
             "| method | median s | samples/s | throughput vs. no-DA baseline |", "|---|---:|---:|---:|"]
    for row in rows:
        label = "source+target, no DA terms (baseline)" if row["method"] == "baseline" else row["method"]
        lines.append(f"| {label} | {row['median_seconds']:.2f} | {row['samples_per_s']} | {row['throughput_ratio']:.2f} |")
    text = "\n".join(lines)
    out = Path(args.out)
    write_text(out / "throughput.md", text + "\n")
    write_json(out / "throughput.json", {"pair": args.pair, "steps": args.steps, "rounds": args.rounds,
                                         "device": device, "rows": rows, "raw_seconds": times})
    print(text)


if __name__ == "__main__":
    main()
