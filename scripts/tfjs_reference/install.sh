#!/usr/bin/env bash
# Install the pinned pure-JS TensorFlow.js (package.json + package-lock.json beside this script,
# every package pinned by version and sha512 integrity) into a git-ignored cache folder, for the
# parity tests of the PyTorch ports. Idempotent: does nothing when the installed lock matches.
# Usage: scripts/tfjs_reference/install.sh [DEST]   (default: weights/cache/tfjs-reference,
# or $POSESTREAM_WEIGHTS_DIR/cache/tfjs-reference). Prints DEST/node_modules on success.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dest="${1:-${POSESTREAM_WEIGHTS_DIR:-$root/weights}/cache/tfjs-reference}"
command -v npm >/dev/null 2>&1 || { echo "npm is not installed: cannot install the TFJS reference" >&2; exit 3; }
mkdir -p "$dest"
if [ -f "$dest/node_modules/.package-lock.json" ] && cmp -s "$here/package-lock.json" "$dest/package-lock.json" \
   && [ -d "$dest/node_modules/@tensorflow/tfjs" ]; then
  echo "$dest/node_modules"
  exit 0
fi
cp "$here/package.json" "$here/package-lock.json" "$dest/"
(cd "$dest" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
echo "$dest/node_modules"
