#!/usr/bin/env bash
# GPU smoke run: resnet18 on CIFAR-shaped synthetic data, with and without the CUDA fast path
# (bf16 autocast + channels-last, optionally torch.compile), then localize, apply and evaluate, and pools of
# models built with --seeds and audited (`unlearn audit`) on the GPU, a poison (corrective unlearning): trained
# on, unlearned with DEL and scored with its attack success rate, and stacked pools (`--seeds --stacked`):
# bench_pools.py's stacked ÷ one-at-a-time ratio for the suite's MLP, and pool_scale.sh's 512 + 512 models.
# Prints images/s for every step and the fast-path speed-up. Needs a CUDA GPU; exits at once without one.
#
# Usage:
#   benchmarks/gpu_smoke.sh                       # defaults below
#   STEPS=500 BATCH=512 COMPILE=1 benchmarks/gpu_smoke.sh
#   GPUS=4 benchmarks/gpu_smoke.sh                # also time the fast path under torchrun on 4 GPUs
#   SCALE=64 benchmarks/gpu_smoke.sh              # pool_scale.sh with pools of 64 instead of 512 (0: skip it)
set -euo pipefail

PYTHON=${PYTHON:-python}
STEPS=${STEPS:-300}          # optimizer steps per training run
BATCH=${BATCH:-256}          # global batch size
COMPILE=${COMPILE:-0}        # 1: add --compile to the fast runs
GPUS=${GPUS:-1}              # >1: one more fast run under torchrun with this many processes
POOL=${POOL:-4}              # models per pool for the audit step
POOL_STEPS=${POOL_STEPS:-50} # optimizer steps per pool model
SCALE=${SCALE:-512}          # models per pool for pool_scale.sh (0: skip it)
WORK=${WORK:-$(mktemp -d -t unlearn-gpu-smoke.XXXXXX)}
mkdir -p "$WORK"

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_smoke.sh: no CUDA GPU is visible to $PYTHON (torch.cuda.is_available() is False); run it on a GPU machine" >&2
    exit 2
fi
"$PYTHON" -c 'import torch; print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__)'
echo "work folder: $WORK"

UNLEARN=("$PYTHON" -m unlearn_cli)
DATA=(--dataset synthetic --dataset-option channels=3 --dataset-option size=32
      --dataset-option num_train=50000 --dataset-option num_test=10000)
FAST=(--amp --channels-last)
[[ "$COMPILE" == 1 ]] && FAST+=(--compile)
PLAIN=(--no-amp --no-channels-last --no-compile)

meta() {  # meta FILE KEY: one metadata value of a checkpoint
    "$PYTHON" -c 'import sys; from unlearn_cli.io.checkpoint import load_checkpoint; print(load_checkpoint(sys.argv[1]).meta[sys.argv[2]])' "$1" "$2"
}
rate() {  # rate IMAGES SECONDS
    "$PYTHON" -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):,.0f}")' "$1" "$2"
}
ratio() {
    "$PYTHON" -c 'import sys; print(f"{float(sys.argv[2]) / float(sys.argv[1]):.2f}")' "$1" "$2"
}
timed() {  # timed COMMAND…: run it, print the seconds it took on stdout's last line
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    "$PYTHON" -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$start" "$end"
}

plain_vs_fast() {  # plain_vs_fast NAME OUTPUT_STEM COMMAND…: run COMMAND plain and fast, print images/s and speed-up
    local name=$1 stem=$2 plain_s fast_s
    shift 2
    "${UNLEARN[@]}" "$@" "${PLAIN[@]}" -o "$stem-plain.safetensors"
    "${UNLEARN[@]}" "$@" "${FAST[@]}" -o "$stem.safetensors"
    plain_s=$(meta "$stem-plain.safetensors" wall_time_s)
    fast_s=$(meta "$stem.safetensors" wall_time_s)
    echo "$name plain (fp32, NCHW): $(rate "$IMAGES" "$plain_s") images/s"
    echo "$name fast (${FAST[*]}): $(rate "$IMAGES" "$fast_s") images/s"
    echo "$name speed-up: $(ratio "$fast_s" "$plain_s")x"
}

IMAGES=$((STEPS * BATCH))
TRAIN=(train "${DATA[@]}" --arch resnet18 --epochs 100 --max-steps "$STEPS" --batch-size "$BATCH" --device cuda -q)

echo "== train resnet18, $STEPS steps of $BATCH"
plain_vs_fast train "$WORK/original" "${TRAIN[@]}"
fast_s=$(meta "$WORK/original.safetensors" wall_time_s)

if (( GPUS > 1 )); then
    "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node "$GPUS" -m unlearn_cli \
        "${TRAIN[@]}" "${FAST[@]}" -o "$WORK/ddp.safetensors"
    ddp_s=$(meta "$WORK/ddp.safetensors" wall_time_s)
    echo "train fast on $GPUS GPUs:    $(rate "$IMAGES" "$ddp_s") images/s (speed-up over 1 GPU: $(ratio "$ddp_s" "$fast_s")x)"
fi

echo "== localize del, apply rft, evaluate"
"${UNLEARN[@]}" split "${DATA[@]}" --kind iid --fraction 0.1 -q -o "$WORK/forget.json"
FORGET=5000  # 10% of 50,000
localize_s=$(timed "${UNLEARN[@]}" localize -m "$WORK/original.safetensors" -f "$WORK/forget.json" \
    --strategy del --budget 0.3 --batch-size "$BATCH" --device cuda -q -o "$WORK/mask.safetensors")
