#!/usr/bin/env bash
# Every benchmark in turn (nothing else should run on the machine meanwhile: they measure latency).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=.venv/bin/python
$PY benchmarks/profile_fidelity.py --space mbconv --runtime onnxruntime --calibrate 20 --validate 50
$PY benchmarks/profile_fidelity.py --space mbconv --runtime litert --calibrate 20 --validate 50
$PY benchmarks/profile_fidelity.py --space mbconv-tiny --runtime onnxruntime --calibrate 10 --validate 30
$PY benchmarks/profile_fidelity.py --space mbconv-tiny --runtime litert --calibrate 10 --validate 30
$PY benchmarks/combiner.py
$PY benchmarks/budget_sweep.py --budgets 12
$PY benchmarks/supernet_costs.py
$PY benchmarks/training_speed.py --archs 6 --rounds 5
.venv/bin/hwnas demo --out runs/demo
$PY benchmarks/export.py --child-run runs/demo
$PY benchmarks/eval_noise.py --seeds 4
# the 20 architectures of ranking_lr002 (spread over its ratings), 5 seeds, SPOS entangled with 5 warm-up epochs (the
# defaults); without --archs-from a fresh spread is drawn; the results before it add --spos-sharing separate --spos-warmup 0
$PY benchmarks/ranking.py --archs 20 --seeds 5 --epochs 20 --teacher-epochs 20 --spos-epochs 40 --rating-seeds 3 --archs-from benchmarks/results/ranking_lr002.json --work runs/bench-ranking-lr --name ranking --no-share-twins
# the same 20 plus 10 from hwnas's best to its worst over the whole space, 3 seeds (arch spread > seed spread)
$PY benchmarks/ranking.py --archs 20 --seeds 3 --epochs 20 --teacher-epochs 20 --spos-epochs 40 --rating-seeds 3 --full-range-archs 10 --archs-from benchmarks/results/ranking_lr002.json --work runs/bench-ranking-lr --name ranking_wide --no-share-twins
# other scores (stitched students, swap KL, calibrated block weights, ...) from the supernets of that run, on ranking_wide's accuracies
$PY benchmarks/rating_variants.py --result benchmarks/results/ranking_wide.json --run runs/bench-ranking-lr/run
# 20 archs from hwnas's best to its worst only, 2 seeds, 3 distillation seeds (ranking_full is the same with --rating-seeds 1)
$PY benchmarks/ranking.py --archs 0 --full-range-archs 20 --seeds 2 --rating-seeds 3 --work runs/bench-ranking-lr --name ranking_full_r3 --no-share-twins
$PY benchmarks/rating_variants.py --result benchmarks/results/ranking_full.json --run runs/bench-ranking-lr/run --name rating_variants_full
# the same 20 archs with a third stand-alone seed (noise ceiling 0.687)
$PY benchmarks/ranking.py --archs 0 --full-range-archs 20 --seeds 3 --rating-seeds 3 --work runs/bench-ranking-lr --name ranking_full_s3 --no-share-twins
# and a fourth (noise ceiling 0.71)
$PY benchmarks/ranking.py --archs 0 --full-range-archs 20 --seeds 4 --rating-seeds 3 --work runs/bench-ranking-lr --name ranking_full_s4 --no-share-twins
# block ratings weighted by their reproducibility across those 3 distillation seeds, on ranking_full_s4, ranking_full_s3, ranking_full, ranking_wide, ranking
$PY benchmarks/rating_reliability.py
# the same teacher's supernets distilled with twins sharing one module (the default now), 3 seeds, scored the same way
for s in 0 1 2; do
  R=runs/bench-twins/run-seed$s
  if [ ! -e $R/run.json ]; then
    mkdir -p $R && cp runs/bench-ranking-lr/run/{run.json,teacher.pt,teacher_training.pt} $R/ && cp -r runs/bench-ranking-lr/run/cache $R/
  fi
  .venv/bin/hwnas distill --run $R --epochs 10 --lr 0.02 --seed $s && .venv/bin/hwnas rate --run $R
