#!/usr/bin/env bash
# The GPU measurements of the speed work, in one go (about 10 minutes on one H100/H200):
#   bash benchmarks/gpu_all.sh DATA OUT
# DATA: a folder holding cifar-10-batches-py; OUT: where results go (JSON and logs).
# 1. time to 94%: the fast recipe against fast-muon and fast-cpu (the 2-core CPU recipe,
#    which must stay correct on a GPU), 5 seeds each, seed by seed;
# 2. the peer: airbench94 (pip airbench==0.1.8, train94) beside cifarlab's fast recipe;
# 3. the whole study on one GPU with 4 jobs and CUDA graphs, against 1 job, eager.
set -euo pipefail
DATA=${1:?usage: gpu_all.sh DATA OUT}
OUT=${2:?usage: gpu_all.sh DATA OUT}
mkdir -p "$OUT"
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
"$PY" "$HERE/time_to_94.py" --data-dir "$DATA" --compare fast,fast-muon,fast-cpu --seeds 5 --json "$OUT/compare.json" \
    2>&1 | tee "$OUT/compare.log"
"$PY" "$HERE/peer_airbench.py" --data-dir "$DATA" --seeds 5 2>&1 | tee "$OUT/peer.log"
for jobs in 4 1; do
    mode=$([ "$jobs" = 4 ] && echo reduce-overhead || echo none)
    start=$(date +%s.%N)
    "$PY" -m cifarlab study --data-dir "$DATA" --out "$OUT/study-jobs$jobs" --jobs "$jobs" \
        --compile "$mode" --quiet > "$OUT/study-jobs$jobs.log" 2>&1
    echo "study --jobs $jobs --compile $mode: $(echo "$(date +%s.%N) - $start" | bc) s" \
        | tee -a "$OUT/study-times.txt"
done
