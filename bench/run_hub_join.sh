#!/bin/sh
# Joining one big room, this tree's hub against another commit's (default: where this branch
# left main), side by side:
#   bench/run_hub_join.sh [commit] [N ...]
# Builds bench/hub_join/hub_join.cpp twice (-O2) under bench/build/hub_join/, then runs each N
# on both, alternating, printing one JSON line per run.
set -eu
cd "$(dirname "$0")/.."
base=${1:-$(git merge-base HEAD main)}; shift || true
sizes=${*:-"5000 19500 50000"}
out=bench/build/hub_join
rm -rf "$out/base" && mkdir -p "$out/base"
git archive "$base" cpp/include cpp/src/hub cpp/src/core tests/cpp/hub_test_sink.hpp | tar -x -C "$out/base"
hub="cpp/src/hub/hub.cpp cpp/src/hub/hub_channels.cpp cpp/src/hub/hub_history.cpp
     cpp/src/hub/hub_publish.cpp cpp/src/hub/hub_state.cpp cpp/src/hub/keyed_state.cpp
     cpp/src/hub/closed_sids.cpp cpp/src/core/clock.cpp cpp/src/core/random.cpp"
g++ -std=c++20 -O2 -DNDEBUG -Icpp/include -Itests/cpp bench/hub_join/hub_join.cpp $hub \
    -lcrypto -lpthread -o "$out/hub_join_this"
(cd "$out/base" && g++ -std=c++20 -O2 -DNDEBUG -Icpp/include -Itests/cpp \
    ../../../hub_join/hub_join.cpp $hub -lcrypto -lpthread -o ../hub_join_base)
for n in $sizes; do
  printf '%s %s ' "$base" "$n"; timeout 600 "$out/hub_join_base" "$n"
  printf 'this %s ' "$n"; timeout 600 "$out/hub_join_this" "$n"
done
