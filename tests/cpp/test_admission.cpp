// Admission of new connections on its own: the total cap, the per-IP cap, the token buckets for
// new connections and new Engine.IO sessions, loopback, and slots given back when dropped.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "skyrelay/core/config.hpp"
#include "skyrelay/limits/admission.hpp"

using skyrelay::admission;
using skyrelay::connection_refusal;
using skyrelay::server_config;

namespace {

constexpr std::int64_t sec = 1'000'000'000;
constexpr std::int64_t t0 = 1000 * sec;  // an arbitrary start on the monotonic clock

// No rate limits and no caps unless a test sets them.
server_config open_config() {
  server_config cfg;
  cfg.max_connections = 0;
  cfg.max_connections_per_ip = 0;
  cfg.new_connections_per_ip = {0, 0};
  cfg.new_sessions_per_ip = {0, 0};
  return cfg;
}

// Admits from `ip` until refused (at most `limit` times), keeping the slots.
connection_refusal fill(admission& a, const std::string& ip, std::vector<admission::slot>& held,
                        bool session = false, std::int64_t now = t0, int limit = 10'000) {
  connection_refusal why = connection_refusal::none;
  for (int i = 0; i < limit; ++i) {
    auto s = a.admit(ip, why, session, now);
    if (!s) return why;
    held.push_back(std::move(s));
  }
  return why;
}

}  // namespace

TEST(Admission, TotalCapRefusesThenReleasesOnDrop) {
  auto cfg = open_config();
  cfg.max_connections = 3;
  admission a(cfg);
  std::vector<admission::slot> held;
  EXPECT_EQ(fill(a, "10.0.0.1", held), connection_refusal::total);
  EXPECT_EQ(held.size(), 3u);
  EXPECT_EQ(a.total(), 3u);
  // The cap is over every address together.
  connection_refusal why = connection_refusal::none;
  EXPECT_EQ(a.admit("10.0.0.2", why, false, t0), nullptr);
  EXPECT_EQ(why, connection_refusal::total);
  // Dropping a slot gives it back, once its last holder lets go.
  auto copy = held.back();
  held.pop_back();
  EXPECT_EQ(a.total(), 3u);
  copy.reset();
  EXPECT_EQ(a.total(), 2u);
  auto s = a.admit("10.0.0.2", why, false, t0);
  EXPECT_NE(s, nullptr);
  EXPECT_EQ(why, connection_refusal::none);
}

TEST(Admission, PerIpCapCountsConnectionsAndSessionsTogether) {
  auto cfg = open_config();
  cfg.max_connections_per_ip = 4;
  admission a(cfg);
  std::vector<admission::slot> held;
  connection_refusal why = connection_refusal::none;
  held.push_back(a.admit("10.0.0.1", why, false, t0));
  held.push_back(a.admit("10.0.0.1", why, true, t0));  // a polling session counts as one more
  EXPECT_EQ(fill(a, "10.0.0.1", held, true), connection_refusal::per_ip);
  EXPECT_EQ(held.size(), 4u);
  EXPECT_EQ(a.held_by("10.0.0.1"), 4u);
  EXPECT_EQ(a.admit("10.0.0.1", why, false, t0), nullptr);
  EXPECT_EQ(why, connection_refusal::per_ip);
  // Another address has its own count.
  EXPECT_NE(a.admit("10.0.0.2", why, false, t0), nullptr);
  // Released slots are given back to their address, and an address with none is forgotten.
  held.clear();
  EXPECT_EQ(a.held_by("10.0.0.1"), 0u);
  EXPECT_EQ(a.total(), 0u);
  EXPECT_NE(a.admit("10.0.0.1", why, false, t0), nullptr);
}

TEST(Admission, NewConnectionBucketRefusesBurstThenRefills) {
  auto cfg = open_config();
  cfg.new_connections_per_ip = {2.0, 5.0};  // 2/s, burst 5
  admission a(cfg);
  std::vector<admission::slot> held;
  EXPECT_EQ(fill(a, "10.0.0.1", held), connection_refusal::rate);
  EXPECT_EQ(held.size(), 5u);
  // A refusal by rate takes no slot; the bucket is per address.
  EXPECT_EQ(a.held_by("10.0.0.1"), 5u);
  connection_refusal why = connection_refusal::none;
  EXPECT_NE(a.admit("10.0.0.2", why, false, t0), nullptr);
  // Half a second later one token is back (2/s), and only one.
  EXPECT_NE(a.admit("10.0.0.1", why, false, t0 + sec / 2), nullptr);
  EXPECT_EQ(a.admit("10.0.0.1", why, false, t0 + sec / 2), nullptr);
  EXPECT_EQ(why, connection_refusal::rate);
  // Dropping slots does not refill the bucket: it is about new connections, not open ones.
  held.clear();
  EXPECT_EQ(a.admit("10.0.0.1", why, false, t0 + sec / 2), nullptr);
  EXPECT_EQ(why, connection_refusal::rate);
}

