// Publications per second through the hub from 1 and from 2 threads to disjoint rooms: what
// order per channel buys over one process-wide lock. No network: each member's deliver() only
// counts, so the figure is the hub's own cost (routing, locks, history, encoding, fan-out).
//
//   hub_parallel [--publications N] [--rooms R] [--members M] [--rounds K]
//
// Each thread publishes N events (bounded, and stops after 20 s) to its own R rooms of M members
// each, round-robin; the report gives publications/s for one thread, for two, and their ratio
// (the median of K rounds of each).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "skyrelay/hub/hub.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

class counter final : public skyrelay::subscriber {
 public:
  using subscriber::subscriber;
  void deliver(const skyrelay::frame_ptr&, skyrelay::overflow_policy) override {
    got_.fetch_add(1, std::memory_order_relaxed);
  }

 private:
  std::atomic<std::uint64_t> got_{0};
};

struct options {
  long publications = 200'000;
  int rooms = 32;
  int members = 8;
  int rounds = 3;
};

// Publications/s with `threads` publishers, each on its own rooms.
double run(const options& o, int threads) {
  skyrelay::hub h;
  h.set_history(1000, std::chrono::minutes(2));
  h.add_encoder([](const skyrelay::publication& p, const skyrelay::publish_meta& m) {
    return skyrelay::make_frame(p.event + p.data, m.publish_ns);
  });
  std::vector<std::shared_ptr<counter>> keep;
  for (int t = 0; t < threads; ++t)
    for (int r = 0; r < o.rooms; ++r)
      for (int m = 0; m < o.members; ++m) {
        const std::string sid = std::to_string(t) + "." + std::to_string(r) + "." + std::to_string(m);
        keep.push_back(std::make_shared<counter>(sid, 0));
        h.add(keep.back());
        h.join(sid, {"/", "t" + std::to_string(t) + "-r" + std::to_string(r)});
      }
  std::atomic<long> done{0};
  const auto deadline = clock_type::now() + std::chrono::seconds(20);
  const auto start = clock_type::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      skyrelay::publication p;
      p.event = "tick";
      p.data = R"({"v":12345,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"})";
      p.to = {""};
      long n = 0;
      for (; n < o.publications; ++n) {
        p.to[0] = "t" + std::to_string(t) + "-r" + std::to_string(n % o.rooms);
        h.publish(p);
        if ((n & 1023) == 0 && clock_type::now() > deadline) break;
      }
      done.fetch_add(n);
    });
  for (auto& th : pool) th.join();
  const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  return static_cast<double>(done.load()) / seconds;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long v = std::strtol(argv[i + 1], nullptr, 10);
    if (v <= 0) return std::fprintf(stderr, "%s needs a positive number\n", k.c_str()), 2;
    if (k == "--publications") o.publications = v;
    else if (k == "--rooms") o.rooms = static_cast<int>(v);
    else if (k == "--members") o.members = static_cast<int>(v);
    else if (k == "--rounds") o.rounds = static_cast<int>(v);
    else return std::fprintf(stderr, "unknown option %s\n", k.c_str()), 2;
  }
  std::vector<double> one, two;
  for (int r = 0; r < o.rounds; ++r) {  // interleaved, so a disturbance hits both alike
    one.push_back(run(o, 1));
    two.push_back(run(o, 2));
  }
  const double a = median(one), b = median(two);
  std::printf("hub_parallel: %ld publications per thread, %d rooms x %d members per thread, "
              "median of %d rounds, %u hardware threads\n",
              o.publications, o.rooms, o.members, o.rounds, std::thread::hardware_concurrency());
  std::printf("1 thread : %10.0f publications/s (%.0f deliveries/s)\n", a, a * o.members);
  std::printf("2 threads: %10.0f publications/s (%.0f deliveries/s)\n", b, b * o.members);
  std::printf("speed-up : %.2fx\n", b / a);
  return 0;
}
