#!/usr/bin/env bash
# Runs test suites with a finalizer stress hook, to catch reads of a tensor's memory after the tensor became
# unreachable (a span or raw pointer does not keep a tensor alive; see Tensor.Data). Fully optimised JIT code from the
# start, because that is what ends a variable's lifetime at its last use; MALLOC_PERTURB_ makes glibc fill freed memory
# with 0x7F bytes (3.4e38 as f32) so that reading it shows.
# Usage: scripts/gc-stress.sh [dotnet test arguments, e.g. tests/MoeCompiler.Runtime.Tests]   (default: the solution)
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build scripts/gc-stress/GcStressHook.csproj -c Release -nologo -v:q -clp:ErrorsOnly -o .artifacts/gc-stress
dotnet build MoeCompiler.sln -c Release -nologo -v:q -clp:ErrorsOnly
DOTNET_STARTUP_HOOKS="$PWD/.artifacts/gc-stress/GcStressHook.dll" DOTNET_TieredCompilation=0 MALLOC_PERTURB_=127 \
  dotnet test "${@:-MoeCompiler.sln}" -c Release --no-build -nologo
