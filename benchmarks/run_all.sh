#!/usr/bin/env bash
# Every benchmark in turn, on a quiet machine (they measure latency). Each writes benchmarks/results/BENCHMARK/NAME.json
# and regenerates benchmarks/results/README.md; what each measures and its history: benchmarks/docs/BENCHMARK.md.
# The ranking benchmarks train for hours and resume where they stopped; run them alone.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=.venv/bin/python
R=benchmarks/results/ranking

# latency: tables and predictor, combiner, budgets, export
$PY benchmarks/profile_fidelity.py --space mbconv --runtime onnxruntime --calibrate 20 --validate 50
$PY benchmarks/profile_fidelity.py --space mbconv --runtime litert --calibrate 20 --validate 50
$PY benchmarks/profile_fidelity.py --space mbconv-tiny --runtime onnxruntime --calibrate 10 --validate 30
$PY benchmarks/profile_fidelity.py --space mbconv-tiny --runtime litert --calibrate 10 --validate 30
$PY benchmarks/profile_fidelity.py --space mbconv-tiny --runtime onnxruntime --precision int8 --calibrate 10 --validate 30
$PY benchmarks/profile_fidelity.py --space mbconv-tiny --runtime litert --precision int8 --calibrate 10 --validate 30
$PY benchmarks/combiner.py
$PY benchmarks/budget_sweep.py --budgets 12
$PY benchmarks/supernet_costs.py
$PY benchmarks/training_speed.py --archs 6 --rounds 5
.venv/bin/hwnas demo --out runs/demo
$PY benchmarks/export.py --child-run runs/demo

# ranking: 100 archs (50 spread over the ratings, 50 full-range) x 4 seeds, about 12 h on 2 cores
$PY benchmarks/eval_noise.py --seeds 4
$PY benchmarks/ranking.py --archs-from $R/ranking_100_s1.json --full-range-archs 0 --seeds 4 --rating-seeds 3 \
  --work runs/bench-ranking-lr --name ranking_100 --no-share-twins \
  --restore-children $R/ranking_100.json $R/ranking_100_s3.json $R/ranking_100_s2.json $R/ranking_100_s1.json $R/ranking_full_s4.json
$PY benchmarks/rank_confidence.py --results $R/ranking_100.json --runs --name rank_confidence_ranking_100
$PY benchmarks/rank_confidence.py
$PY benchmarks/rating_variants.py --result $R/ranking_100_s1.json --block-scores-only --name rating_variants_100_s1
$PY benchmarks/rating_reliability.py

# distillation seeds combined (hwnas distill --seeds 3 from ranking_100's teacher; the run folders hold a copy of
# runs/bench-ranking-lr/run's run.json without its distill entry, teacher.pt, teacher_training.pt and cache/)
for spec in "runs/twins-seeds:0:" "runs/twins-seeds-b:3:" "runs/sep-seeds:3:--no-share-twins"; do
  IFS=: read -r run seed flags <<< "$spec"
  .venv/bin/hwnas distill --run "$run" --epochs 10 --lr 0.02 --seed "$seed" --seeds 3 $flags
  .venv/bin/hwnas rate --run "$run"
done
$PY benchmarks/seed_combination.py \
  --triple "twin-by-twin 0-2=runs/bench-ranking-lr/run,runs/bench-ranking-lr/run-seed1,runs/bench-ranking-lr/run-seed2" \
  --triple "twin-by-twin 3-5=runs/sep-seeds" --triple "twins shared 0-2=runs/twins-seeds" \
  --triple "twins shared 3-5=runs/twins-seeds-b"

# supernet recipes side by side on ranking_100_s1 (runs/bench-twins/run-seedS[-e20|-sd] distilled beforehand)
T=runs/bench-twins
$PY benchmarks/distill_variants.py --variant "shared prefixes, 10 epochs=$T/run-seed0,$T/run-seed1,$T/run-seed2" \
  --variant "shared prefixes, 20 epochs=$T/run-seed0-e20,$T/run-seed1-e20,$T/run-seed2-e20" \
  --variant "separate depths, 20 epochs=$T/run-seed0-sd,$T/run-seed1-sd,$T/run-seed2-sd"

# int8 against fp32 op by op and network by network (about 12 min; nothing else running)
$PY benchmarks/int8_kernels.py --name xeon_avx512_recipe
# int8 ONNX files with 8- and 7-bit weights on trained children (about 5 min; saturation shows on x86 without VNNI)
$PY benchmarks/int8_weight_bits.py --work runs/int8_weight_bits --name digits

# the glyphs ranking ground truth (issue #29): about 9 h with two workers on 2 cores, resumable from its JSON
$PY benchmarks/ground_truth.py --data glyphs --bands 5 --per-band 6 --seeds 3 --workers 2
G=benchmarks/results/ground_truth/glyphs.json
# rated against it: DNA (teacher 20 epochs), DNA++ and Pi-NAS, 3 distillation seeds each; then scored with size,
# the zero-cost proxies and SPOS (40 epochs, about 2 h alone)
$PY benchmarks/rating_methods.py --truth $G --work runs/methods_glyphs --name methods_glyphs
$PY benchmarks/rank_scores.py --truth $G --spos runs/spos-glyphs --run runs/methods_glyphs/dna \
  --run runs/methods_glyphs/dnapp --run runs/methods_glyphs/pinas --name glyphs
# NSE's evolved op set and DNA+'s rounds on glyphs (issue #31; children 16 epochs, about 16 min each here)
$PY benchmarks/evolve_space.py --work runs/evolve_glyphs --space mbconv-tiny-64 --data glyphs --budgets 4 5.5 7 \
  --child-epochs 16 --name mbconv-tiny-64_glyphs
[ -d runs/dnaplus_glyphs ] || cp -r runs/methods_glyphs/dna runs/dnaplus_glyphs  # the rounds change their run's teacher
$PY benchmarks/progressive_rounds.py --run runs/dnaplus_glyphs --rounds 2 --budget 5.5 --child-epochs 16 \
  --distill-epochs 10 --name glyphs

# on an NVIDIA machine (not here): CUDA tests, a torch-cuda profile with validation, one summary
# benchmarks/gpu_check.sh fetch-wheels; then there: benchmarks/gpu_check.sh

$PY benchmarks/index.py
