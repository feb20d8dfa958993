"""MMD on 20,000 x 20,000 samples of 256-d features without an n x n matrix: time and peak memory.

The quadratic (unbiased, multi-kernel) estimator works in blocks of ``--chunk`` x ``--chunk`` kernel
entries (:func:`qianyi.distances.mmd2`); a whole 20,000 x 20,000 float32 kernel matrix would take
1.6 GB per block (three blocks, five bandwidths). The linear-time estimator needs O(n) memory.
Peak memory is the process's maximum resident set size (``ru_maxrss``), printed with the baseline
before the computation.

    python benchmarks/mmd_large.py                      # 20,000 x 20,000, 256-d, float32
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

from qianyi.cli import script_main  # noqa: E402
from qianyi.distances import mk_mmd2
from qianyi.distances.mmd import DEFAULT_CHUNK


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=20_000, help="samples per domain")
    p.add_argument("--dim", type=int, default=256, help="features per sample")
    p.add_argument("--shift", type=float, default=0.05, help="mean shift of the second sample, per coordinate")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="rows per kernel block (memory against speed)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, args.dim, generator=g)
    y = torch.randn(args.n, args.dim, generator=g) + args.shift
    base = peak_mib()
    full = 3 * args.n * args.n * 4 / 2**20
    print(f"{args.n:,} x {args.n:,} samples, {args.dim}-d float32, {args.threads} thread(s); inputs "
          f"{2 * x.numel() * 4 / 2**20:.0f} MiB; baseline peak RSS {base:.0f} MiB; "
          f"three whole n x n kernel matrices would need {full:,.0f} MiB")
    for est in ("linear", "unbiased"):
        t0 = time.perf_counter()
        v = float(mk_mmd2(x, y, estimator=est, chunk_size=args.chunk))
        dt = time.perf_counter() - t0
        print(f"{est:9s} MK-MMD^2 = {v:.6f}   {dt:7.1f} s   peak RSS {peak_mib():.0f} MiB "
              f"(+{peak_mib() - base:.0f} MiB over baseline)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(script_main(main))
