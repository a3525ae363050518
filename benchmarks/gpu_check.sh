#!/usr/bin/env bash
# GPU check: the CUDA paths of hwnas on an NVIDIA machine, in at most about 8 minutes on one H100, with one summary.
#
#   benchmarks/gpu_check.sh fetch-wheels   # here, with internet: the pure-Python packages a GPU image often lacks
#   benchmarks/gpu_check.sh                # there: CUDA tests, a distillation and a training epoch on CUDA,
#                                          # a torch-cuda latency profile of mbconv units with held-out validation
#
# The GPU machine needs torch, timm, onnx, onnxruntime, scipy, scikit-learn and matplotlib; it may have no internet
# and no TensorRT. What it lacks of the rest (optuna and its needs) comes from .whl/ (fetch-wheels), installed into
# /tmp/site (only when optuna is not importable already). Run it with the device tool as
#   run(command="benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
# Results land in $OUT (or runs/gpu_check): gpu_check.log, the table, and summary.json.
# GPU_CHECK_RUNTIME=torch runs the same steps on a CPU (the CUDA steps then fail or skip): a dry run of the script.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
PY=${PYTHON:-python3}

if [ "${1:-}" = "fetch-wheels" ]; then
    mkdir -p "$WHEELS"
    grep -qx "/$WHEELS/" .git/info/exclude 2>/dev/null || echo "/$WHEELS/" >> .git/info/exclude
    # optuna and its needs; greenlet is SQLAlchemy's compiled need on x86-64 (cp312: the GPU image's Python)
    for spec in optuna==5.0.0 alembic sqlalchemy colorlog mako greenlet; do
        $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform any -d "$WHEELS" "$spec" || exit 2
    done
    ls "$WHEELS"
    exit 0
fi

OUTDIR=${OUT:-runs/gpu_check}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_check.log"
: > "$LOG"
export PYTHONUNBUFFERED=1
if ! $PY -c "import optuna" 2>/dev/null && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$WHEELS"/*.whl >> "$LOG" 2>&1 || { echo "installing $WHEELS failed: see $LOG"; exit 2; }
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log it, record pass/fail and seconds
    local name=$1 limit=$2; shift 2
    local started=$SECONDS
    echo "== $name" | tee -a "$LOG"
    timeout "$limit" "$@" >> "$LOG" 2>&1
    local rc=$?
    echo "$name $rc $((SECONDS - started))" >> "$OUTDIR/steps.txt"
    echo "   rc=$rc, $((SECONDS - started)) s" | tee -a "$LOG"
}
: > "$OUTDIR/steps.txt"

step environment 60 $PY -c "
import platform, torch, timm, onnx, onnxruntime
print('python', platform.python_version(), 'torch', torch.__version__, 'timm', timm.__version__, 'onnx',
      onnx.__version__, 'onnxruntime', onnxruntime.__version__)
assert torch.cuda.is_available(), 'PyTorch sees no CUDA GPU'
print('gpu', torch.cuda.get_device_name(0), torch.version.cuda)
try:
    import tensorrt; print('tensorrt', tensorrt.__version__)
except ImportError:
    print('tensorrt: not installed (the TensorRT path is not checked here)')
"
# the CUDA tests: training resumes across devices, distillation, rating and SPOS on CUDA
step cuda-tests 240 $PY -m pytest -q -p no:cacheprovider tests/test_devices.py
# a PyTorch-CUDA latency profile of the full mbconv space's units, validated on held-out networks
step torch-cuda-profile 240 $PY -m hwnas.cli profile --space mbconv --runtime "${GPU_CHECK_RUNTIME:-torch-cuda}" --quick --calibrate 8 \
    --validate 12 --out "$OUTDIR/mbconv_torch_cuda.json" --json

$PY - "$OUTDIR" <<'EOF' | tee -a "$LOG"
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
steps = [line.split() for line in (out / "steps.txt").read_text().splitlines()]
summary = {"steps": {name: {"rc": int(rc), "seconds": int(s)} for name, rc, s in steps}}
table = out / "mbconv_torch_cuda.json"
if table.exists():
    data = json.loads(table.read_text())
    meta, v = data["metadata"], data.get("validation") or {}
    summary["profile"] = {k: meta.get(k) for k in ("device_name", "cpu_model", "accelerator", "runtime", "runtime_version",
                                                   "precision", "batch", "input_shape")}
    summary["profile"]["units"] = len(data["units"])
    summary["profile"]["validation"] = {k: v.get(k) for k in ("n", "mean_abs_pct_error", "within_10pct",
                                                               "kendall_tau", "remeasure_mean_abs_pct")}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
print("GPU check:", "PASSED" if all(s["rc"] == 0 for s in summary["steps"].values()) else "FAILED")
EOF
