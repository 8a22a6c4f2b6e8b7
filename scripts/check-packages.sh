#!/usr/bin/env bash
# Packs the generator (analyzer package) and the runtime libraries into a local folder feed, then builds and runs
# examples/PackageConsumer, which references only those packages and adds its own spec file: the variant it
# prints is compiled from that spec at its build time, and it runs one forward pass with the packaged tokenizer.
# The consumer restores into its own package folder (NUGET_PACKAGES), so a stale 0.1.0 in ~/.nuget/packages can
# never stand in for the packages just built. Sources: examples/PackageConsumer/nuget.config.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
feed="$root/.artifacts/packages"
cache="$root/.artifacts/consumer-packages"
consumer="$root/examples/PackageConsumer"
rm -rf "$feed" "$cache" "$consumer/bin" "$consumer/obj"
mkdir -p "$feed"
for p in generators/MoeCompiler.Generators src/MoeCompiler.Tokenizers src/MoeCompiler.Imaging src/MoeCompiler.Runtime src/MoeCompiler.Tooling; do
  dotnet pack "$p" -c Release -o "$feed" -nologo -v:q -clp:ErrorsOnly
done

cd "$consumer"
export NUGET_PACKAGES="$cache"
dotnet restore -nologo -v:q
# What the packages must hold for a consumer to work (as restored, so no unzip is needed).
require() { [ -f "$cache/$1/0.1.0/$2" ] || { echo "check-packages: package $1 lacks $2" >&2; exit 1; }; }
require moecompiler.generators analyzers/dotnet/cs/MoeCompiler.Generators.dll
require moecompiler.generators build/MoeCompiler.Generators.props
require moecompiler.tokenizers buildTransitive/MoeCompiler.Tokenizers.targets
require moecompiler.tokenizers tokenizers/gpt2-vocab.json
require moecompiler.runtime lib/net10.0/MoeCompiler.Runtime.dll
require moecompiler.tooling lib/net10.0/MoeCompiler.Tooling.dll
dotnet build -c Release --no-restore -nologo -v:q -clp:ErrorsOnly
dotnet run -c Release --no-build
