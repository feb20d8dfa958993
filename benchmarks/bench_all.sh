#!/usr/bin/env bash
# The benchmark of every method on the four bench pairs, 3 seeds, defaults, with every label-free
# validator recorded each epoch (for the validator-vs-oracle table) and the ORACLE choice of epoch.
# Resumable: rerun the same command and finished runs are reused (qianyi's run store).
#
#   bash benchmarks/bench_all.sh                         # everything (hours on 2 CPU cores)
#   METHODS=mcd,mean-teacher PAIRS=uci bash benchmarks/bench_all.sh
#   PAIRS='mnist->mnist-m' bash benchmarks/bench_all.sh  # one pair (several can run at once)
#   SEEDS=10 METHODS=dann,cdan+e bash benchmarks/bench_all.sh  # more seeds; seeds 0-2 are reused
#   METHODS=drcn SET='drcn.scheme=joint drcn.reconstruct=both drcn.trade_off=0.1' OUT=runs/bench-drcn-joint \
#       bash benchmarks/bench_all.sh                     # non-default settings (qianyi bench --set), own folder
#
# Protocols (docs/methods.md): the UCI-protocol pairs at full size; the 28x28 pairs capped at 5,000
# samples per domain (stratified); 20 epochs; 3 seeds (SEEDS); one intra-op thread per process.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${QIANYI_DATA:=../shared/data}"
export QIANYI_DATA OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# QIANYI: the qianyi command (default: .venv/bin/qianyi, which `make` sets up; else `qianyi` on PATH)
QIANYI="${QIANYI:-$( [[ -x .venv/bin/qianyi ]] && echo .venv/bin/qianyi || echo qianyi )}"
METHODS="${METHODS:-ddc,dan,dann,jan,coral,dsan,dsn,drcn,mcd,mean-teacher,adda,cdan,cdan+e,mdd}"
OUT="${OUT:-runs/bench-all}"
PAIRS="${PAIRS:-all}"
SEEDS="${SEEDS:-3}"
read -ra SETTINGS <<< "${SET:-}"
common=(--methods "$METHODS" --seeds "$SEEDS" --validators all --no-progress --threads 1)
if (( ${#SETTINGS[@]} )); then common+=(--set "${SETTINGS[@]}"); fi
run_uci() { "$QIANYI" bench "${common[@]}" --pairs 'mnist->digits' 'digits->mnist' --out "$OUT/uci"; }
run_28() { "$QIANYI" bench "${common[@]}" --pairs "$@" --max-samples 5000 --out "$OUT/28px"; }
case "$PAIRS" in
  all) run_uci; run_28 'mnist->mnist-m' 'fashion->fashion+rot30' ;;
  uci) run_uci ;;
  28px) run_28 'mnist->mnist-m' 'fashion->fashion+rot30' ;;
  *) if [[ "$PAIRS" == *digits* ]]; then "$QIANYI" bench "${common[@]}" --pairs "$PAIRS" --out "$OUT/uci"
     else run_28 "$PAIRS"; fi ;;
esac
