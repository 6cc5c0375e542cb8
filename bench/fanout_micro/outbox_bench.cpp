// The outbox's cost per delivery, without the network: what a saturated fan-out does to each
// connection's outbox, counted in instructions (valgrind --tool=callgrind) or timed.
//
// `conns` outboxes; each round publishes `per_round` frames to every outbox (one shared frame
// per publication, as the hub's fan-out pushes it), then every outbox is taken into its write
// batch and the batch released (what a write loop does after its write completes). With
// --bound F the outboxes hold at most F frames and pushes past it evict the oldest
// (drop_oldest: a connection whose socket is full). Built by run.sh against this tree's
// outbox.cpp and, with REF=<revision>, that revision's, so that one command compares them.
//
// Usage: outbox_bench [--conns 1000] [--rounds 200] [--per-round 4] [--bound 100000]
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "skyrelay/net/outbox.hpp"

int main(int argc, char** argv) {
  std::size_t conns = 1000, rounds = 200, per_round = 4, bound = 100000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::size_t v = std::strtoull(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--conns")) conns = v;
    else if (!std::strcmp(argv[i], "--rounds")) rounds = v;
    else if (!std::strcmp(argv[i], "--per-round")) per_round = v;
    else if (!std::strcmp(argv[i], "--bound")) bound = v;
  }
  std::vector<std::unique_ptr<skyrelay::outbox>> boxes;  // apart on the heap, as in sessions
  for (std::size_t c = 0; c < conns; ++c)
    boxes.push_back(std::make_unique<skyrelay::outbox>(skyrelay::outbox::limits{64u << 20, bound}));
  std::vector<std::vector<skyrelay::frame_ptr>> batches(conns);
  std::size_t pushed = 0, dropped = 0, taken = 0;
  // CPU time of the process, not wall time: on a shared machine waiting for a core is not cost.
  auto cpu_now = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
  };
  const double t0 = cpu_now();
  for (std::size_t r = 0; r < rounds; ++r) {
    for (std::size_t k = 0; k < per_round; ++k) {
      const skyrelay::frame_ptr f = skyrelay::make_frame(std::string(180, 'x'), 1);
      for (auto& b : boxes) {
        const auto res = b->push(f, skyrelay::overflow_policy::drop_oldest);
        pushed += res.accepted;
        dropped += res.dropped;
      }
    }
    for (std::size_t c = 0; c < conns; ++c) {
      boxes[c]->take(batches[c]);
      taken += batches[c].size();
      batches[c].clear();  // the write completed: the batch lets its frames go
      boxes[c]->take(batches[c]);  // the next turn finds the outbox empty: the loop idles
    }
  }
  const double s = cpu_now() - t0;
  std::printf("{\"deliveries\":%zu,\"taken\":%zu,\"dropped\":%zu,\"cpu_ns_per_push\":%.1f}\n",
              pushed, taken, dropped, s * 1e9 / double(pushed ? pushed : 1));
  return 0;
}
