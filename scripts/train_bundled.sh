#!/usr/bin/env bash
# Reproduces the bundled super-resolution weights in genapps/weights/ (run from the project root).
# Each training checkpoints to <out>.state.pt every 500 steps; rerunning the script resumes.
set -euo pipefail
DATA=${DATA:-../shared/datasets/natural/train}
VAL=${VAL:-../shared/datasets/natural/val/Set5}
W=genapps/weights
genapps train sr --data "$DATA" --val "$VAL" --scale 4 --steps 6000 --out $W/sr-x4.safetensors
genapps train sr --data "$DATA" --val "$VAL" --scale 4 --gan --init $W/sr-x4.safetensors --lr 2e-4 \
  --batch-size 8 --steps 800 --pixel-weight 0.1 --adversarial-weight 0.02 --ema 0.99 --out $W/srgan-x4.safetensors
genapps train sr --data "$DATA" --val "$VAL" --scale 2 --steps 1500 --out $W/sr-x2.safetensors
