#!/usr/bin/env bash
# The moshi engine's whole GPU measurement in one go (one device lease): its CUDA tests, the step time per batch
# size for stt-1b-en_fr and stt-2.6b-en (CUDA graph; eager for two 1B sizes), then `yapbench capacity` against a
# server whose batch size is the 1B step-time model's real-time limit. Run from the repository root with yapbench's
# dependencies and moshi importable; results go under $OUT (at most 8 files, as the device tool returns them).
#
#     OUT=/tmp/out bash benchmarks/gpu_moshi.sh
#
# Environment: TESTS=0 skips the CUDA tests, EAGER=0 the eager rows; B1 and B26 override the batch sizes of the
# two sweeps; CAP sets the capacity run's batch size (default: the 1B step-time model's real-time limit).
set -u
: "${OUT:?set OUT to the results folder}"
export PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch, moshi; print('torch', torch.__version__, 'moshi', moshi.__version__)"

if [ "${TESTS:-1}" = 1 ]; then
    timeout 70 python3 -m pytest -q -x -p no:cacheprovider tests/test_moshi_engine_cuda.py tests/test_torch_engine_cuda.py \
        > "$OUT/cuda-tests.txt" 2>&1
    tail -5 "$OUT/cuda-tests.txt"
fi

step() {  # name, time limit (s), then gpu_step.py's arguments
    local name=$1 LIMIT=$2; shift 2
    timeout "$LIMIT" python3 benchmarks/gpu_step.py --engine moshi --out "$OUT/$name" --warmup 5 --min-steps 30 \
        --min-seconds 1.5 "$@" 2>&1 | grep -v "^nvidia-smi query\|^NVML sampler"
}
step s1b "${T1:-110}" --modes graph --batch-sizes "${B1:-1,64,256,512,768,1024,1152,1280}"
step s26b "${T26:-90}" --config config-stt-en-hf.toml --modes graph --batch-sizes "${B26:-1,64,256,512,640,768}"
rm -f "$OUT/s26b/gpu.csv"
if [ "${EAGER:-1}" = 1 ]; then
    step s1b-eager 50 --modes eager --batch-sizes 1,256
    rm -f "$OUT/s1b-eager/gpu.csv"
fi

if [ -n "${CAP:-}" ]; then batch=(--batch-size "$CAP" --bracket); else batch=(--batch-size-from "$OUT/s1b/gpu_step.json"); fi
timeout "${TCAP:-200}" python3 benchmarks/gpu_e2e.py capacity --gpus 1 --engine moshi "${batch[@]}" \
    --processes 8 --out /tmp/moshi-capacity
mkdir -p "$OUT/cap"
for f in capacity.json summary.json capacity.png; do
    cp /tmp/moshi-capacity/capacity-*/"$f" "$OUT/cap/" 2>/dev/null
done
python3 - <<'EOF'
import json, glob
c = json.load(open(glob.glob("/tmp/moshi-capacity/capacity-*/capacity.json")[0]))
print(json.dumps({k: c.get(k) for k in ("capacity", "limit", "first_bad_users", "prediction")}))
EOF
