#!/usr/bin/env bash
# The serving load test with more clients than ./test.sh uses, printing one markdown table row per setting
# (for docs/serving.md). Loopback only; bounded by the test's caps (32 clients, 8 requests each, 64 tokens).
# Usage: scripts/load-test.sh [CLIENTS...]          e.g. scripts/load-test.sh 1 2 4 8
# Env:   MOE_LOAD_REQUESTS (per client, default 2), MOE_LOAD_TOKENS (default 16)
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build tests/MoeCompiler.Serving.Tests -c Release -nologo -v:q -clp:ErrorsOnly
report=$(mktemp)
trap 'rm -f "$report"' EXIT
for clients in "${@:-1 2 4 8}"; do
  MOE_LOAD_CLIENTS=$clients MOE_LOAD_REPORT=$report dotnet test tests/MoeCompiler.Serving.Tests -c Release --no-build -nologo -v:q \
    --filter "FullyQualifiedName~LoadTests" >/dev/null
done
echo "| variant | clients × requests | max tokens | requests/s | generated tokens/s | p50 ms | p95 ms | alone, ms per request | errors |"
echo "|---|---|---|---|---|---|---|---|---|"
cat "$report"
