// Cluster state on a real redis-server (redis_process): two "nodes" in one process, each a hub
// with its own redis_state / redis_client. Shared idempotency keys and token buckets, and
// the client's non-blocking calls against a silent (stopped) server.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <future>
#include <memory>
#include <thread>

#include "hub_test_sink.hpp"
#include "redis_process.hpp"
#include "skyrelay/broker/redis_client.hpp"
#include "skyrelay/broker/redis_limits.hpp"
#include "skyrelay/broker/redis_state.hpp"
#include "skyrelay/hub/broker.hpp"

namespace skyrelay {
namespace {

using namespace std::chrono_literals;
using redis::redis_url;

redis_url url_of(const testing::redis_process& r) {
  redis_url u;
  u.host = "127.0.0.1";
  u.port = r.port();
  return u;
}

// Polls `pred` every 20 ms for at most 10 s (a bound, not a speed assertion).
template <class Pred>
bool eventually(Pred pred) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!pred() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
  return pred();
}

void join_n(hub& h, const std::string& prefix, const channel& room, int n) {
  for (int i = 0; i < n; ++i) {
    auto s = std::make_shared<testing::sink>(prefix + std::to_string(i));
    ASSERT_TRUE(h.add(s));
    ASSERT_TRUE(h.join(s->sid(), room));
  }
}

TEST(RedisState, RoomSizeSumsNodesAndForgetsAGoneOne) {
  testing::redis_process server;
  hub a, b;
  redis::redis_state_options o;
  o.ttl = 600ms;
  auto sa = std::make_unique<redis::redis_state>(a, url_of(server), o);
  redis::redis_state sb(b, url_of(server), o);
  const channel lobby{"/", "lobby"}, other_nsp{"/admin", "lobby"};
  join_n(a, "a", lobby, 2);
  join_n(b, "b", lobby, 3);
  join_n(b, "c", other_nsp, 1);
  ASSERT_TRUE(sb.client().wait_connected(5s));
  EXPECT_TRUE(eventually([&] { return sb.room_size(lobby) == 5 && sa->room_size(lobby) == 5; }));
  EXPECT_EQ(sa->room_size(other_nsp), 1u);  // another namespace's room of the same name
  EXPECT_TRUE(eventually([&] { return sb.view().known && sb.view().nodes == 2; }));
  EXPECT_EQ(sb.view().connections, 6u);
  sa.reset();  // stops reporting; its report expires with its TTL
  EXPECT_TRUE(eventually([&] { return sb.room_size(lobby) == 3; }));
  EXPECT_TRUE(eventually([&] { return sb.view().nodes == 1; }));
}

TEST(RedisState, RoomSizeWithoutRedisIsBrokerUnavailable) {
  testing::redis_process server;
  hub a;
  redis::redis_state sa(a, url_of(server), {});
  ASSERT_TRUE(sa.client().wait_connected(5s));
  server.stop();
  EXPECT_TRUE(eventually([&] { return !sa.client().connected(); }));
  EXPECT_THROW(sa.room_size({"/", "r"}), broker_unavailable);
}

TEST(RedisIdempotency, TwoNodesShareKeysAndAnswers) {
  testing::redis_process server;
  redis::redis_client ca(url_of(server)), cb(url_of(server));
  ASSERT_TRUE(ca.wait_connected(5s) && cb.wait_connected(5s));
  redis::redis_idempotency ra(ca, "t:", 5min), rb(cb, "t:", 5min);
  idempotency_store a(5min, 10), b(5min, 10);
  a.set_backend(&ra);
  b.set_backend(&rb);
  using status = idempotency_store::status;
  const auto body = idempotency_store::digest_of("body"), other = idempotency_store::digest_of("x");

  auto first = a.begin("pub", "k", body);
  ASSERT_EQ(first.what, status::fresh);
  EXPECT_EQ(b.begin("pub", "k", body).what, status::in_progress);
  EXPECT_EQ(b.begin("pub", "k", other).what, status::conflict);
  EXPECT_EQ(b.begin("pub2", "k", body).what, status::fresh);  // another publisher's key
  first.hold.finish("{\"answer\":1}");
  auto again = b.begin("pub", "k", body);
  EXPECT_EQ(again.what, status::replay);
  EXPECT_EQ(again.answer, "{\"answer\":1}");

  {
    auto dropped = a.begin("pub", "k2", body);  // a failed publish frees its key
    ASSERT_EQ(dropped.what, status::fresh);
  }
  EXPECT_TRUE(eventually([&] {
    auto r = b.begin("pub", "k2", body);
    return r.what == status::fresh;
  }));
}

// The publish API's calls from an I/O thread: async_eval answers once, on the client's thread,
// also when Redis is connected but silent (stopped), and a limiter's decision arrives the same
// way.
TEST(RedisClient, AsyncEvalAnswersOnceWhenRedisIsSilent) {
  testing::redis_process server;
  redis::redis_client client(url_of(server));
  ASSERT_TRUE(client.wait_connected(5s));
  redis::redis_rate_limiter limiter(client, "rl:", 1, 2, 200ms);
  std::promise<rate_decision> first;
  limiter.async_acquire("k", 1, [&first](std::exception_ptr e, rate_decision d) {
    if (e) return first.set_exception(e);
    first.set_value(d);
  });
  auto f = first.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(f.get().allowed);

  ASSERT_EQ(::kill(server.pid(), SIGSTOP), 0);
  std::promise<void> silent;
  std::atomic<int> calls{0};
  limiter.async_acquire("k", 1, [&](std::exception_ptr e, rate_decision) {
    if (++calls == 1) e ? silent.set_exception(e) : silent.set_value();
  });
  auto g = silent.get_future();
  const bool answered = g.wait_for(5s) == std::future_status::ready;
  ::kill(server.pid(), SIGCONT);
  ASSERT_TRUE(answered);
  EXPECT_THROW(g.get(), broker_unavailable);
  EXPECT_TRUE(client.wait_connected(5s));
  std::this_thread::sleep_for(300ms);  // the late reply, if any, must not call again
  EXPECT_EQ(calls.load(), 1);
}

TEST(RedisRateLimiter, OneBudgetAcrossClientsOnRedisClock) {
  testing::redis_process server;
  redis::redis_client ca(url_of(server)), cb(url_of(server));
  ASSERT_TRUE(ca.wait_connected(5s) && cb.wait_connected(5s));
  redis::redis_rate_limiter la(ca, "rl:", 0.001, 3), lb(cb, "rl:", 0.001, 3);
  EXPECT_TRUE(la.acquire("k", 2).allowed);
  const auto d = lb.acquire("k", 1);
  EXPECT_TRUE(d.allowed);
  EXPECT_NEAR(d.remaining, 0.0, 1e-3);
  const auto denied = la.acquire("k", 1);
  EXPECT_FALSE(denied.allowed);
  // One token at 0.001/s: about 1000 s, less what refilled since.
  EXPECT_GT(denied.retry_after(), 990.0);
  EXPECT_LE(denied.retry_after(), 1000.0);
  EXPECT_TRUE(la.acquire("other", 3).allowed);
  EXPECT_THROW(la.acquire("k", 4), std::invalid_argument);
  EXPECT_TRUE(lb.reset("k"));
  EXPECT_TRUE(la.acquire("k", 3).allowed);
  server.stop();
  EXPECT_THROW(
      {
        for (int i = 0; i < 3; ++i) la.acquire("k", 0);  // the loss may need a call to show
      },
      broker_unavailable);
}

}  // namespace
}  // namespace skyrelay
