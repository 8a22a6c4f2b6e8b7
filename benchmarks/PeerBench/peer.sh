#!/usr/bin/env bash
# Runs PeerBench from the output of setup.sh (PEERBENCH_OUT, default .artifacts/peerbench): libtorch's native
# folder first on the library path (so Debian's own libtorch 1.13, if installed, is never picked up instead) and
# the std::ios_base_library_init() shim preloaded when setup built one. ModelBench starts its peers through this.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${PEERBENCH_OUT:-$(cd "$here/../.." && pwd)/.artifacts/peerbench}"
[[ -f "$out/bin/PeerBench.dll" ]] || { echo "peer.sh: $out/bin/PeerBench.dll missing: run benchmarks/PeerBench/setup.sh first" >&2; exit 2; }
export LD_LIBRARY_PATH="$out/bin/runtimes/linux-x64/native${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [[ -f "$out/libios_base_library_init.so" ]]; then
  export LD_PRELOAD="$out/libios_base_library_init.so${LD_PRELOAD:+:$LD_PRELOAD}"
fi
exec dotnet "$out/bin/PeerBench.dll" "$@"