echo "localize del:               $(rate "$FORGET" "$localize_s") forget images/s (${localize_s%.*} s with start-up)"

APPLY=(apply -m "$WORK/original.safetensors" -f "$WORK/forget.json" --mask "$WORK/mask.safetensors" --method rft
       --epochs 100 --max-steps "$STEPS" --batch-size "$BATCH" --device cuda -q)
plain_vs_fast "apply rft" "$WORK/rft" "${APPLY[@]}"

EVALUATED=$((50000 + 10000))  # every training and test image through the model once
evaluate_s=$(timed "${UNLEARN[@]}" evaluate "$WORK/rft.safetensors" --forget "$WORK/forget.json" \
    --parent "$WORK/original.safetensors" --device cuda -q --json "$WORK/results.json")
echo "evaluate:                   $(rate "$EVALUATED" "$evaluate_s") images/s (${evaluate_s%.*} s with start-up)"
echo "== pools of $POOL models (--seeds), audited on the GPU"
POOL_SEEDS="0-$((POOL - 1))"
POOL_FLAGS=(--epochs 100 --max-steps "$POOL_STEPS" --batch-size "$BATCH" --device cuda -q "${FAST[@]}")
pool_s=$(timed "${UNLEARN[@]}" train "${DATA[@]}" --arch resnet18 "${POOL_FLAGS[@]}" --seeds "$POOL_SEEDS" \
    -o "$WORK/pool-original-{seed}.safetensors")
echo "train --seeds $POOL_SEEDS:          ${pool_s%.*} s for $POOL models of $POOL_STEPS steps (one process)"
"${UNLEARN[@]}" train "${DATA[@]}" --arch resnet18 "${POOL_FLAGS[@]}" --seeds "$POOL_SEEDS" \
    --exclude "$WORK/forget.json" -o "$WORK/pool-oracle-{seed}.safetensors"
"${UNLEARN[@]}" apply --seeds "$POOL_SEEDS" -m "$WORK/pool-original-{seed}.safetensors" -f "$WORK/forget.json" \
    --method finetune "${POOL_FLAGS[@]}" -o "$WORK/pool-finetune-{seed}.safetensors"
audit_s=$(timed "${UNLEARN[@]}" audit --forget "$WORK/forget.json" --unlearned "$WORK/pool-finetune-*.safetensors" \
    --retrained "$WORK/pool-oracle-*.safetensors" --original "$WORK/pool-original-*.safetensors" --device cuda -q \
    --json "$WORK/audit.json")
echo "audit of 3 x $POOL models:      $(rate $((3 * POOL * EVALUATED)) "$audit_s") images/s (${audit_s%.*} s with start-up)"
echo "== corrective: a 1% poison (3x3 patch, target 0), trained on, unlearned with DEL, evaluated"
"${UNLEARN[@]}" split "${DATA[@]}" --kind poison --fraction 0.01 --target 0 --known 0.5 -q -o "$WORK/poison.json"
poison_s=$(timed "${UNLEARN[@]}" train "${DATA[@]}" --arch resnet18 "${POOL_FLAGS[@]}" --manipulate "$WORK/poison.json" \
    -o "$WORK/poisoned.safetensors")
echo "train --manipulate:         ${poison_s%.*} s for $POOL_STEPS steps (with start-up)"
"${UNLEARN[@]}" localize -m "$WORK/poisoned.safetensors" -f "$WORK/poison.json" --strategy del --budget 0.3 \
    --device cuda -q -o "$WORK/poison-mask.safetensors"
"${UNLEARN[@]}" apply -m "$WORK/poisoned.safetensors" -f "$WORK/poison.json" --mask "$WORK/poison-mask.safetensors" \
    --method rft "${POOL_FLAGS[@]}" -o "$WORK/repaired.safetensors"
corrective_s=$(timed "${UNLEARN[@]}" evaluate "$WORK/poisoned.safetensors" "$WORK/repaired.safetensors" \
    --forget "$WORK/poison.json" --device cuda -q --json "$WORK/corrective.json")
echo "evaluate with attack success: ${corrective_s%.*} s for 2 models (with start-up)"
"$PYTHON" - "$WORK/corrective.json" <<'PY'
import json, sys
for result in json.load(open(sys.argv[1]))["results"]:
    metrics = result["metrics"]
    print(f"  {result['method']}: attack success {metrics['attack_success_rate']:.1f}%, clean test {metrics['test_accuracy']:.1f}%")
PY
echo "== stacked pools: the Fashion-MNIST suite's 2×1024 MLP, stacked ÷ one at a time (1 epoch of 2,000 images)"
"$PYTHON" "$(dirname "$0")/bench_pools.py" --device cuda --models 8 64 --dataset synthetic
if (( SCALE > 0 )); then
    echo "== the challenge's scale: $SCALE + $SCALE models of the suite's setting, stacked"
    PYTHON="$PYTHON" DEVICE=cuda POOL="$SCALE" WORK="$WORK/scale" "$(dirname "$0")/pool_scale.sh"
fi
echo "results in $WORK"
