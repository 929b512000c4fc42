#!/usr/bin/env bash
# Carry on the long run of bench/journals/README.md that is left (label efficiency) from its clone
# pinned at the journals' commit (made if missing), on both cores.
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
export OMP_NUM_THREADS=2  # the only run left: both cores

(cd "$MAIN/../testrun" && nice "$PY" -m bench.learning.efficiency --role test --report --resume \
    --journal "$J/label_efficiency_test.json" \
    --workdir bench/out/full/label_efficiency_test --out bench/out/full/label_efficiency_test.json \
    >> bench/out/eff_test.log 2>&1) &

echo "log: ../testrun/bench/out/eff_test.log"
