#!/usr/bin/env bash
# One device run for docs/gpu.md "Running on a device" (about 10 minutes on an H100/H200), from the repository root
# with .device-carry/gpu carried over (bash scripts/gpu/publish.sh first):
#   1. the whole CUDA device suite with CUDA required: op parity, the generated tiny variants against the CPU
#      backend (logits, routing, greedy tokens), graph decode bit-identical to eager, the device MoE layer;
#   2. `moe bench MoeLlavaQwen4e --device cuda` on full-size random bf16 weights made on the device: decode
#      tokens/s as a fraction of the HBM bandwidth limit (batch 1, CUDA graphs) and the LLM prefill of one image's
#      576 tokens + 32 text tokens as a fraction of the bf16 tensor-core peak;
#   3. PyTorch eager on the same shapes in the same run (scripts/gpu/torch_moe_bench.py).
# Everything lands in $OUT (device-tests.txt, moe-bench.txt/json, torch-moe-bench.txt, nvidia-smi.txt, summary.txt).
set -uo pipefail
here=.device-carry/gpu
out=${OUT:-$here/out}
mkdir -p "$out"
app=/tmp/moe-gpu-app
rm -rf "$app" && mkdir -p "$app" && tar -C "$app" -xzf "$here/app.tar.gz"
if [[ -z "${MOE_CUDA_LIB_DIRS:-}" ]]; then
    MOE_CUDA_LIB_DIRS=$(python3 -c '
import glob, os
dirs = []
try:
    import nvidia
    for root in nvidia.__path__: dirs += sorted(glob.glob(os.path.join(root, "*", "lib")))
except Exception: pass
try:
    import torch; dirs.append(os.path.join(os.path.dirname(torch.__file__), "lib"))
except Exception: pass
print(":".join(dirs))' 2>/dev/null || true)
    export MOE_CUDA_LIB_DIRS
fi
export MOE_CUDA_CACHE_DIR=/tmp/moe-cuda-kernels TMPDIR=${TMPDIR:-/tmp}
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
run() { timeout "$1" "${@:2}"; }

# 1. Device suite (about 2 minutes; the first kernel compile is cached for the rest).
MOE_REQUIRE_CUDA=1 run 300 "$app/app/MoeCompiler.Cuda.Tests" device-tests ${MOE_DEVICE_TEST_FILTER:+"$MOE_DEVICE_TEST_FILTER"} 2>&1 | tee "$out/device-tests.txt"
status=${PIPESTATUS[0]}

# 2. Full-size MoE-LLaVA-Qwen-1.8B×4 on random bf16 weights made here (removed afterwards).
weights=$TMPDIR/moe-qwen4e-bf16
rm -rf "$weights"
run 300 "$app/app/MoeCompiler.Cuda.Tests" moe create-weights MoeLlavaQwen4e -o "$weights" --dtype bf16 2>&1 | tee "$out/create-weights.txt"
run 180 "$app/app/MoeCompiler.Cuda.Tests" moe bench MoeLlavaQwen4e -w "$weights" --device cuda --prompt-tokens 608 --tokens 64 2>&1 | tee "$out/moe-bench.txt"
run 180 "$app/app/MoeCompiler.Cuda.Tests" moe bench MoeLlavaQwen4e -w "$weights" --device cuda --prompt-tokens 608 --tokens 64 --json > "$out/moe-bench.json" 2>&1
rm -rf "$weights"

# 3. PyTorch eager on the same shapes.
run 120 python3 scripts/gpu/torch_moe_bench.py modelspecs/moellava-qwen-4e.json --prompt 608 --tokens 64 2>&1 | tee "$out/torch-moe-bench.txt"

{
    echo "device suite exit status: $status"
    grep -E "passed|failed|skipped" "$out/device-tests.txt" | tail -3
    cat "$out/moe-bench.json"
    cat "$out/torch-moe-bench.txt"
} > "$out/summary.txt" 2>&1
exit "$status"
