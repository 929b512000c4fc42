#!/usr/bin/env bash
# Carry on the reporting runs of bench/journals/README.md: each from its own clone pinned at the
# journals' commit (made if missing), one thread each, side by side. When the rest plan's run
# ends, its clone goes on with the dev raters' DPO run, so no core waits for someone to notice.
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

(cd "$MAIN/../testrun2" && nice "$PY" -m bench.learning.run --role test --report --resume \
    --runs dpo_small,reward,rloo,reinforce --journal "$J/learning_test_rest.json" \
    --workdir bench/out/full/learning_test_rest --out bench/out/full/learning_test_rest.json \
    >> bench/out/learning_test_rest.log 2>&1 \
  && nice "$PY" -m bench.learning.run --role dev --resume --runs dpo_large \
    --journal "$J/learning_dev_dpo_large.json" \
    --workdir bench/out/full/learning_dev_dpo_large --out bench/out/full/learning_dev_dpo_large.json \
    >> bench/out/learning_dev_dpo_large.log 2>&1) &

echo "logs: ../testrun/bench/out/eff_test.log, ../testrun2/bench/out/learning_test_rest.log," \
     "then ../testrun2/bench/out/learning_dev_dpo_large.log"
