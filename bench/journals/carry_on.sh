#!/usr/bin/env bash
# Carry on the long runs of bench/journals/README.md: each from its own clone pinned at the
# journals' commit (made if missing), one thread each, side by side.
# Usage: bench/journals/carry_on.sh   (from the main checkout, after `make setup`)
set -u
MAIN=$(cd "$(dirname "$0")/../.." && pwd)
PY=$MAIN/.venv/bin/python
PIN=2ea9e5b
J=$MAIN/bench/journals

clone() {  # clone the main checkout at $PIN into $1 unless it is there
    [ -d "$1/.git" ] || { git clone -q "$MAIN" "$1" && git -C "$1" checkout -q "$PIN"; }
    [ "$(git -C "$1" rev-parse --short=7 HEAD)" = "$PIN" ] || { echo "$1 is not at $PIN" >&2; exit 2; }
    mkdir -p "$1/bench/out"
}

clone "$MAIN/../testrun"
clone "$MAIN/../testrun2"
export OMP_NUM_THREADS=1

(cd "$MAIN/../testrun" && nice "$PY" -m bench.learning.efficiency --role test --report --resume \
    --journal "$J/label_efficiency_test.json" \
    --workdir bench/out/full/label_efficiency_test --out bench/out/full/label_efficiency_test.json \
    >> bench/out/eff_test.log 2>&1) &

# The rest plan's run (learning_test_rest.json) has finished and its result is in
# bench/results.json; its clone now carries the dev raters' DPO run.
(cd "$MAIN/../testrun2" && nice "$PY" -m bench.learning.run --role dev --resume --runs dpo_large \
    --journal "$J/learning_dev_dpo_large.json" \
    --workdir bench/out/full/learning_dev_dpo_large --out bench/out/full/learning_dev_dpo_large.json \
    >> bench/out/learning_dev_dpo_large.log 2>&1) &

echo "logs: ../testrun/bench/out/eff_test.log, ../testrun2/bench/out/learning_dev_dpo_large.log"
