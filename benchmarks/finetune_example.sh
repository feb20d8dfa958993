#!/usr/bin/env bash
# The fine-tuning example of docs/methods.md: a source-only model, then DANN started from it with
# each fine-tuning strategy (mnist -> digits, UCI protocol, each domain capped at 3,000 samples).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${QIANYI_DATA:=../shared/data}"
export QIANYI_DATA OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# QIANYI: the qianyi command (default: .venv/bin/qianyi, which `make` sets up; else `qianyi` on PATH)
Q="${QIANYI:-$( [[ -x .venv/bin/qianyi ]] && echo .venv/bin/qianyi || echo qianyi )}"
OUT="${OUT:-runs/finetune}"
COMMON=(--source mnist --target digits --max-samples 3000 --no-progress)
"$Q" run source-only "${COMMON[@]}" --out "$OUT/src"
"$Q" run dann "${COMMON[@]}" --out "$OUT/dann-scratch"
"$Q" run dann "${COMMON[@]}" --out "$OUT/dann-freeze2" --init-from "$OUT/src/model.pt" --freeze 2
"$Q" run dann "${COMMON[@]}" --out "$OUT/dann-lr0.1" --init-from "$OUT/src/model.pt" --copied-lr-mult 0.1
"$Q" run dann "${COMMON[@]}" --out "$OUT/dann-l2sp" --init-from "$OUT/src/model.pt" --l2sp 0.01
