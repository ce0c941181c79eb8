#!/usr/bin/env bash
# Train the shipped small NVILA from scratch with the project's own 5-stage recipes on `nvila synth` data,
# then copy it into the package. Deterministic (fixed seeds); resumable: rerun after an interruption.
#   bash scripts/train_small_model.sh            # uses .venv (make setup)
set -euo pipefail
cd "$(dirname "$0")/.."
NVILA=${NVILA:-.venv/bin/nvila}
PY=${PY:-.venv/bin/python}
DATA=data/synth-small
if [ ! -f "$DATA/manifest.json" ]; then
  "$NVILA" synth --out "$DATA" --image-size 192 --video-size 64 --seed 0 --heldout 0.05 \
    --tasks documents=6000,charts=6000,shapes=8000,events=1500
fi
[ -f runs/small/tokenizer/tokenizer.json ] || "$PY" scripts/prepare_small_model.py "$DATA" runs/small/tokenizer
for stage in 1_projector_init 2_vision_encoder 3_token_processor 4_image_sft 5_video_sft 6_more_sft; do
  if [ -f "runs/small/$stage/model/config.json" ]; then continue; fi
  resume=""; [ -d "runs/small/$stage/state" ] && resume="--resume"
  start=$(date +%s)
  "$NVILA" train --recipe "recipes/small/$stage.yaml" $resume
  echo "$stage: $(( $(date +%s) - start )) s"
done
rm -rf src/nvila/resources/models/nvila-small
cp -r runs/small/6_more_sft/model src/nvila/resources/models/nvila-small
echo "shipped model: src/nvila/resources/models/nvila-small"
