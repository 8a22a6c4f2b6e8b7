#!/usr/bin/env bash
# One device run for docs/gpu.md "Running on a device" (about 10 minutes on an H100/H200), from the repository root
# with .device-carry/gpu carried over (bash scripts/gpu/publish.sh first):
#   1. the whole CUDA device suite with CUDA required: op parity, the generated tiny variants against the CPU
#      backend (logits, routing, greedy tokens), graph decode bit-identical to eager, the device MoE layer;
#   2. `moe bench MoeLlavaQwen4e --device cuda` on full-size random bf16 weights made on the device: decode
#      tokens/s as a fraction of the HBM bandwidth limit (batch 1, CUDA graphs) and the LLM prefill of one image's
#      576 tokens + 32 text tokens as a fraction of the bf16 tensor-core peak;
#   3. PyTorch eager on the same shapes in the same run (scripts/gpu/torch_moe_bench.py).
# Everything lands in $OUT (device-tests.txt, moe-bench.txt/json, torch-moe-bench.txt/json, nvidia-smi.txt, summary.txt).
#
# --dry-run: every part on this machine without a GPU, to check the script, the published app and the PyTorch
# script before spending device time: the CUDA emulator (bash scripts/gpu/emulator/build.sh first) instead of the
# driver, the device tests narrowed to MOE_DEVICE_TEST_FILTER (default "Binding"), TinyQwenMoe instead of
# MoeLlavaQwen4e with a 24-token prompt and 4 decode tokens, and PyTorch on the CPU (/usr/bin/python3 works).
set -uo pipefail
dry_run=0
[[ "${1:-}" == "--dry-run" ]] && dry_run=1
here=.device-carry/gpu
out=${OUT:-$here/out}
if (( dry_run )); then
    export MOE_CUDA_LIB_DIRS=${MOE_CUDA_LIB_DIRS:-$PWD/.device-carry/emulator}
    MOE_DEVICE_TEST_FILTER=${MOE_DEVICE_TEST_FILTER:-Binding}
    variant=TinyQwenMoe spec=modelspecs/tiny-qwen-moe.json prompt=24 tokens=4 torch_device=cpu
    # Debian's python3-torch (CPU) when the python3 on PATH has no torch.
    [[ -x /usr/bin/python3 ]] && PYTHON=${PYTHON:-/usr/bin/python3}
else
    variant=MoeLlavaQwen4e spec=modelspecs/moellava-qwen-4e.json prompt=608 tokens=64 torch_device=cuda
fi
[[ -f "$here/app.tar.gz" ]] || { echo "no $here/app.tar.gz: run bash scripts/gpu/publish.sh on the build machine and carry $here" >&2; exit 2; }
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
weights=$TMPDIR/moe-$variant-bf16
rm -rf "$weights"
run 300 "$app/app/MoeCompiler.Cuda.Tests" moe create-weights $variant -o "$weights" --dtype bf16 2>&1 | tee "$out/create-weights.txt"
run 180 "$app/app/MoeCompiler.Cuda.Tests" moe bench $variant -w "$weights" --device cuda --prompt-tokens $prompt --tokens $tokens 2>&1 | tee "$out/moe-bench.txt"
run 180 "$app/app/MoeCompiler.Cuda.Tests" moe bench $variant -w "$weights" --device cuda --prompt-tokens $prompt --tokens $tokens --json > "$out/moe-bench.json" 2>&1
rm -rf "$weights"

# 3. PyTorch eager on the same shapes (its last line is JSON).
run 120 "${PYTHON:-python3}" scripts/gpu/torch_moe_bench.py $spec --prompt $prompt --tokens $tokens --device $torch_device 2>&1 | tee "$out/torch-moe-bench.txt"
tail -1 "$out/torch-moe-bench.txt" > "$out/torch-moe-bench.json"

# 4. The table: ours against the limits and against PyTorch (targets: decode ≥ 60 % of HBM, ≥ 3× PyTorch).
{
    echo "device suite exit status: $status"
    grep -E "passed|failed|skipped" "$out/device-tests.txt" | tail -3
    python3 - "$out/moe-bench.json" "$out/torch-moe-bench.json" <<'PY'
import json, sys
def load(path):
    try: return json.load(open(path))
    except Exception as e: return {"error": f"{path}: {e}"}
ours, torch = load(sys.argv[1]), load(sys.argv[2])
def pct(v): return "unknown" if v is None else f"{100 * v:.1f} %"
def ratio(a, b): return f"{a / b:.2f}x" if a and b else "n/a"
if "error" in ours: print("moe bench:", ours["error"])
else:
    print(f"moe bench {ours['variant']} on {ours['device']}: {ours['promptTokens']} prompt tokens, {ours['decodeSteps']} decode steps")
    print(f"  decode  {ours['decodeTokensPerSecond']:.1f} tokens/s = {pct(ours['decodeFractionOfLimit'])} of the HBM limit "
          f"({ours['idealDecodeTokensPerSecond'] or float('nan'):.1f} tokens/s at {ours['readGBps']} GB/s; target >= 60 %)")
    print(f"  prefill {ours['prefillTokensPerSecond']:.1f} tokens/s, {ours['prefillGflops']:.0f} GFLOP/s = {pct(ours['prefillFractionOfPeak'])} of the bf16 peak ({ours['fmaGflops']} GFLOP/s)")
if "error" in torch: print("pytorch:", torch["error"])
else:
    print(f"pytorch {torch['torch']} eager on {torch['device']}: decode {torch['decodeTokensPerSecond']:.1f} tokens/s, prefill {torch['prefillTokensPerSecond']:.1f} tokens/s")
    if "error" not in ours:
        print(f"  ours / pytorch: decode {ratio(ours['decodeTokensPerSecond'], torch['decodeTokensPerSecond'])} (target >= 3x), "
              f"prefill {ratio(ours['prefillTokensPerSecond'], torch['prefillTokensPerSecond'])}")
PY
} > "$out/summary.txt" 2>&1
cat "$out/summary.txt"
exit "$status"
