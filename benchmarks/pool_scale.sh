#!/usr/bin/env bash
# What the NeurIPS 2023 challenge's pools cost at the Fashion-MNIST suite's setting: POOL oracles and POOL
# DEL-unlearned models of one forget set (and the POOL originals they come from), built with --seeds and
# stacked, on one device. The suite's model and recipe (2×1024 MLP, 2,000 training images of 1×28×28, 60 epochs
# at lr 0.1, batch 128; DEL: a del mask at budget 0.3, rft for 8 epochs at lr 0.05) on synthetic images of that
# shape, so it runs where Fashion-MNIST is not installed. Prints each step's seconds and the oracles + unlearned
# models' total, the figure the challenge's 512 + 512 are measured by.
#
# Usage:
#   benchmarks/pool_scale.sh                          # 512 + 512 on the GPU
#   DEVICE=cpu POOL=2 EPOCHS=1 benchmarks/pool_scale.sh   # the same steps, tiny, on the CPU
set -euo pipefail

PYTHON=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
POOL=${POOL:-512}        # models per pool
EPOCHS=${EPOCHS:-60}     # training epochs (the suite's 60)
RFT_EPOCHS=${RFT_EPOCHS:-8}
WORK=${WORK:-$(mktemp -d -t unlearn-pool-scale.XXXXXX)}
mkdir -p "$WORK"

UNLEARN=("$PYTHON" -m unlearn_cli)
SEEDS="0-$((POOL - 1))"
SUITE=(--dataset synthetic --dataset-option channels=1 --dataset-option size=28 --dataset-option num_train=2000
       --dataset-option num_test=500)
MODEL=(--arch mlp --arch-option width=1024 --arch-option depth=2 --lr 0.1 --batch-size 128)

seconds() {  # seconds COMMAND…: run it quietly, print the seconds it took
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    "$PYTHON" -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$start" "$end"
}

"$PYTHON" -c 'import sys, torch; d = sys.argv[1]; print("device:", torch.cuda.get_device_name(0) if d == "cuda" else d)' "$DEVICE"
echo "pools of $POOL: 2×1024 MLP, 2,000 synthetic 1×28×28 images, $EPOCHS epochs; DEL rft $RFT_EPOCHS epochs"
mkdir -p "$WORK/original" "$WORK/oracle" "$WORK/del"
"${UNLEARN[@]}" split "${SUITE[@]}" --kind iid --fraction 0.1 -q -o "$WORK/forget.json"
original_s=$(seconds "${UNLEARN[@]}" train "${SUITE[@]}" "${MODEL[@]}" --epochs "$EPOCHS" --seeds "$SEEDS" \
    --device "$DEVICE" -q -o "$WORK/original/original-{seed}.safetensors")
oracle_s=$(seconds "${UNLEARN[@]}" train "${SUITE[@]}" "${MODEL[@]}" --epochs "$EPOCHS" --seeds "$SEEDS" \
    --exclude "$WORK/forget.json" --device "$DEVICE" -q -o "$WORK/oracle/oracle-{seed}.safetensors")
localize_s=$(seconds "${UNLEARN[@]}" localize --seeds "$SEEDS" -m "$WORK/original/original-{seed}.safetensors" \
    -f "$WORK/forget.json" --strategy del --budget 0.3 --device "$DEVICE" -q -o "$WORK/del/mask-{seed}.safetensors")
apply_s=$(seconds "${UNLEARN[@]}" apply --seeds "$SEEDS" -m "$WORK/original/original-{seed}.safetensors" \
    -f "$WORK/forget.json" --mask "$WORK/del/mask-{seed}.safetensors" --method rft --epochs "$RFT_EPOCHS" --lr 0.05 \
    --device "$DEVICE" -q -o "$WORK/del/del-{seed}.safetensors")
"$PYTHON" - "$WORK" "$POOL" "$original_s" "$oracle_s" "$localize_s" "$apply_s" <<'PY'
import sys
from unlearn_cli.io.checkpoint import load_checkpoint
work, pool = sys.argv[1], int(sys.argv[2])
original, oracle, localize, apply = (float(value) for value in sys.argv[3:])
stacked = [load_checkpoint(f"{work}/{kind}-0.safetensors").config.get("stacked")
           for kind in ("original/original", "oracle/oracle", "del/del")]
print(f"  originals:  {original:7.1f} s ({pool} models, stacked: {stacked[0]})")
print(f"  oracles:    {oracle:7.1f} s ({pool} models, stacked: {stacked[1]})")
print(f"  DEL masks:  {localize:7.1f} s ({pool} masks, one at a time)")
print(f"  DEL rft:    {apply:7.1f} s ({pool} models, stacked: {stacked[2]})")
total = oracle + localize + apply
print(f"{pool} + {pool} models (oracles and DEL-unlearned, one forget set): {total:.0f} s = {total / 60:.1f} min "
      f"({(total + original) / 60:.1f} min with the originals)")
PY
echo "files in $WORK"
