#!/usr/bin/env bash
# Installs Debian's NVRTC 11.2 (bookworm, non-free) so the CUDA kernel sources can be compiled to PTX
# without a GPU. Idempotent and quiet: does nothing when libnvrtc.so.11.2 is already present.
# Usage (as root, e.g. from .ci/run):  bash scripts/ci/install-nvrtc.sh
set -euo pipefail

# (grep -q on a pipe would end the pipe early and trip pipefail, so outputs are captured first.)
has_nvrtc() { local cache; cache=$(ldconfig -p 2>/dev/null || true); [[ "$cache" == *libnvrtc.so.11.2* ]]; }
if has_nvrtc; then
    exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
    # Not fatal here: the kernel compile test skips without NVRTC, and fails with this advice under CI=true.
    echo "install-nvrtc: not root; install Debian's libnvrtc11.2 (bookworm non-free) to compile-check the CUDA kernels" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
sources=/etc/apt/sources.list.d/moe-nonfree.sources
# The component itself, not "non-free-firmware" (which Debian's default sources list).
if ! grep -rqsE '(^|[[:space:]])non-free([[:space:]]|$)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat > "$sources" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

# Quiet on success; on failure the captured output is shown.
quietly() { local out; if ! out=$("$@" 2>&1); then echo "$out" >&2; return 1; fi; }
quietly apt-get update -qq
policy=$(apt-cache policy libnvrtc11.2 2>/dev/null || true)
if [[ "$policy" != *"Candidate: "[0-9]* ]]; then
    echo "install-nvrtc: libnvrtc11.2 has no install candidate (is the non-free component reachable?)" >&2
    exit 1
fi
quietly apt-get install -y -qq --no-install-recommends libnvrtc11.2
ldconfig
has_nvrtc || { echo "install-nvrtc: libnvrtc.so.11.2 still missing after install" >&2; exit 1; }
