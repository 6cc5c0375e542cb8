// Joining one big room: the time to add N connections to the hub and join each to one room
// (what N JSON-protocol or SSE connections subscribing to one topic cost the hub), then one
// publication to all, then N leaves. One thread, the hub alone (no sockets).
//
//   g++ -std=c++20 -O2 -Icpp/include -Itests/cpp bench/hub_join/hub_join.cpp <hub sources> \
//       -lcrypto -lpthread -o hub_join && ./hub_join 19500
// (bench/run_hub_join.sh builds it against this tree and against another commit's hub.)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "hub_test_sink.hpp"
#include "skyrelay/hub/hub.hpp"

int main(int argc, char** argv) {
  using clock = std::chrono::steady_clock;
  const int n = argc > 1 ? std::atoi(argv[1]) : 19500;
  if (n <= 0 || n > 1'000'000) return 2;  // bounded
  skyrelay::hub h;
  h.add_encoder([](const skyrelay::publication& p, const skyrelay::publish_meta& m) {
    return std::make_shared<const skyrelay::frame>(
        skyrelay::frame{p.event, m.publish_ns, true, 0, {}, 0, {}});
  });
  std::vector<std::shared_ptr<skyrelay::testing::sink>> subs;
  subs.reserve(std::size_t(n));
  for (int i = 0; i < n; ++i) subs.push_back(std::make_shared<skyrelay::testing::sink>("c" + std::to_string(i)));
  const auto t0 = clock::now();
  for (const auto& s : subs) {
    h.add(s);
    h.join(s->sid(), {"/", "bench"});
  }
  const auto t1 = clock::now();
  skyrelay::publication p;
  p.event = "tick";
  p.data = "1";
  p.to = {"bench"};
  const std::size_t reached = h.publish(p);
  const auto t2 = clock::now();
  for (const auto& s : subs) h.remove(s->sid());
  const auto t3 = clock::now();
  const auto s = [](auto d) { return std::chrono::duration<double>(d).count(); };
  std::printf("{\"n\":%d,\"add_and_join_s\":%.4f,\"per_join_us\":%.3f,\"publish_s\":%.4f,"
              "\"reached\":%zu,\"remove_s\":%.4f,\"per_remove_us\":%.3f}\n",
              n, s(t1 - t0), s(t1 - t0) / n * 1e6, s(t2 - t1), reached, s(t3 - t2),
              s(t3 - t2) / n * 1e6);
  return reached == std::size_t(n) ? 0 : 1;
}
