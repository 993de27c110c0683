#!/usr/bin/env bash
# Build the getbatch wheel plus a wheelhouse of its runtime dependencies, so cluster nodes
# can install with no registry access:
#   pip install --no-index --find-links wheels/wheelhouse getbatch
# Usage: wheels/build.sh [OUTDIR]   (default: wheels/wheelhouse)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="${1:-$here/wheelhouse}"
mkdir -p "$out"
python -m pip wheel --quiet --wheel-dir "$out" "$root"
ls "$out"
