#!/usr/bin/env bash
# One `make -j2` step: two `unlearn train` of the README's model (digits, mlp, 30 epochs) side by side, first with
# torch's default threads (each job takes every core: what happened before --threads), then with --threads 1 (what
# `unlearn` now picks by itself under make -j). Prints both wall times and their ratio, with the machine's cores,
# torch's default thread count and the load average, since the ratio grows with the load.
#
#   benchmarks/bench_threads.sh                  # 1-3 minutes on 2 cores
#   EPOCHS=10 UNLEARN=~/venv/bin/unlearn benchmarks/bench_threads.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
unlearn=${UNLEARN:-$root/.venv/bin/unlearn}
python=$(dirname "$unlearn")/python
epochs=${EPOCHS:-30}
unset UNLEARN_THREADS OMP_NUM_THREADS MAKEFLAGS MFLAGS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# the recipe of one job: RUN prefixes the command, THREADS adds its flag
cat > "$work/Makefile" <<EOF
all: seed-0.safetensors seed-1.safetensors
seed-%.safetensors:
	\$(RUN) $unlearn train --dataset digits --arch mlp --epochs $epochs --seed \$* --quiet \$(THREADS) -o \$@
EOF

seconds() {  # wall seconds of `make -j2` with RUN=$1 and THREADS=$2
  rm -f "$work"/seed-*.safetensors
  local start end
  start=$(date +%s.%N)
  make -s -C "$work" -j2 RUN="$1" THREADS="$2"
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }'
}

echo "cores: $(nproc); torch's default threads: $("$python" -c 'import torch; print(torch.get_num_threads())');" \
     "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# without MAKEFLAGS in its environment a job does not know it runs beside another: torch's default threads
default=$(seconds "env -u MAKEFLAGS -u MFLAGS" "")
one=$(seconds "" "--threads 1")
echo "make -j2, two \`unlearn train --epochs $epochs\` side by side:"
echo "  default threads: ${default} s"
echo "  --threads 1:     ${one} s"
awk -v a="$default" -v b="$one" 'BEGIN { printf "  ratio default / one thread: %.2f\n", a / b }'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
