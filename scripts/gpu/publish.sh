#!/usr/bin/env bash
# Publishes the CUDA test/benchmark app self-contained and trimmed for linux-x64 (the device machine has no .NET),
# and packs it into .device-carry/gpu/app.tar.gz (an ignored path the device tool can carry; its limit is 64 MiB).
# Usage: bash scripts/gpu/publish.sh   (then the device command in docs/gpu.md)
set -euo pipefail
cd "$(dirname "$0")/../.."

out=.device-carry/gpu
rm -rf "$out/app"
mkdir -p "$out"
# MoeDevicePublish switches on the trimming settings in the project file (TrimMode=partial trims only the framework;
# the test assembly, xunit and our libraries stay whole because the runner finds tests by reflection). They are not
# passed as -p: here: global properties reach the netstandard2.0 source generator, which cannot be trimmed.
dotnet publish tests/MoeCompiler.Cuda.Tests/MoeCompiler.Cuda.Tests.csproj \
    -c Release -r linux-x64 --self-contained true \
    -p:MoeDevicePublish=true -p:DebugType=none \
    -o "$out/app" -v quiet -nologo
tar -C "$out" -czf "$out/app.tar.gz" app
rm -rf "$out/app"
size=$(stat -c %s "$out/app.tar.gz")
echo "packed $out/app.tar.gz ($((size / 1024 / 1024)) MiB)"
if (( size > 60 * 1024 * 1024 )); then echo "warning: over 60 MiB; the device tool carries at most 64 MiB" >&2; fi
