#!/usr/bin/env bash
# Build the getbatch wheel plus a wheelhouse of its runtime dependencies and of the s3 extra
# (boto3, for aws:// buckets), so cluster nodes can install with no registry access:
#   pip install --no-index --find-links wheels/wheelhouse getbatch        # or 'getbatch[s3]'
# Usage: wheels/build.sh [OUTDIR]   (default: wheels/wheelhouse)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="${1:-$here/wheelhouse}"
mkdir -p "$out"
python -m pip wheel --quiet --wheel-dir "$out" "$root[s3]"
ls "$out"