done
$PY benchmarks/rating_reliability.py --runs runs/bench-twins/run-seed0 runs/bench-twins/run-seed1 runs/bench-twins/run-seed2 --name rating_reliability_twins
# 100 archs (50 spread over the ratings, 50 full-range) x 4 seeds: 400 trainings, about 12 h on 2 cores (resumable;
# seed 0 of every arch first). --done-only ranks what is trained so far: ranking_100_s1 is seed 0 of all 100.
$PY benchmarks/ranking.py --archs 50 --full-range-archs 50 --seeds 4 --rating-seeds 3 --work runs/bench-ranking-lr --name ranking_100 --no-share-twins
# $PY benchmarks/ranking.py --archs 50 --full-range-archs 50 --seeds 1 --rating-seeds 3 --work runs/bench-ranking-lr --name ranking_100_s1 --no-share-twins --done-only
# ranking_100_s2 (100 archs x 2 seeds, 2026-12-01) was read with the archs pinned, after the work folder was restored:
# $PY benchmarks/ranking.py --archs-from benchmarks/results/ranking_100_s1.json --full-range-archs 0 --seeds 2 --rating-seeds 3 --work runs/bench-ranking-lr --name ranking_100_s2 --no-share-twins --done-only
# $PY benchmarks/rank_confidence.py --results benchmarks/results/ranking_100_s2.json --runs --name rank_confidence_100_s2
# ranking_100_s3 (100 archs x 3 seeds, 2026-12-01), the same way:
# $PY benchmarks/ranking.py --archs-from benchmarks/results/ranking_100_s1.json --full-range-archs 0 --seeds 3 --rating-seeds 3 --work runs/bench-ranking-lr --name ranking_100_s3 --no-share-twins --done-only --workers 1
# $PY benchmarks/rank_confidence.py --results benchmarks/results/ranking_100_s3.json --runs --name rank_confidence_ranking_100_s3
# a lost work folder: the stored trainings written back, the 100 archs pinned (teacher and supernets trained again).
# This command, run to its end on 2026-12-01 (the last 17 seed-3 trainings), wrote the final ranking_100 (100 x 4):
# $PY benchmarks/ranking.py --archs-from benchmarks/results/ranking_100_s1.json --full-range-archs 0 --seeds 4 --rating-seeds 3 --work runs/bench-ranking-lr --name ranking_100 --no-share-twins --restore-children benchmarks/results/ranking_100.json benchmarks/results/ranking_100_s3.json benchmarks/results/ranking_100_s2.json benchmarks/results/ranking_100_s1.json benchmarks/results/ranking_full_s4.json
# $PY benchmarks/ranking.py --archs-from benchmarks/results/ranking_100_s1.json --full-range-archs 0 --seeds 2 --rating-seeds 3 --work runs/bench-ranking-lr --name ranking_100_s2_t2 --no-share-twins --done-only
# $PY benchmarks/rank_confidence.py --results benchmarks/results/ranking_100_s2_t2.json --runs --name rank_confidence_t2
# $PY benchmarks/rank_confidence.py --results benchmarks/results/ranking_100.json --runs --name rank_confidence_ranking_100
$PY benchmarks/rating_variants.py --result benchmarks/results/ranking_100_s1.json --block-scores-only --name rating_variants_100_s1
# distillation seeds combined by block reliability (hwnas distill --seeds): fresh runs of ranking_100's teacher
# (run.json without its distill entry, teacher.pt, teacher_training.pt and cache/ copied from runs/bench-ranking-lr/run)
# $PY -m hwnas.cli distill --run runs/twins-seeds --epochs 10 --lr 0.02 --seeds 3 && $PY -m hwnas.cli rate --run runs/twins-seeds
# $PY -m hwnas.cli distill --run runs/twins-seeds-b --epochs 10 --lr 0.02 --seed 3 --seeds 3 && $PY -m hwnas.cli rate --run runs/twins-seeds-b
# $PY -m hwnas.cli distill --run runs/sep-seeds --epochs 10 --lr 0.02 --seed 3 --seeds 3 --no-share-twins && $PY -m hwnas.cli rate --run runs/sep-seeds
$PY benchmarks/seed_combination.py --triple "twin-by-twin 0-2=runs/bench-ranking-lr/run,runs/bench-ranking-lr/run-seed1,runs/bench-ranking-lr/run-seed2" --triple "twin-by-twin 3-5=runs/sep-seeds" --triple "twins shared 0-2=runs/twins-seeds" --triple "twins shared 3-5=runs/twins-seeds-b"
# every ranking result's taus with 95% bootstrap intervals, the gap between hwnas and SPOS, and what each score
# orders beyond MACs (partial tau)
$PY benchmarks/rank_confidence.py
# supernet recipes side by side on ranking_100_s1: 20 epochs instead of 10, and each depth its own cell (DNA's way)
for s in 0 1 2; do
  for V in e20 sd; do
    R=runs/bench-twins/run-seed$s-$V
    if [ ! -e $R/run.json ]; then
      mkdir -p $R && cp -r runs/bench-twins/run-seed$s/{run.json,teacher.pt,teacher_training.pt,cache} $R/
      if [ $V = e20 ]; then cp -r runs/bench-twins/run-seed$s/supernet $R/; fi  # 10 more epochs on the same supernets
    fi
    .venv/bin/hwnas distill --run $R --epochs 20 --lr 0.02 --seed $s $([ $V = sd ] && echo --separate-depths) && .venv/bin/hwnas rate --run $R
  done
