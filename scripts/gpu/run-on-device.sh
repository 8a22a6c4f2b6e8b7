#!/usr/bin/env bash
# Runs on the device machine (from the repository root, with .device-carry/gpu carried over by the device tool):
# unpacks the app published by scripts/gpu/publish.sh, runs the whole CUDA test suite with CUDA required
# (so [CudaFact] tests fail instead of skipping), the kernel benchmarks, and the PyTorch eager comparison.
# Results go to $OUT (the device tool brings that folder back); exit status is the test suite's.
# Optional: MOE_DEVICE_TEST_FILTER (substring of Class.Method), MOE_BENCH_LAYERS (default 8), MOE_BENCH_ARGS
# (extra benchmark flags, e.g. --smoke), MOE_SKIP_TORCH=1.
set -uo pipefail
here=.device-carry/gpu
out=${OUT:-$here/out}
mkdir -p "$out"
app=/tmp/moe-gpu-app
rm -rf "$app" && mkdir -p "$app" && tar -C "$app" -xzf "$here/app.tar.gz"

# cuBLAS and NVRTC from the PyTorch wheels (nvidia/*/lib), unless the caller already chose.
if [[ -z "${MOE_CUDA_LIB_DIRS:-}" ]]; then
    MOE_CUDA_LIB_DIRS=$(python3 - <<'PY' 2>/dev/null || true
import glob, os
dirs = []
try:
    import nvidia
    for root in nvidia.__path__:
        dirs += sorted(glob.glob(os.path.join(root, "*", "lib")))
except Exception:
    pass
try:
    import torch
    dirs.append(os.path.join(os.path.dirname(torch.__file__), "lib"))
except Exception:
    pass
print(":".join(dirs))
PY
)
    export MOE_CUDA_LIB_DIRS
fi
export MOE_CUDA_CACHE_DIR=/tmp/moe-cuda-kernels
echo "MOE_CUDA_LIB_DIRS=$MOE_CUDA_LIB_DIRS" | tee "$out/environment.txt"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true

MOE_REQUIRE_CUDA=1 "$app/app/MoeCompiler.Cuda.Tests" device-tests ${MOE_DEVICE_TEST_FILTER:+"$MOE_DEVICE_TEST_FILTER"} 2>&1 | tee "$out/device-tests.txt"
status=${PIPESTATUS[0]}

# shellcheck disable=SC2086 # MOE_BENCH_ARGS is a list of flags
"$app/app/MoeCompiler.Cuda.Tests" bench --layers "${MOE_BENCH_LAYERS:-8}" ${MOE_BENCH_ARGS:-} 2>&1 | tee "$out/bench.txt" || true
if [[ "${MOE_SKIP_TORCH:-0}" != 1 ]]; then
    python3 scripts/gpu/torch_bench.py --layers "${MOE_BENCH_LAYERS:-8}" 2>&1 | tee "$out/torch-bench.txt" || true
fi
exit "$status"
