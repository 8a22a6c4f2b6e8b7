#!/usr/bin/env bash
# Runs every test of the repository: the solution's xunit suites (generator snapshots, kernels, checkpoints,
# tokenizers, images, inference parity, CLI), the example that adds its own spec, and the package-feed example.
# Usage: ./test.sh            (default suites, well under 20 minutes on 2 cores)
#        MOE_SLOW_TESTS=1 ./test.sh   (adds the slow suites)
set -euo pipefail
cd "$(dirname "$0")"
root=$PWD
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# Prerequisites the tests need beyond the .NET SDK (idempotent; quiet when already present).
bash scripts/install-prerequisites.sh

results="$root/.artifacts/test-results"
rm -rf "$results"
mkdir -p "$results"

status=0
dotnet build MoeCompiler.sln -c Release -nologo -v:q -clp:ErrorsOnly || exit 1
dotnet test MoeCompiler.sln -c Release --no-build -nologo -v:q \
  --logger "trx;LogFilePrefix=run" --results-directory "$results" || status=1

# The used-by case, twice: examples/CustomVariant adds its own spec through a project reference to the generator
# (its program fails if the generated counts disagree with its manifest), and examples/PackageConsumer gets its
# variant through the NuGet packages only.
dotnet run --project examples/CustomVariant -c Release --no-build || status=1
bash scripts/check-packages.sh || status=1

# One closing line for the whole run, summed over every test project's TRX file.
python_free_sum() {
  local passed=0 failed=0 skipped=0 p f s
  for trx in "$results"/*.trx; do
    [ -f "$trx" ] || continue
    p=$(grep -o 'passed="[0-9]*"' "$trx" | head -1 | grep -o '[0-9]*' || echo 0)
    f=$(grep -o 'failed="[0-9]*"' "$trx" | head -1 | grep -o '[0-9]*' || echo 0)
    s=$(grep -o 'notExecuted="[0-9]*"' "$trx" | head -1 | grep -o '[0-9]*' || echo 0)
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  done
  echo "Tests: $passed passed, $failed failed, $skipped skipped"
  [ "$passed" -gt 0 ] || return 1
}
python_free_sum || status=1
exit $status
