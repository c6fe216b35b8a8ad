#!/usr/bin/env bash
# install-deps.sh — install the Debian packages peftc builds and tests with (idempotent; needs root or sudo).
#   scripts/install-deps.sh            build + test dependencies
#   scripts/install-deps.sh --goldens  also python3-torch, to regenerate tests/golden with gen_goldens.py
#   scripts/install-deps.sh --bench    also python3-torch and OpenBLAS, for the side-by-side PyTorch benchmark
set -euo pipefail

packages=(build-essential cmake pkg-config libcjson-dev libdnnl-dev libpcre2-dev libutf8proc-dev nodejs npm python3
          clang libclang-rt-14-dev)
for arg in "$@"; do
    case "$arg" in
    --goldens) packages+=(python3 python3-torch python3-numpy) ;;
    --bench) packages+=(python3 python3-torch python3-numpy libopenblas0-pthread) ;; # a fair PyTorch baseline
    *) echo "install-deps.sh: unknown option '$arg'" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm and python3 (some test scripts edit fixture files with it) may come from outside Debian (nvm,
# pyenv, the machine image): accept any working ones.
provided() {
    case "$1" in
    nodejs) command -v node >/dev/null ;;
    npm | python3) command -v "$1" >/dev/null ;;
    *) return 1 ;;
    esac
}
want=()
for p in "${missing[@]}"; do provided "$p" || want+=("$p"); done
[ ${#want[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "install-deps.sh: installing ${want[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
