#!/usr/bin/env bash
# The oracle-free objective's variants, each scored by the selection regret of its choices on the reported forget
# set (../regret.py): every search `make regret` ran at the cap, rerun with the variant's flags.
#
#   ./objective_variants.sh WORK VARIANT…     VARIANT: name=tune flags, e.g. "nofit=--weight retain_fit=0"
#
# WORK is a work folder after `make regret CAPS=0.1 … WORK=WORK`: each search's own arguments
# (WORK/tuned-free/<set>/<p>-c<cap>.yaml.args, as the recipe wrote them), its seed-0 original, validation and
# reported forget sets, seed-0 oracles and the tuned-oracle/ and regret/ searches are read. Each variant's searches
# go to WORK/variants/<name>/tuned-free/, its regret table to WORK/variants/<name>/regret.md; a choice outside the
# grid of WORK/regret/ gets its own rerun of the grid there. CAP (default 0.1) is the cap; UNLEARN and PYTHON name
# the commands (defaults: the repository's virtual environment).
set -euo pipefail
cd "$(dirname "$0")"
work=${1:?usage: ./objective_variants.sh WORK name=flags…}; shift
cap=${CAP:-0.1}
unlearn=${UNLEARN:-../../.venv/bin/unlearn}
python=${PYTHON:-../../.venv/bin/python}
searches=("$work"/tuned-free/*/*-c"$cap".yaml.args)
[ -f "${searches[0]}" ] || { echo "error: no search at cap $cap in $work/tuned-free/; run make regret first" >&2; exit 1; }
for variant in "$@"; do
  name=${variant%%=*}; flags=${variant#*=}
  folder=$work/variants/$name
  mkdir -p "$folder" && ln -sfn "$(realpath "$work")/tuned-oracle" "$folder/tuned-oracle"  # the table's oracle column
  pairs=()
  for arguments in "${searches[@]}"; do
    forget=$(basename "$(dirname "$arguments")"); pipeline=$(basename "$arguments" "-c$cap.yaml.args")
    pairs+=("$forget:$pipeline")
    mkdir -p "$folder/tuned-free/$forget" "$folder/regret/$forget"
    tuned=$folder/tuned-free/$forget/$pipeline-c$cap.yaml
    shared=$work/regret/$forget/$pipeline-c$cap.yaml
    rerun=$folder/regret/$forget/$pipeline-c$cap.yaml
    [ -f "$tuned" ] || $unlearn tune -m "$work/original-s0.safetensors" -f "$work/forget-$forget-validation.json" \
      $(cat "$arguments") $flags --device cpu --quiet -o "$tuned"
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
  $python ../regret.py table --work "$folder" --cap "$cap" "${pairs[@]}" > "$folder/regret.md"
  echo "$name: $folder/regret.md"
done
