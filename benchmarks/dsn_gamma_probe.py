"""Label-free DSN probe: for one pair and similarity weight gamma, train DSN (seed 0; 28x28 pairs capped at
5,000 per domain as in the bench) and print the discriminator BCE every 4 epochs (0.693 = at chance), DEV
and source-validation accuracy. No target label is read.

    QIANYI_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/dsn_gamma_probe.py 'fashion->fashion+rot30' 1.0
"""
import json, sys
import qianyi
from qianyi.bench import parse_pair
from qianyi.select import dev_details
from qianyi.train import TrainConfig, Trainer, accuracy
pair, gamma = sys.argv[1], float(sys.argv[2])
task = qianyi.load_task(*parse_pair(pair), max_samples=5000)
fit = Trainer(qianyi.get_method("dsn", trade_off=gamma), TrainConfig(seed=0, progress=False)).fit(task)
h = fit.history
print(json.dumps({"pair": pair, "gamma": gamma, "similarity_bce": [round(e["similarity"], 3) for e in h[::4]] + [round(h[-1]["similarity"], 3)],
                  **dev_details(fit.model, task.source, task.source_val, task.target),
                  "source_val_acc": accuracy(fit.model, task.source_val)}), flush=True)
