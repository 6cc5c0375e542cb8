// Socket.IO recovery across nodes, the Redis side: pids, offsets and records as text (hostile
// input refused), and the store on a real redis-server (redis_process), two clients standing
// for two nodes.
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <thread>
#include <vector>

#include "hub_test_sink.hpp"
#include "redis_process.hpp"
#include "skyrelay/broker/redis_broker.hpp"
#include "skyrelay/broker/redis_client.hpp"
#include "skyrelay/broker/redis_sio_recovery.hpp"

namespace skyrelay {
namespace {

using namespace std::chrono_literals;
using redis::parse_offset;
using redis::parse_pid;
using redis::sio_claim_result;
using redis::sio_offset;
using redis::sio_recovery_record;

redis::redis_url url_of(const testing::redis_process& r) {
  redis::redis_url u;
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

sio_recovery_record record_of(const std::string& sid) {
  return {"/chat", sid, "alice", 3,
          {{"", true, "r.1733500000123456", 7}, {"lobby", false, "r.1733500000999999", 12}}};
}

TEST(SioRecoveryText, PidIsTheSidAndAnUnguessableSecret) {
  std::set<std::string> secrets;
  for (int i = 0; i < 100; ++i) {
    const auto pid = redis::make_pid("AbC-_9");
    auto parts = parse_pid(pid);
    ASSERT_TRUE(parts) << pid;
    EXPECT_EQ(parts->sid, "AbC-_9");
    EXPECT_EQ(parts->secret.size(), 22u);
    secrets.insert(std::string(parts->secret));
  }
  EXPECT_EQ(secrets.size(), 100u);
  EXPECT_THROW(redis::make_pid("a.b"), std::invalid_argument);
  EXPECT_THROW(redis::make_pid(""), std::invalid_argument);
}

TEST(SioRecoveryText, PidsOfAnotherShapeAreRefused) {
  const std::string secret(22, 'x');
  EXPECT_TRUE(parse_pid("sid." + secret));
  for (const std::string& bad : std::vector<std::string>{
           "sid", "sid." + secret + "x", "sid." + secret.substr(1), "." + secret,
        "s*d." + secret, "sid." + secret.substr(1) + "*", std::string(65, 'a') + "." + secret,
        "sid.." + secret.substr(1), std::string("pid-from-memory-mode")})
    EXPECT_FALSE(parse_pid(bad)) << bad;
}

TEST(SioRecoveryText, OffsetsRoundTrip) {
  const sio_offset o{42, 3, 1, {7, 0, 18446744073709551ull}};
  const auto text = redis::format_offset(o);
  EXPECT_EQ(text, "42.3.1.7.0.18446744073709551");
  auto back = parse_offset(text, 17);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, o);
}

TEST(SioRecoveryText, HostileOffsetsAreRefused) {
  for (const std::string& bad : std::vector<std::string>{
           "", "1", "1.2.3", "1.2.3.", ".1.2.3.4", "1..2.3.4", "1.2.3.-4", "1.2.3.+4",
        "1.2.3.4a", "1.2.3. 4", "1.2.3.99999999999999999999", "18446744073709551616.0.0.1"})
    EXPECT_FALSE(parse_offset(bad, 17)) << bad;
  // At most max_channels positions.
  EXPECT_TRUE(parse_offset("1.1.0.1.2", 2));
  EXPECT_FALSE(parse_offset("1.1.0.1.2.3", 2));
  EXPECT_FALSE(parse_offset(std::string(10'000, '1'), 17));  // too long to be split at all
}

TEST(SioRecoveryText, RecordsRoundTripWithinTheirLimits) {
  const auto r = record_of("sid1");
  const auto json = redis::encode_record(r);
  auto back = redis::decode_record(json, {});
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, r);
  EXPECT_FALSE(redis::decode_record(json, {1, 8192}));               // over max_channels
  EXPECT_FALSE(redis::decode_record(json, {17, json.size() - 1}));  // over max_bytes
  for (const std::string& bad : std::vector<std::string>{
           "[]", "{}", "not json", R"({"nsp":"/","sid":"s","sub":"","ver":-1,"c":[]})",
        R"({"nsp":"/","sid":"s","sub":"","ver":1,"c":[["a",0,"e"]]})",
        R"({"nsp":"/","sid":"s","sub":"","ver":1,"c":[["a",0,"e","7"]]})"})
    EXPECT_FALSE(redis::decode_record(bad, {})) << bad;
}

struct SioRecoveryTwoNodes : ::testing::Test {
  testing::redis_process server;
  redis::redis_client a{url_of(server)}, b{url_of(server)};
  void SetUp() override {
    ASSERT_TRUE(a.wait_connected(5s));
    ASSERT_TRUE(b.wait_connected(5s));
  }
  bool exists(const std::string& key) {
    return b.call({"EXISTS", key}, 2s).integer == 1;
  }
};

TEST_F(SioRecoveryTwoNodes, AnotherNodeTakesTheRecordOnceWithItsDirectCount) {
  redis::sio_recovery_store on_a(a, "sr:", 60s), on_b(b, "sr:", 60s);
  const auto pid = redis::make_pid("sidA");
  ASSERT_TRUE(on_a.save(pid, record_of("sidA")));
  on_a.count_direct("sidA");
  on_a.count_direct("sidB");  // no socket with recovery: not counted anywhere
  ASSERT_TRUE(eventually([&] { return b.call({"GET", on_b.direct_key("sidA")}, 2s).str == "1"; }));
  EXPECT_FALSE(exists(on_b.direct_key("sidB")));

  auto c = on_b.claim(pid, "/chat", 2s);
  ASSERT_EQ(c.result, sio_claim_result::resumable);
  EXPECT_EQ(c.record, record_of("sidA"));
  EXPECT_EQ(c.direct, 1u);
  // Taken: nobody gets it again, from either node.
  EXPECT_EQ(on_a.claim(pid, "/chat", 2s).result, sio_claim_result::unknown);
  EXPECT_EQ(on_b.counters().claimed, 1u);
  EXPECT_EQ(on_a.counters().claim_refused, 1u);
}

TEST_F(SioRecoveryTwoNodes, AForgedOrForeignPidFindsNothing) {
  redis::sio_recovery_store on_a(a, "sr:", 60s), on_b(b, "sr:", 60s);
  const auto pid = redis::make_pid("sidA");
  ASSERT_TRUE(on_a.save(pid, record_of("sidA")));
  const auto key = on_a.record_key("sidA", parse_pid(pid)->secret);
  ASSERT_TRUE(eventually([&] { return exists(key); }));
  // The right sid with another secret, another socket's pid, a memory-mode pid, garbage.
  const auto forged = "sidA." + std::string(22, 'A');
  for (const std::string& bad : std::vector<std::string>{forged, redis::make_pid("sidA"), "sidA",
                                                         "{\"$ne\":1}"})
    EXPECT_EQ(on_b.claim(bad, "/chat", 2s).result, sio_claim_result::unknown) << bad;
  // The right pid in another namespace: refused, and the record stays for its own.
  EXPECT_EQ(on_b.claim(pid, "/", 2s).result, sio_claim_result::wrong_namespace);
  EXPECT_TRUE(exists(key));
  EXPECT_EQ(on_b.claim(pid, "/chat", 2s).result, sio_claim_result::resumable);
}

TEST_F(SioRecoveryTwoNodes, ARecordLastsTheWindowThenIsGone) {
  redis::sio_recovery_store on_a(a, "sr:", 300ms), on_b(b, "sr:", 300ms);
  const auto pid = redis::make_pid("sidA");
  ASSERT_TRUE(on_a.save(pid, record_of("sidA")));
  const auto key = on_a.record_key("sidA", parse_pid(pid)->secret);
  ASSERT_TRUE(eventually([&] { return exists(key); }));
  const auto ttl = b.call({"PTTL", key}, 2s).integer;
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 300);
  // The direct counter outlives the record (twice the window).
  EXPECT_GT(b.call({"PTTL", on_a.direct_key("sidA")}, 2s).integer, 300);
  ASSERT_TRUE(eventually([&] { return !exists(key); }));
  EXPECT_EQ(on_b.claim(pid, "/chat", 2s).result, sio_claim_result::unknown);
}

TEST_F(SioRecoveryTwoNodes, ARecordOverItsLimitsIsNotWrittenAndTheOldOneGoes) {
  redis::sio_recovery_store on_a(a, "sr:", 60s, {2, 8192}), on_b(b, "sr:", 60s);
  const auto pid = redis::make_pid("sidA");
  auto small = record_of("sidA");
  ASSERT_TRUE(on_a.save(pid, small));
  const auto key = on_a.record_key("sidA", parse_pid(pid)->secret);
  ASSERT_TRUE(eventually([&] { return exists(key); }));
  small.channels.push_back({"third", false, "r.1", 0});
  EXPECT_FALSE(on_a.save(pid, small));
  EXPECT_EQ(on_a.counters().save_refused, 1u);
  ASSERT_TRUE(eventually([&] { return !exists(key); }));
  EXPECT_FALSE(on_a.save(redis::make_pid("other"), record_of("sidA")));  // not its pid
}

TEST_F(SioRecoveryTwoNodes, ARecordThisVersionCannotReadIsCorrupt) {
  redis::sio_recovery_store on_b(b, "sr:", 60s);
  const auto pid = redis::make_pid("sidA");
  const auto key = on_b.record_key("sidA", parse_pid(pid)->secret);
  b.call({"HSET", key, "nsp", "/chat", "r", "{\"v\":99}"}, 2s);
  EXPECT_EQ(on_b.claim(pid, "/chat", 2s).result, sio_claim_result::corrupt);
  EXPECT_FALSE(exists(key));
  // A record naming another sid than its key's is not taken either.
  b.call({"HSET", key, "nsp", "/chat", "r", redis::encode_record(record_of("sidB"))}, 2s);
  EXPECT_EQ(on_b.claim(pid, "/chat", 2s).result, sio_claim_result::corrupt);
}

// The publish script counts direct publications to a sid that has a counter (a socket with
// recovery), once per publication whatever the number of times it is named, and whether its
// node is alive or dead: the proof a resuming node needs that no direct emit was missed.
TEST_F(SioRecoveryTwoNodes, AClaimRoutesTheSidToTheClaimingNodeAndTheCounterReadsOn) {
  redis::sio_recovery_store on_a(a, "sr:", 60s), on_b(b, "sr:", 60s);
  const auto pid = redis::make_pid("sidA");
  b.call({"SET", "sr:sid:sidA", "node-a"}, 2s);
  ASSERT_TRUE(on_a.save(pid, record_of("sidA")));
  ASSERT_TRUE(eventually([&] { return on_b.direct_now("sidA", 2s) == 0u; }));
  // A claim that names no node leaves the registry; one that names a node moves the sid.
  EXPECT_EQ(on_b.claim(redis::make_pid("sidA"), "/chat", 2s, "node-b").result,
            sio_claim_result::unknown);
  EXPECT_EQ(b.call({"GET", "sr:sid:sidA"}, 2s).str, "node-a");
  ASSERT_EQ(on_b.claim(pid, "/chat", 2s, "node-b").result, sio_claim_result::resumable);
  EXPECT_EQ(b.call({"GET", "sr:sid:sidA"}, 2s).str, "node-b");
  on_a.count_direct("sidA");
  EXPECT_TRUE(eventually([&] { return on_b.direct_now("sidA", 2s) == 1u; }));
  EXPECT_FALSE(on_b.direct_now("nobody", 2s));
}

TEST_F(SioRecoveryTwoNodes, TheOldNodeLeavesARecordAnotherNodeResumed) {
  redis::sio_recovery_store on_a(a, "sr:", 60s), on_b(b, "sr:", 60s);
  on_a.set_node_id("node-a");
  on_b.set_node_id("node-b");
  const auto pid = redis::make_pid("sidA");
  const auto parts = redis::parse_pid(pid);
  const auto key = on_b.record_key(parts->sid, parts->secret);
  ASSERT_TRUE(on_a.save(pid, record_of("sidA")));  // no registry entry yet: written
  ASSERT_TRUE(eventually([&] { return exists(key); }));
  b.call({"SET", "sr:sid:sidA", "node-a"}, 2s);
  ASSERT_EQ(on_b.claim(pid, "/chat", 2s, "node-b").result, sio_claim_result::resumable);
  ASSERT_TRUE(on_b.save(pid, record_of("sidA")));
  ASSERT_TRUE(eventually([&] { return exists(key); }));
  // The old node's refresh and its drop at the window's end change nothing now.
  auto stale = record_of("sidA");
  stale.version = 99;
  on_a.save(pid, stale);
  on_a.drop(pid);
  on_a.count_direct("sidA");  // behind both, on the same connection: a barrier
  ASSERT_TRUE(eventually([&] { return on_b.direct_now("sidA", 2s) == 1u; }));
  EXPECT_TRUE(exists(key));
  auto c = on_b.claim(pid, "/chat", 2s, "node-b");
  ASSERT_EQ(c.result, sio_claim_result::resumable);
  EXPECT_EQ(c.record, record_of("sidA"));
  // Its own node drops it.
  ASSERT_TRUE(on_b.save(pid, record_of("sidA")));
  on_b.drop(pid);
  EXPECT_TRUE(eventually([&] { return !exists(key); }));
}

TEST_F(SioRecoveryTwoNodes, NeverNumberedReadsTheChannelsSequence) {
  redis::sio_recovery_store store(b, "sr:", 60s);
  EXPECT_TRUE(store.never_numbered("/", "room", false, 2s));  // no sequence
  b.call({"HSET", "sr:{r1:/room}:m", "epoch", "e", "seq", "0"}, 2s);
  EXPECT_TRUE(store.never_numbered("/", "room", false, 2s));
  b.call({"HSET", "sr:{r1:/room}:m", "seq", "3"}, 2s);
  EXPECT_FALSE(store.never_numbered("/", "room", false, 2s));
  b.call({"HSET", "sr:{b5:/chat}:m", "epoch", "e", "seq", "1"}, 2s);
  EXPECT_FALSE(store.never_numbered("/chat", "", true, 2s));
  EXPECT_TRUE(store.never_numbered("/", "", true, 2s));
}

TEST_F(SioRecoveryTwoNodes, ThePublishScriptCountsDirectPublicationsToASidWithACounter) {
  hub h;
  h.add_encoder([](const publication& p, const publish_meta&) { return make_frame(p.event); });
  redis::redis_broker_options o;
  o.url = url_of(server);
  o.prefix = "sr:";
  auto broker = std::make_unique<redis::redis_broker>(h, o);
  h.set_connection_listener(
      [&broker](const std::string& sid, bool added) { broker->connection_changed(sid, added); });
  ASSERT_TRUE(eventually([&] { return broker->status().ok; }));
  redis::sio_recovery_store store(a, "sr:", 60s);
  auto member = std::make_shared<testing::sink>("sidA");
  ASSERT_TRUE(h.add(member));
  ASSERT_TRUE(eventually([&] { return b.call({"GET", "sr:sid:sidA"}, 2s).str == broker->node_id(); }));
  ASSERT_TRUE(store.save(redis::make_pid("sidA"), record_of("sidA")));
  // A sid on a dead node (its alive key gone), with a counter: counted, delivered to nobody.
  b.call({"SET", "sr:sid:ghost", "dead-node"}, 2s);
  ASSERT_TRUE(store.save(redis::make_pid("ghost"), record_of("ghost")));
  const auto counter = [&](const std::string& sid) {
    return b.call({"GET", store.direct_key(sid)}, 2s).str;
  };
  ASSERT_TRUE(eventually([&] { return counter("sidA") == "0" && counter("ghost") == "0"; }));

  auto publish = [&](std::vector<std::string> to, std::vector<std::string> conns) {
    publication p;
    p.event = "e";
    p.to = std::move(to);
    p.to_conns = std::move(conns);
    publish_meta meta;
    broker->publish(p, &meta);
  };
  publish({"sidA"}, {});
  publish({"sidA", "sidA"}, {"sidA"});  // named three times: one publication
  publish({}, {"sidA"});
  publish({"ghost"}, {});
  publish({"some-room"}, {});  // a room: nobody's counter
  EXPECT_EQ(counter("sidA"), "3");
  EXPECT_EQ(counter("ghost"), "1");
  EXPECT_TRUE(eventually([&] { return member->count() == 3; }));
  // A sid without a counter (no socket with recovery) gets none.
  auto plain = std::make_shared<testing::sink>("plain");
  ASSERT_TRUE(h.add(plain));
  ASSERT_TRUE(eventually([&] { return b.call({"GET", "sr:sid:plain"}, 2s).str == broker->node_id(); }));
  publish({"plain"}, {});
  EXPECT_FALSE(exists(store.direct_key("plain")));
  broker.reset();  // its thread ends before the hub goes
}

TEST(SioRecoveryStore, RedisDownIsUnavailable) {
  testing::redis_process server;
  redis::redis_client c(url_of(server));
  ASSERT_TRUE(c.wait_connected(5s));
  redis::sio_recovery_store store(c, "sr:", 60s);
  server.kill_now();
  ASSERT_TRUE(eventually([&] { return !c.connected(); }));
  EXPECT_EQ(store.claim(redis::make_pid("sidA"), "/", 500ms).result,
            sio_claim_result::unavailable);
  EXPECT_EQ(store.counters().errors, 1u);
}

}  // namespace
}  // namespace skyrelay
