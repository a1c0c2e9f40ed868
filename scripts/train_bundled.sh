#!/usr/bin/env bash
# Reproduces the bundled super-resolution weights in genapps/weights/ (run from the project root).
# Each training checkpoints to <out>.state.pt every 500 steps; rerunning the script resumes.
set -euo pipefail
DATA=${DATA:-../shared/datasets/natural/train}
VAL=${VAL:-../shared/datasets/natural/val/Set5}
W=genapps/weights
# Super-resolution, round 2 (issue 17). NOT RUN YET: the next session runs these, on BOTH cores
# (nothing else training; torch's default of 2 threads, i.e. unset OMP_NUM_THREADS or =2), in this
# order, each resumable (rerun the line; the state is <out>.state.pt, saved every 500 steps).
# --arch rep: the REFERENCE-POINTS plain net (48 ch x 12 + PReLU, PixelShuffle, bicubic skip)
# trained with re-parameterizable branches and saved folded. --holdout 8: the last 8 training
# photos are never trained on; they select EMA vs raw weights. Set5 (--val) is only reported.
# Expected about 0.3 s/step on two quiet cores (estimate): sr-x4 ~80 min, sr-x2 / sr-x3 ~40 min
# each; the log prints the ETA every 100 steps. The card records wall time, threads and the split.
# sr-x2 and sr-x3 start from the new sr-x4's body (--init of another scale: the folded convs are
# unfolded into the training form, the last conv starts fresh), so they need fewer steps.
SR=(--data "$DATA" --holdout 8 --val "$VAL" --arch rep --channels 48 --blocks 12 --val-every 1000)
genapps train sr "${SR[@]}" --scale 4 --steps 16000 --out $W/sr-x4.safetensors
genapps train sr "${SR[@]}" --scale 2 --init $W/sr-x4.safetensors --steps 8000 --out $W/sr-x2.safetensors
genapps train sr "${SR[@]}" --scale 3 --init $W/sr-x4.safetensors --steps 8000 --out $W/sr-x3.safetensors
# The GAN fine-tunes the folded (plain) sr-x4; aim: 0.7-1.0 of HR's high-frequency energy with at
# most 1 dB below sr-x4 (scripts/bench_sr.py shows HF energy, HaarPSI and GMSD beside PSNR).
genapps train sr "${SR[@]}" --scale 4 --gan --init $W/sr-x4.safetensors --lr 2e-4 --batch-size 8 --steps 1000 \
  --pixel-weight 0.1 --adversarial-weight 0.02 --ema 0.99 --out $W/srgan-x4.safetensors
# Round 1 (the weights bundled now: srresnet 48 ch x 6 blocks, selected on Set5):
#   genapps train sr --data "$DATA" --val "$VAL" --scale 4 --steps 6000 --out $W/sr-x4.safetensors
#   genapps train sr --data "$DATA" --val "$VAL" --scale 4 --gan --init $W/sr-x4.safetensors --lr 2e-4 \
#     --batch-size 8 --steps 800 --pixel-weight 0.1 --adversarial-weight 0.02 --ema 0.99 --out $W/srgan-x4.safetensors
#   genapps train sr --data "$DATA" --val "$VAL" --scale 2 --steps 1500 --out $W/sr-x2.safetensors
