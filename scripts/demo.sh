#!/usr/bin/env bash
# The main job on a real demo video: fetch the pretrained weights, get the demo video
# (Debian's opencv-doc vtest.avi; a synthetic clip when apt is unavailable), track
# everyone in it, and write poses.jsonl plus an annotated H.264 MP4.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-out/demo}
VTEST=/usr/share/doc/opencv-doc/examples/data/vtest.avi
mkdir -p "$OUT"

"$BIN/posestream" weights fetch

if [ ! -f "$VTEST" ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  echo "installing the demo video (Debian package opencv-doc)..."
  ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq opencv-doc >/dev/null) \
    || echo "could not install opencv-doc; falling back to a synthetic clip" >&2
fi
if [ -f "$VTEST" ]; then
  VIDEO=$VTEST
else
  "$BIN/posestream" synth --out "$OUT/synthetic" --seed 1 --frames 200 --people 5 -q
  VIDEO=$OUT/synthetic/video.mp4
fi

"$BIN/posestream" track "$VIDEO" --out "$OUT/poses.jsonl" --render "$OUT/annotated.mp4" ${TRACK_ARGS:-}
echo
echo "input:      $VIDEO"
echo "poses:      $OUT/poses.jsonl"
echo "annotated:  $OUT/annotated.mp4"
