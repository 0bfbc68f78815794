#!/usr/bin/env bash
# The files a user's runs produce, as hashes: run before and after a change that must not change any output.
#
#   benchmarks/byte_identity.sh > before.txt      (on the old tree)
#   benchmarks/byte_identity.sh > after.txt       (on the new tree)
#   diff before.txt after.txt                     (no output: every checkpoint, mask and results file is equal)
#
# Under UNLEARN_REPRODUCIBLE=1 (no wall times in the files) it runs, each in an empty folder of its own, the
# README's pipeline block, `unlearn demo` and the README's corrective-unlearning block, taken from README.md as
# they stand, and prints the sha256 of every checkpoint, mask and results JSON they wrote. Results JSON records
# wall times, so its `wall_time` fields are blanked before hashing; nothing else is. About 3 minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$root/.venv/bin:$PATH" UNLEARN_REPRODUCIBLE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# the sh block that follows the README line matching $1
block() { awk -v start="$1" 'index($0, start) { found = 1 } found && /^```sh/ { inside = 1; next }
                               inside && /^```/ { exit } inside' "$root/README.md"; }

mkdir "$work/pipeline" "$work/demo" "$work/corrective"
(cd "$work/pipeline" && block "## The pipeline" | bash -e >/dev/null 2>&1)
(cd "$work/demo" && unlearn demo --folder run >/dev/null 2>&1)
(cd "$work/corrective" && block "### Corrective unlearning" | bash -e >/dev/null 2>&1)

cd "$work"
find . -type f \( -name '*.safetensors' -o -name '*.json' \) | LC_ALL=C sort | while read -r file; do
  case "$file" in
    *.json) hash=$(python3 -c 'import json, sys, hashlib
def blank(value):
    if isinstance(value, dict):
        return {key: None if "wall" in key else blank(item) for key, item in value.items()}
    return [blank(item) for item in value] if isinstance(value, list) else value
print(hashlib.sha256(json.dumps(blank(json.load(open(sys.argv[1]))), sort_keys=True).encode()).hexdigest())' "$file") ;;
    *) hash=$(sha256sum "$file" | cut -d' ' -f1) ;;
  esac
  echo "$hash  $file"
done