TEST(Admission, SessionsHaveTheirOwnBucket) {
  auto cfg = open_config();
  cfg.new_connections_per_ip = {1.0, 2.0};
  cfg.new_sessions_per_ip = {1.0, 3.0};
  admission a(cfg);
  std::vector<admission::slot> conns, sessions;
  EXPECT_EQ(fill(a, "10.0.0.1", conns), connection_refusal::rate);
  EXPECT_EQ(conns.size(), 2u);
  // The connection bucket is empty, the session bucket is not.
  EXPECT_EQ(fill(a, "10.0.0.1", sessions, true), connection_refusal::rate);
  EXPECT_EQ(sessions.size(), 3u);
  EXPECT_EQ(a.held_by("10.0.0.1"), 5u);
}

TEST(Admission, LoopbackSkipsPerIpLimitsUnlessAsked) {
  auto cfg = open_config();
  cfg.max_connections = 50;
  cfg.max_connections_per_ip = 2;
  cfg.new_connections_per_ip = {1.0, 1.0};
  {
    admission a(cfg);
    std::vector<admission::slot> held;
    for (const char* ip : {"127.0.0.1", "::1", "::ffff:127.0.0.1"}) {
      connection_refusal why = connection_refusal::none;
      for (int i = 0; i < 5; ++i) {
        auto s = a.admit(ip, why, false, t0);
        ASSERT_NE(s, nullptr) << ip;
        held.push_back(std::move(s));
      }
      EXPECT_EQ(a.held_by(ip), 0u);  // not counted per address
    }
    // Still counted in the total, and held to its cap.
    EXPECT_EQ(a.total(), 15u);
    EXPECT_EQ(fill(a, "127.0.0.1", held), connection_refusal::total);
    EXPECT_EQ(a.total(), 50u);
    held.clear();
    EXPECT_EQ(a.total(), 0u);
  }
  cfg.limit_loopback = true;
  admission a(cfg);
  std::vector<admission::slot> held;
  EXPECT_EQ(fill(a, "127.0.0.1", held), connection_refusal::rate);
  EXPECT_EQ(held.size(), 1u);
  EXPECT_EQ(a.held_by("127.0.0.1"), 1u);
}

TEST(Admission, ManyAddressesKeepTheBucketTableSmall) {
  // Buckets that filled up again are forgotten as new addresses arrive; their addresses then
  // start with a full bucket, which is what they would have had anyway.
  auto cfg = open_config();
  cfg.new_connections_per_ip = {1.0, 1.0};
  admission a(cfg);
  connection_refusal why = connection_refusal::none;
  for (int i = 0; i < 5000; ++i) {
    const std::string ip = "10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250);
    EXPECT_NE(a.admit(ip, why, false, t0 + i * sec), nullptr) << ip;
  }
  EXPECT_GT(a.buckets(), 1000u);
  EXPECT_LE(a.buckets(), 1100u);
  // An early address, long refilled, is admitted again; one just used is not.
  EXPECT_NE(a.admit("10.1.0.0", why, false, t0 + 5000 * sec), nullptr);
  EXPECT_EQ(a.admit("10.1.0.0", why, false, t0 + 5000 * sec), nullptr);
  EXPECT_EQ(why, connection_refusal::rate);
  EXPECT_EQ(a.total(), 0u);  // every slot above was dropped at once
}

// A trusted proxy's connection (server_config::trusted_proxies): counted in the total only,
// never against the proxy's address, until its requests name their clients.
TEST(Admission, UnattributedSlotsCountTheTotalOnly) {
  server_config cfg = open_config();
  cfg.max_connections = 3;
  cfg.max_connections_per_ip = 1;
  cfg.new_connections_per_ip = {1.0, 1.0};
  admission a(cfg);
  connection_refusal why = connection_refusal::none;
  std::vector<admission::slot> held;
  for (int i = 0; i < 2; ++i) {
    held.push_back(a.admit_unattributed(why));
    ASSERT_TRUE(held.back());
    EXPECT_EQ(why, connection_refusal::none);
  }
  EXPECT_EQ(a.total(), 2u);
  EXPECT_EQ(a.held_by("10.0.0.1"), 0u);
  EXPECT_EQ(a.buckets(), 0u);  // no rate bucket taken for anyone
  // The client its header names is admitted by address, within the same total.
  held.push_back(a.admit("203.0.113.9", why, false, t0));
  ASSERT_TRUE(held.back());
  EXPECT_FALSE(a.admit_unattributed(why));
  EXPECT_EQ(why, connection_refusal::total);
  held.pop_back();
  EXPECT_EQ(a.total(), 2u);
  held.clear();
  EXPECT_EQ(a.total(), 0u);
}
