"""Label-free DSN probe: train DSN with similarity weight GAMMA on one pair (seed 0) and print the
discriminator's BCE every 4 epochs (0.693 = at chance: the shared codes are domain-confused), DEV and
source-validation accuracy. No target label is read.

    QIANYI_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/dsn_gamma_probe.py 'fashion->fashion+rot30' 1.0
"""
from __future__ import annotations

import argparse
import json

import qianyi
from qianyi.bench import parse_pair
from qianyi.select import dev_details
from qianyi.train import TrainConfig, Trainer, accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pair")
    ap.add_argument("gamma", type=float)
    ap.add_argument("--max-samples", type=int, default=5000, help="per domain, as in the 28x28 bench (0: no cap)")
    args = ap.parse_args()
    task = qianyi.load_task(*parse_pair(args.pair), max_samples=args.max_samples or None)
    fit = Trainer(qianyi.get_method("dsn", trade_off=args.gamma), TrainConfig(seed=0, progress=False)).fit(task)
    bce = [round(e["similarity"], 3) for e in fit.history[::4]] + [round(fit.history[-1]["similarity"], 3)]
    print(json.dumps({"pair": args.pair, "gamma": args.gamma, "similarity_bce": bce,
                      **dev_details(fit.model, task.source, task.source_val, task.target),
                      "source_val_acc": accuracy(fit.model, task.source_val)}), flush=True)


if __name__ == "__main__":
    main()