done
T=runs/bench-twins
$PY benchmarks/distill_variants.py --variant "shared prefixes, 10 epochs=$T/run-seed0,$T/run-seed1,$T/run-seed2" \
  --variant "shared prefixes, 20 epochs=$T/run-seed0-e20,$T/run-seed1-e20,$T/run-seed2-e20" \
  --variant "separate depths, 20 epochs=$T/run-seed0-sd,$T/run-seed1-sd,$T/run-seed2-sd"
# a teacher from outside the space (timm's EfficientNet-B0), scored on ranking_full's and ranking_wide's accuracies:
# .venv/bin/hwnas teacher train --run runs/bench-b0teacher/run --space mbconv-tiny --data digits-distorted-4 --teacher efficientnet_b0 --epochs 20 --augment
# .venv/bin/hwnas distill --run runs/bench-b0teacher/run --epochs 10 --lr 0.02 --no-share-twins && .venv/bin/hwnas rate --run runs/bench-b0teacher/run
# $PY benchmarks/rating_variants.py --run runs/bench-b0teacher/run --result benchmarks/results/ranking_full.json --name rating_variants_b0_full
# the same before the distillation lr went from DNA's 0.002 to 0.02 (3 seeds):
# $PY benchmarks/ranking.py --archs 20 --seeds 3 --distill-lr 0.002 --work runs/bench-ranking-clip --name ranking_lr002 --spos-sharing separate --spos-warmup 0 --no-share-twins
# the same before gradient clipping (some seeds blew up early), at full and at half augmentation strength:
# $PY benchmarks/ranking.py --seeds 3 --distill-lr 0.002 --grad-clip 0 --work runs/bench-ranking-aug --name ranking_noclip --spos-sharing separate --spos-warmup 0 --no-share-twins
# $PY benchmarks/ranking.py --seeds 3 --distill-lr 0.002 --grad-clip 0 --augment-strength 0.5 --work runs/bench-ranking-m5 --name ranking_m5 --spos-sharing separate --spos-warmup 0 --no-share-twins
# the earlier, unaugmented recipes (ranking_e14, ranking_e8 were measured before SPOS moved to AdamW):
# $PY benchmarks/ranking.py --distill-lr 0.002 --grad-clip 0 --no-augment --teacher-epochs 12 --spos-epochs 30 --epochs 14 --name ranking_e14 --work runs/bench-ranking-e14 --spos-sharing separate --spos-warmup 0 --no-share-twins
