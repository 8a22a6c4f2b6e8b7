#!/usr/bin/env bash
# Installs what the test suites need beyond the .NET SDK. Idempotent and quiet when everything is present.
# - libnvrtc11.2 (Debian non-free): compiles every CUDA kernel source to PTX so a syntax error fails CI,
#   on machines without a GPU.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -f "$here/ci/install-nvrtc.sh" ]; then
  bash "$here/ci/install-nvrtc.sh"
fi
