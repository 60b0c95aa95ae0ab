#!/usr/bin/env bash
# Instructions per stored record of Ledger.insertRequests (bench/ledger-insert.ts), counted by
# valgrind: unlike CPU time, the count does not move with a shared VM's noise, so two versions of
# the ledger can be compared in one run each. Needs valgrind (Debian: apt-get install valgrind).
#
# The benchmark runs at two sizes; start-up, module loading and V8's warm-up cost the same in both,
# so the difference divided by the difference in records is what one more record costs.
# Usage: bash bench/instructions-per-record.sh [random|sequential ...]   (default: both shapes)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "instructions-per-record: valgrind is not installed" >&2; exit 2; }
SMALL=${TOKENWATT_BENCH_LEDGER_SMALL:-20000}
LARGE=${TOKENWATT_BENCH_LEDGER_LARGE:-60000}
# The agent's node flags (agent/node-flags.ts), as npm run bench uses them.
FLAGS=$(node --import tsx -e "import('./agent/node-flags.ts').then((m) => console.log(m.AGENT_NODE_FLAGS.join(' ')))")
count() { # shape records -> instructions of the whole process
  TOKENWATT_BENCH_LEDGER_SHAPES=$1 TOKENWATT_BENCH_LEDGER_RECORDS=$2 \
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
    node $FLAGS --import tsx bench/run.ts ledger 2>&1 | sed -n 's/.*I *refs: *//p' | tr -d ,
}
count sequential 10 >/dev/null # tsx caches what it compiles: the measured runs both find it cached
for shape in "${@:-random sequential}"; do
  for s in $shape; do
    small=$(count "$s" "$SMALL")
    large=$(count "$s" "$LARGE")
    echo "$s: $(( (large - small) / (LARGE - SMALL) )) instructions per record (valgrind, $SMALL and $LARGE records: $small and $large in all)"
  done
done
