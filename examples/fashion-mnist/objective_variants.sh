#!/usr/bin/env bash
# The oracle-free objective's variants, each scored by the selection regret of its choices on the reported forget
# set (../regret.py), at cap 0.1, for DEL, finetune, NegGrad+ and retrain @ 0.1 on both forget sets.
#
#   ./objective_variants.sh WORK VARIANT…     VARIANT: name=tune flags, e.g. "nofit=--weight retain_fit=0"
#
# WORK is a work folder after `make regret CAPS=0.1 PIPELINES="del finetune neggrad-plus retrain" WORK=WORK`: its
# seed-0 original, validation and reported forget sets, seed-0 oracles and the tuned-oracle/ and regret/ searches
# are read. Each variant's searches go to WORK/variants/<name>/tuned-free/, and its regret table to
# WORK/variants/<name>/regret.md; a choice outside the grid of WORK/regret/ gets its own rerun of the grid there.
# UNLEARN and PYTHON name the commands (defaults: the repository's virtual environment).
set -euo pipefail
cd "$(dirname "$0")"
work=${1:?usage: ./objective_variants.sh WORK name=flags…}; shift
unlearn=${UNLEARN:-../../.venv/bin/unlearn}
python=${PYTHON:-../../.venv/bin/python}
declare -A grid=(
  [del]="--strategy del --method rft --grid lr=0.03,0.05,0.08 --grid epochs=cap,cap/2 --grid budget=0.1,0.3"
  [finetune]="--method finetune --grid lr=0.01,0.03,0.1 --grid epochs=cap,cap/2"
  [neggrad-plus]="--method neggrad+ --grid lr=0.01,0.03,0.1 --grid epochs=cap,cap/2"
  [retrain]="--method retrain --grid lr=0.03,0.1,0.3")
for variant in "$@"; do
  name=${variant%%=*}; flags=${variant#*=}
  folder=$work/variants/$name
  mkdir -p "$folder" && ln -sfn "$(realpath "$work")/tuned-oracle" "$folder/tuned-oracle"  # the table's oracle column
  for forget in iid noniid; do
    for pipeline in del finetune neggrad-plus retrain; do
      mkdir -p "$folder/tuned-free/$forget" "$folder/regret/$forget"
      tuned=$folder/tuned-free/$forget/$pipeline-c0.1.yaml
      shared=$work/regret/$forget/$pipeline-c0.1.yaml
      rerun=$folder/regret/$forget/$pipeline-c0.1.yaml
      [ -f "$tuned" ] || $unlearn tune -m "$work/original-s0.safetensors" -f "$work/forget-$forget-validation.json" \
        ${grid[$pipeline]} --max-cost 0.1 --extend 1 --seed 0 $flags --device cpu --quiet -o "$tuned"
      if [ ! -f "$rerun" ]; then
        if $python ../regret.py covers "$shared" "$tuned"; then
          cp "$shared" "$rerun"
        else
          $unlearn tune -m "$work/original-s0.safetensors" -f "$work/forget-$forget.json" \
            --oracle "$work/$forget/s0/oracle.safetensors" $($python ../regret.py args "$tuned" "$shared") \
            --extend 0 --no-halving --device cpu --quiet -o "$rerun"
        fi
      fi
    done
  done
  $python ../regret.py table --work "$folder" --cap 0.1 iid:del iid:finetune iid:neggrad-plus iid:retrain \
    noniid:del noniid:finetune noniid:neggrad-plus noniid:retrain > "$folder/regret.md"
  echo "$name: $folder/regret.md"
done
