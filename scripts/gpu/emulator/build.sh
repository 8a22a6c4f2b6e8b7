#!/usr/bin/env bash
# Builds a CPU emulation of libcuda.so.1 + libcublas.so.12 that runs the project's .cu kernels unchanged (as
# C++ with emu.h), so the whole CUDA backend and its [CudaFact] tests can be exercised on a machine without a GPU:
#   bash scripts/gpu/emulator/build.sh
#   MOE_CUDA_LIB_DIRS=$PWD/.device-carry/emulator dotnet test tests/MoeCompiler.Cuda.Tests
# It checks host code (arguments, shapes, allocator, graph capture semantics) and kernel logic, not GPU timing,
# memory-model subtleties or PTX; NVRTC still compiles the sources but the images are ignored.
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=.device-carry/emulator
mkdir -p "$out/src"
kernels=src/MoeCompiler.Cuda/Kernels
/usr/bin/python3 - "$kernels" "$out/src" <<'PY'
import os, re, sys
kernels, out = sys.argv[1], sys.argv[2]
common = open(os.path.join(kernels, "common.cuh")).read()
common = common.replace('asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v));', 'f = emu_h2f(v);')
common = common.replace('asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));', 'h = emu_f2h(f);')
assert "asm(" not in common, "unhandled inline PTX in common.cuh"
for name in sorted(os.listdir(kernels)):
    if not name.endswith(".cu"):
        continue
    text = open(os.path.join(kernels, name)).read()
    text = text.replace("extern __shared__ float shared[];", "float* shared = emu_dynamic_shared();")
    names = re.findall(r'extern "C" __global__ void (\w+)\(', text)
    names = [n for n in names if n != "NAME"]
    names += re.findall(r'^\w+_KERNEL\((\w+),', text, re.M)
    with open(os.path.join(out, name + ".cpp"), "w") as f:
        f.write('#include "emu.h"\n' + common + "\n" + text + "\n")
        for k in names:
            f.write(f"EMU_REGISTER({k})\n")
PY
flags="-std=c++20 -O2 -fPIC -w -U_FORTIFY_SOURCE -I scripts/gpu/emulator"
objs=()
for f in "$out"/src/*.cpp; do
    g++ $flags -c "$f" -o "${f%.cpp}.o"
    objs+=("${f%.cpp}.o")
done
g++ $flags -shared -o "$out/libcuda.so.1" scripts/gpu/emulator/emu.cpp "${objs[@]}" -Wl,-soname,libcuda.so.1
ln -sf libcuda.so.1 "$out/libcublas.so.12"
echo "built $out/libcuda.so.1 (also libcublas.so.12); use MOE_CUDA_LIB_DIRS=$PWD/$out"
