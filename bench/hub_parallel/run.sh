#!/bin/sh
# The hub's publications/s from 1 and 2 threads to disjoint rooms (hub_parallel.cpp), for this
# tree and, with REF set, for the hub of git revision REF (built from `git archive`, same
# program), interleaved. Bounded: each run stops after 20 s; the default takes ~30 s.
#
#   bench/hub_parallel/run.sh [hub_parallel options]            e.g. --members 64 --publications 50000
#   REF=main bench/hub_parallel/run.sh [options]
set -eu
cd "$(dirname "$0")/../.."
out=bench/build/hub_parallel
mkdir -p "$out"
src="cpp/src/hub/hub*.cpp cpp/src/hub/closed_sids.cpp cpp/src/core/clock.cpp cpp/src/core/random.cpp"
build() {  # $1: source root, $2: binary
  (cd "$1" && g++ -std=c++20 -O2 -DNDEBUG -Icpp/include $src \
     "$OLDPWD/bench/hub_parallel/hub_parallel.cpp" -lcrypto -lpthread -o "$2")
}
build . "$PWD/$out/hub_parallel"
if [ -n "${REF:-}" ]; then
  rm -rf "$out/ref" && mkdir -p "$out/ref"
  git archive "$REF" cpp | tar -x -C "$out/ref"
  build "$out/ref" "$PWD/$out/hub_parallel_ref"
fi
uptime
for round in 1 2; do
  if [ -n "${REF:-}" ]; then
    echo "== $REF"; timeout 60 "$out/hub_parallel_ref" "$@" | tail -3
  fi
  echo "== this tree"; timeout 60 "$out/hub_parallel" "$@" | tail -3
done
