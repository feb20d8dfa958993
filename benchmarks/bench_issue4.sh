#!/usr/bin/env bash
# Issue-4 benchmark: every discrepancy / reconstruction method against source-only and the oracle,
# 3 seeds, 4 pairs, with each method's defaults. Resumable: rerun the same command after a stop and
# finished runs are reused (qianyi bench skips runs whose result.json matches method, settings and
# task sizes).
#
#   bash benchmarks/bench_issue4.sh                    # all methods, both groups
#   METHODS=dsn,drcn bash benchmarks/bench_issue4.sh   # a subset (source-only and oracle always run)
#   PART=28px bash benchmarks/bench_issue4.sh          # one group: uci | 28px | all
#
# Protocols (docs/methods.md):
#   * UCI-protocol pairs (8x8): the full issue-2 protocol (no cap, 20 epochs) in runs/bench-issue2,
#     so the issue-2 runs of source-only, ddc, dan, dann and the oracle are reused;
#   * 28x28 pairs: each domain capped at 5,000 samples (stratified), 20 epochs (the default).
# One intra-op thread per process: small batches run faster so on a shared CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${QIANYI_DATA:=../shared/data}"
export QIANYI_DATA OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
QIANYI="${QIANYI:-.venv/bin/qianyi}"
METHODS="${METHODS:-ddc,dan,dann,jan,coral,dsan,dsn,drcn}"
UCI_OUT="${UCI_OUT:-runs/bench-issue2}"
PX_OUT="${PX_OUT:-runs/bench_issue4/28px-5k}"
PART="${PART:-all}"

if [[ "$PART" == uci || "$PART" == all ]]; then
  "$QIANYI" bench --methods "$METHODS" --pairs 'mnist->digits' 'digits->mnist' --seeds 3 \
    --no-progress --out "$UCI_OUT"
fi
if [[ "$PART" == 28px || "$PART" == all ]]; then
  "$QIANYI" bench --methods "$METHODS" --pairs 'mnist->mnist-m' 'fashion->fashion+rot30' --seeds 3 \
    --max-samples 5000 --no-progress --out "$PX_OUT"
fi
