#!/usr/bin/env bash
# Packs the generator (analyzer package) and the runtime libraries into a local folder feed, then builds and runs
# examples/PackageConsumer, which references only those packages and adds its own spec file: the variant it
# prints is compiled from that spec at its build time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
feed="$root/.artifacts/packages"
cache="$root/.artifacts/consumer-packages"
rm -rf "$feed" "$cache"
mkdir -p "$feed"
for p in generators/MoeCompiler.Generators src/MoeCompiler.Tokenizers src/MoeCompiler.Imaging src/MoeCompiler.Runtime; do
  dotnet pack "$p" -c Release -o "$feed" -nologo -v:q -clp:ErrorsOnly
done
cd examples/PackageConsumer
dotnet run -c Release --packages "$cache" -nologo -v:q -clp:ErrorsOnly -p:MoeFeed="$feed"
