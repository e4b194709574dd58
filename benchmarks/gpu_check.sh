#!/usr/bin/env bash
# The GPU check of issue 8, one script for a fresh GPU machine with torch, lightning and transformers
# (no install of ours needed: the repository root goes on PYTHONPATH). About 5 minutes on an H200.
#   1. attention backends agree with a float64 reference in bf16 (and the CUDA cases of the backend tests);
#   2. training throughput, MFU and peak memory of `base` at row lengths 1024 and 8192 with each backend,
#      eager and compiled, and transformers' ModernBertForMaskedLM on the same documents; a table last.
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (PEAK_TFLOPS=989 for H100/H200 SXM bf16 dense)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu_check_out}}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
backends=sdpa,flex
python3 -c "import flash_attn" 2>/dev/null && backends=sdpa,flex,flash
status=0

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, lightning, transformers; print('torch', torch.__version__, 'lightning', lightning.__version__, 'transformers', transformers.__version__)" | tee -a "$out/gpu.txt"

python3 benchmarks/backend_agreement.py --device cuda --dtype bfloat16 --backends "$backends" 2>&1 | tee "$out/agreement.txt" || status=1
python3 -m pytest -q --noconftest -p no:cacheprovider tests/test_attention_backends.py 2>&1 | tail -3 | tee -a "$out/agreement.txt" || status=1

python3 benchmarks/train_throughput.py --accelerator gpu --models base --lengths 1024,8192 --tokens 32768 \
    --backends "$backends" --compile off,on --hf --peak-tflops "${PEAK_TFLOPS:-989}" --steps 8 --warmup 3 \
    --json "$out/throughput.json" 2>&1 | tee "$out/throughput.log" || status=1

echo; grep -E "worst relative error|passed|failed" "$out/agreement.txt"
sed -n '/^model /,$p' "$out/throughput.log"
exit $status
