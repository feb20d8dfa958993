#!/usr/bin/env bash
# Issue-4 benchmark: every discrepancy / reconstruction method against source-only and the oracle,
# 3 seeds, 4 pairs, with each method's defaults. Resumable: rerun the same command after a stop and
# finished runs are reused (qianyi bench skips runs whose result.json matches).
#
#   bash benchmarks/bench_issue4.sh                 # all methods
#   METHODS=dsn,drcn bash benchmarks/bench_issue4.sh  # a subset (source-only and oracle always run)
#
# Sizes keep the whole table to a few CPU hours on a 2-core machine:
#   * UCI-protocol pairs (8x8): 20 epochs (the default), each domain capped at 3,000 samples;
#   * 28x28 pairs: each domain capped at 2,000 samples, 10 epochs.
# One intra-op thread per process: small batches run faster so on a shared CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${QIANYI_DATA:=../shared/data}"
export QIANYI_DATA OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
QIANYI="${QIANYI:-.venv/bin/qianyi}"
METHODS="${METHODS:-ddc,dan,dann,jan,coral,dsan,dsn,drcn}"
OUT="${OUT:-runs/bench_issue4}"
PART="${PART:-all}"   # uci | 28px | all

if [[ "$PART" == uci || "$PART" == all ]]; then
  "$QIANYI" bench --methods "$METHODS" --pairs 'mnist->digits' 'digits->mnist' --seeds 3 \
    --max-samples 3000 --no-progress --out "$OUT/uci"
fi
if [[ "$PART" == 28px || "$PART" == all ]]; then
  "$QIANYI" bench --methods "$METHODS" --pairs 'mnist->mnist-m' 'fashion->fashion+rot30' --seeds 3 \
    --max-samples 2000 --epochs 10 --no-progress --out "$OUT/28px"
fi
