#!/bin/sh
# TIMED_ONLY=1 skips callgrind.
# Builds outbox_bench against this tree's outbox and (with REF=<git revision>) that revision's,
# then counts each one's instructions per delivery with callgrind, for a backlog that is
# taken whole (no bound) and for one that overflows (--bound 8: drop_oldest evictions).
#   bench/fanout_micro/run.sh            REF=main bench/fanout_micro/run.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-/tmp/fanout_micro}
mkdir -p "$out"
build() {  # $1: name, $2: include dir, $3: outbox.cpp
  g++ -std=c++20 -O2 -DNDEBUG -I"$2" "$here/outbox_bench.cpp" "$3" -lpthread -o "$out/$1"
}
build after "$root/cpp/include" "$root/cpp/src/net/outbox.cpp"
names=after
if [ -n "${REF:-}" ]; then
  rm -rf "$out/ref" && mkdir -p "$out/ref"
  git -C "$root" archive "$REF" cpp/include cpp/src/net/outbox.cpp | tar -x -C "$out/ref"
  build before "$out/ref/cpp/include" "$out/ref/cpp/src/net/outbox.cpp"
  names="before after"
fi
if [ -z "${TIMED_ONLY:-}" ]; then
for args in "--per-round 4" "--per-round 16 --bound 8"; do
  for n in $names; do
    valgrind --tool=callgrind --callgrind-out-file="$out/$n.cg" "$out/$n" --conns 1000 \
      --rounds 50 $args > "$out/$n.json" 2> "$out/$n.err"
    ir=$(grep -o 'Collected : [0-9]*' "$out/$n.err" | grep -o '[0-9]*$')
    pushes=$(grep -o '"deliveries":[0-9]*' "$out/$n.json" | grep -o '[0-9]*$')
    per=$(echo "$args" | grep -o "round [0-9]*" | grep -o "[0-9]*$")
    echo "$n ($args): $ir instructions, $((ir / (1000 * 50 * per))) per push; $(cat "$out/$n.json")"
  done
done
fi
# Native CPU time per push, interleaved (noisy on a shared machine: read the ratio within a round).
for round in 1 2 3 4 5; do
  for n in $names; do
    echo "timed round $round $n (--per-round 16 --bound 8): $("$out/$n" --conns 1000 --rounds 300 --per-round 16 --bound 8)"
  done
done
