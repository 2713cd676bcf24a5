#!/usr/bin/env bash
# Train the seed-faithful pair on one CUDA GPU in one sitting (about 9 minutes on an H200):
#   1. SpatialNet on frozen MoveNet features (configs/spatialnet_movenet_gpu.yaml, time-boxed),
#      its body-shape prior fitted on training clips 1000-1039 and its decoding tuned on validation
#      seeds 8000-8001, exported to weights/spatialnet_movenet.pt
#      and scored as exported on the held-out seeds 9000-9007;
#   2. TemporalNet on that SpatialNet's features (configs/temporalnet_spatialnet_gpu.yaml),
#      written to weights/temporalnet_spatialnet.pt.
# Usage: scripts/train_gpu.sh [LOG_DIR]      (default out/train_gpu; logs and held-out files go there)
# Env: POSESTREAM (the CLI command, default `posestream`); SPATIAL_S / TEMPORAL_S (override the
# configs' time limits, seconds); SCORE=0 skips the tuning and scoring (where pycocotools or
# motmetrics are missing): re-running this script's spatial command later, anywhere, resumes the
# finished checkpoint in out/spatialnet_movenet_gpu, trains no further step, and tunes and scores it.
# Afterwards: posestream eval --gt LOG_DIR/heldout/gt.jsonl --pred LOG_DIR/heldout/pred.jsonl --json
# On a lent machine, bring weights/*.pt and LOG_DIR back into the repository (and commit the
# weights with their cards) before handing it back: nothing else on it survives the session.
set -euo pipefail
log_dir=${1:-out/train_gpu}
read -r -a cli <<<"${POSESTREAM:-posestream}"
score=(--pose-prior-seeds 1000-1039 --tune-decode-seeds 8000,8001 --eval-seeds 9000,9001,9002,9003,9004,9005,9006,9007 --eval-out "$log_dir/heldout")
[[ ${SCORE:-1} == 0 ]] && score=()
mkdir -p "$log_dir"
"${cli[@]}" train spatial --config configs/spatialnet_movenet_gpu.yaml --no-resume \
    ${SPATIAL_S:+--time-limit "$SPATIAL_S"} --export weights/spatialnet_movenet.pt "${score[@]}" \
    2>&1 | tee "$log_dir/spatial.log"
"${cli[@]}" train temporal --config configs/temporalnet_spatialnet_gpu.yaml \
    ${TEMPORAL_S:+--time-limit "$TEMPORAL_S"} 2>&1 | tee "$log_dir/temporal.log"
