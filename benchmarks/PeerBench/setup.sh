#!/usr/bin/env bash
# Builds PeerBench (restoring LLamaSharp, its CPU backend and TorchSharp-cpu: ~1 GB of packages, only here) into
# OUT (default .artifacts/peerbench at the repository root), then makes the libtorch peer loadable on Debian 12:
#   1. marks libLibTorchSharp.so's GLIBCXX_3.4.32 requirement weak, in OUT's copy (patch_verneed_weak.py);
#   2. compiles libios_base_library_init.so, which peer.sh preloads to supply std::ios_base_library_init().
# Never touches the NuGet cache's copy, nor anything the product builds or ships.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/.artifacts/peerbench}"
mkdir -p "$out"
dotnet build "$here/PeerBench.csproj" -c Release -nologo -v:q -clp:ErrorsOnly -o "$out/bin" >&2
native="$out/bin/runtimes/linux-x64/native"
lib="$native/libLibTorchSharp.so"
[[ -f "$lib" ]] || { echo "setup: $lib missing after the build" >&2; exit 1; }
if ! strings -a /usr/lib/x86_64-linux-gnu/libstdc++.so.6 2>/dev/null | grep -qx GLIBCXX_3.4.32; then
  # The build copies the package's library again whenever it changed; patching an already weak one is a no-op.
  /usr/bin/python3 "$here/patch_verneed_weak.py" "$lib" GLIBCXX_3.4.32 >&2
  if ! command -v g++ >/dev/null; then
    echo "setup: g++ is needed to build the preloaded shim (apt-get install g++)" >&2; exit 1
  fi
  shim="$out/libios_base_library_init.so"
  if [[ ! -f "$shim" || "$here/ios_base_library_init.cpp" -nt "$shim" ]]; then
    g++ -O2 -shared -fPIC -o "$shim" "$here/ios_base_library_init.cpp"
  fi
fi
echo "$out"
