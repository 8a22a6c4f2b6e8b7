#!/usr/bin/env bash
# Installs what the test suites need beyond the .NET SDK. Idempotent and quiet when everything is present.
# - tmux: the CLI test drives `moe chat` in a real pseudo-terminal.
# - chromium: the serving tests load `moe serve`'s chat page in headless chromium (DevTools protocol).
# - libnvrtc11.2 (Debian non-free): compiles every CUDA kernel source to PTX so a syntax error fails CI,
#   on machines without a GPU (scripts/ci/install-nvrtc.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
missing=()
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "install-prerequisites: please install: ${missing[*]}" >&2
  fi
fi
if [ -f "$here/ci/install-nvrtc.sh" ]; then
  bash "$here/ci/install-nvrtc.sh"
fi
