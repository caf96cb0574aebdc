#!/usr/bin/env bash
# Instructions per request through each stack of the layer benches, counted by callgrind.
#
# Usage: bash benches/instructions.sh            the table (about a minute)
#        bash benches/instructions.sh STACK      also where STACK's instructions go (callgrind_annotate)
#
# Each stack runs twice under callgrind, with 2,000 and 12,000 requests; the difference divided by
# 10,000 is the cost of one request, without the program's setup. Counts do not depend on the
# machine's load, only on the code and the compiler. Not run by CI (valgrind makes it slow).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "valgrind is missing and this is not root: install Debian's valgrind package" >&2
    exit 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi

exe=$(cargo bench --bench instructions --no-run --message-format=json 2>/dev/null \
  | grep '"name":"instructions"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -x "$exe" ] || { echo "could not build the instructions bench" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
few=2000
many=12000

# Total instructions of one run of STACK with N requests.
count() {
  valgrind --tool=callgrind --callgrind-out-file="$out/$1.$2" "$exe" "$1" "$2" >/dev/null 2>&1
  sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$out/$1.$2"
}

per_request() {
  local a b
  a=$(count "$1" "$few")
  b=$(count "$1" "$many")
  if [ -z "$a" ] || [ -z "$b" ]; then
    echo "callgrind gave no count for $1 (run: $exe $1 $few)" >&2
    exit 1
  fi
  echo $(((b - a) / (many - few)))
}

stacks=(bare floor floor_with_drop validate_request concurrency_limit monitor_up monitor_up_idle monitor_up_gone)
declare -A ir
for stack in "${stacks[@]}"; do
  ir[$stack]=$(per_request "$stack")
done

bare=${ir[bare]}
floor=$((ir[floor] - bare))
echo "| stack | instructions per request | over bare | floor over bare |"
echo "| --- | --- | --- | --- |"
for stack in "${stacks[@]}"; do
  echo "| \`$stack\` | ${ir[$stack]} | +$((ir[$stack] - bare)) | +$floor |"
done

if [ $# -ge 1 ]; then
  echo
  echo "where $1's instructions go ($many requests, inclusive of setup):"
  callgrind_annotate --auto=no --threshold=99 "$out/$1.$many" | head -n 60
fi
