// redis::redis_broker against a real redis-server: two hubs with a broker each in one process
// are two nodes. A room's publications from both nodes reach both nodes' members in one order
// with Redis's seq; a publication to several rooms reaches a member once; a direct emit reaches
// a sid on the other node, and a room named like that sid gets nothing; a gap (subscriber
// connections killed while publications go on) is caught up from the stream; a restarted,
// empty Redis gives an explicit epoch change, never a silent hole; history is read on a node
// that never followed the room; a broker without Redis refuses to publish.
#include <gtest/gtest.h>

#include <signal.h>

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "hub_test_sink.hpp"
#include "redis_process.hpp"
#include "skyrelay/broker/redis_broker.hpp"
#include "skyrelay/broker/redis_connection.hpp"
#include "skyrelay/broker/redis_wire.hpp"
#include "skyrelay/core/frame.hpp"

namespace skyrelay::redis {
namespace {

using namespace std::chrono_literals;
using skyrelay::testing::redis_process;
using skyrelay::testing::sink;

// Polls `pred` every 10 ms for up to 15 s (a bound, not a speed assertion).
template <class Pred>
bool eventually(Pred pred) {
  const auto end = std::chrono::steady_clock::now() + 15s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// A frame's bytes: "<event>|<topic>|<seq>|<data>".
frame_ptr encode(const publication& p, const publish_meta& m) {
  return make_frame(p.event + "|" + std::string(m.topic) + "|" + std::to_string(m.seq) + "|" +
                    p.data);
}

struct node {
  hub h;
  std::unique_ptr<redis_broker> b;

  explicit node(std::uint16_t port, const std::string& prefix,
                std::size_t max_queued = redis_broker_options{}.max_queued_publishes) {
    h.add_encoder(encode);
    redis_broker_options o;
    o.max_queued_publishes = max_queued;
    o.url.host = "127.0.0.1";
    o.url.port = port;
    o.prefix = prefix;
    o.heartbeat = 200ms;
    o.deaf_after = 3s;
    b = std::make_unique<redis_broker>(h, o);
    h.set_channel_listener([this](const channel& c, bool has) {
      if (has) b->subscribe(c);
      else b->unsubscribe(c);
    });
    h.set_connection_listener(
        [this](const std::string& sid, bool added) { b->connection_changed(sid, added); });
  }
  ~node() { b.reset(); }  // the broker's thread ends before the hub goes

  bool up() { return eventually([&] { return b->status().ok; }); }

  std::shared_ptr<sink> member(const std::string& sid, const std::vector<std::string>& rooms) {
    auto s = std::make_shared<sink>(sid);
    EXPECT_TRUE(h.add(s));
    for (const auto& r : rooms) EXPECT_TRUE(h.join(sid, {"/", r}));
    return s;
  }

  // Waits until the node follows `rooms` (subscribed and caught up).
  bool follows(const std::vector<std::string>& rooms) {
    std::vector<channel> chans;
    for (const auto& r : rooms) chans.push_back({"/", r});
    auto done = std::make_shared<std::promise<bool>>();
    auto f = done->get_future();
    b->warm(chans, [done](bool ok) { done->set_value(ok); });
    return f.wait_for(15s) == std::future_status::ready && f.get();
  }

  // Publishes, retrying while the broker is unavailable (a refused publish published nothing).
  // The receipt's topic views `p`'s name, so `p` must outlive the receipt's use.
  publish_meta publish(const publication& p) {
    publish_meta meta;
    for (int i = 0; i < 1500; ++i) {
      try {
        b->publish(p, &meta);
        return meta;
      } catch (const broker_unavailable&) {
        std::this_thread::sleep_for(10ms);
      }
    }
    ADD_FAILURE() << "the broker stayed unavailable";
    return meta;
  }
};

publication to_rooms(std::string event, std::vector<std::string> to, std::string data = "0") {
  publication p;
  p.event = std::move(event);
  p.data = std::move(data);
  p.to = std::move(to);
  return p;
}

// One command on a connection of its own (for the test's own look at Redis).
redis_value command(std::uint16_t port, std::vector<std::vector<std::string>> cmds) {
  boost::asio::io_context ioc;
  redis_connection::options o;
  o.url.host = "127.0.0.1";
  o.url.port = port;
  auto c = redis_connection::create(ioc.get_executor(), o);
  redis_value last;
  std::size_t left = cmds.size();
  c->start([](std::error_code) {});
  for (auto& cmd : cmds)
    c->execute(std::move(cmd), [&](std::error_code, redis_value v) {
      last = std::move(v);
      --left;
    });
  const auto end = std::chrono::steady_clock::now() + 10s;
  while (left > 0 && std::chrono::steady_clock::now() < end) {
    ioc.restart();
    ioc.run_for(10ms);
  }
  c->close();
  ioc.restart();
  ioc.run_for(10ms);
  return last;
}

class RedisBroker : public ::testing::Test {
 protected:
  redis_process redis_;
  node a_{redis_.port(), "t:"};
  node b_{redis_.port(), "t:"};
  void SetUp() override {
    ASSERT_TRUE(a_.up());
    ASSERT_TRUE(b_.up());
  }
};

TEST_F(RedisBroker, OneRoomOneOrderOnBothNodesWithRedisSeq) {
  auto ma = a_.member("ma", {"room"});
  auto mb = b_.member("mb", {"room"});
  ASSERT_TRUE(a_.follows({"room"}));
  ASSERT_TRUE(b_.follows({"room"}));
  constexpr int per_node = 100;
  auto run = [](node& n, const char* who) {
    for (int i = 0; i < per_node; ++i) n.publish(to_rooms("e", {"room"}, who + std::to_string(i)));
  };
  std::thread ta(run, std::ref(a_), "a");
  std::thread tb(run, std::ref(b_), "b");
  ta.join();
  tb.join();
  ASSERT_TRUE(eventually([&] { return ma->count() == 2 * per_node && mb->count() == 2 * per_node; }))
      << ma->count() << " " << mb->count();
  const auto got_a = ma->bytes();
  EXPECT_EQ(got_a, mb->bytes()) << "both nodes' members see one order";
  for (std::size_t i = 0; i < got_a.size(); ++i) {
    const std::string prefix = "e|room|" + std::to_string(i + 1) + "|";
    EXPECT_EQ(got_a[i].rfind(prefix, 0), 0u) << got_a[i];
  }
  // Each node's own publications keep their order within the one order.
  int next_a = 0, next_b = 0;
  for (const auto& f : got_a) {
    const std::string data = f.substr(f.rfind('|') + 1);
    if (data[0] == 'a') EXPECT_EQ(data, "a" + std::to_string(next_a++));
    else EXPECT_EQ(data, "b" + std::to_string(next_b++));
  }
  EXPECT_EQ(next_a, per_node);
  EXPECT_EQ(next_b, per_node);
}

TEST_F(RedisBroker, ReceiptCarriesRedisSeqAndEpoch) {
  // A receipt's topic views the publication's own name: the publication outlives it here.
  const publication p = to_rooms("e", {"r"});
  auto m1 = a_.publish(p);
  auto m2 = b_.publish(p);
  EXPECT_EQ(m1.topic, "r");
  EXPECT_EQ(m1.seq, 1u);
  EXPECT_EQ(m2.seq, 2u);
  ASSERT_EQ(m1.epochs.size(), 1u);
  ASSERT_EQ(m2.epochs.size(), 1u);
  EXPECT_EQ(m1.epochs[0], m2.epochs[0]) << "one sequence, made once in Redis";
  EXPECT_EQ(m1.epochs[0].rfind(a_.h.epoch_prefix() + ".", 0), 0u) << "made by a's first publish";
}

TEST_F(RedisBroker, ARoomsOfSeveralRoomsReachAMemberOnce) {
  auto both = b_.member("both", {"r1", "r2"});
  auto only2 = b_.member("only2", {"r2"});
  ASSERT_TRUE(b_.follows({"r1", "r2"}));
  a_.publish(to_rooms("multi", {"r1", "r2"}));
  a_.publish(to_rooms("marker", {"r1"}));
  a_.publish(to_rooms("marker", {"r2"}));
  ASSERT_TRUE(eventually([&] { return both->count() >= 3 && only2->count() >= 2; }));
  std::this_thread::sleep_for(100ms);  // anything extra would have come by now
  auto got = both->bytes();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].rfind("multi||0|", 0), 0u) << got[0];  // several rooms: no topic, no seq
  EXPECT_EQ(only2->count(), 2u);
}

TEST_F(RedisBroker, DirectEmitReachesASidOnTheOtherNodeAndNotARoomOfThatName) {
  auto target = b_.member("sid-on-b", {});
  auto squatter = a_.member("squatter", {"sid-on-b"});  // a room named like b's sid
  ASSERT_TRUE(a_.follows({"sid-on-b"}));
  ASSERT_TRUE(eventually([&] {
    return command(redis_.port(), {{"GET", "t:sid:sid-on-b"}}).str == b_.b->node_id();
  }));
  a_.publish(to_rooms("direct", {"sid-on-b"}));
  publication conns;
  conns.event = "conns";
  conns.data = "1";
  conns.to_conns = {"sid-on-b"};
  a_.publish(conns);
  ASSERT_TRUE(eventually([&] { return target->count() == 2; }));
  EXPECT_EQ(target->bytes()[0].rfind("direct|", 0), 0u);
  EXPECT_EQ(target->bytes()[1].rfind("conns|", 0), 0u);
  // Once closed, the sid is nobody's: still not the room.
  b_.h.remove("sid-on-b");
  ASSERT_TRUE(eventually(
      [&] { return command(redis_.port(), {{"GET", "t:sid:sid-on-b"}}).str == "-"; }));
  a_.publish(to_rooms("after-close", {"sid-on-b"}));
  a_.publish(to_rooms("marker", {"other"}));
  auto other = b_.member("other-member", {"other"});
  ASSERT_TRUE(b_.follows({"other"}));
  a_.publish(to_rooms("marker", {"other"}));
  ASSERT_TRUE(eventually([&] { return other->count() == 1; }));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(squatter->count(), 0u) << "a room named like a sid never gets that sid's emits";
  EXPECT_EQ(target->count(), 2u);
}

TEST_F(RedisBroker, GapIsCaughtUpFromTheStream) {
  auto mb = b_.member("mb", {"g"});
  ASSERT_TRUE(b_.follows({"g"}));
  for (int i = 1; i <= 3; ++i) a_.publish(to_rooms("e", {"g"}, std::to_string(i)));
  ASSERT_TRUE(eventually([&] { return mb->count() == 3; }));
  // Every subscriber connection is cut, and three publications run before any node can
  // connect again (backoff >= 100 ms): nobody hears them live.
  std::vector<std::vector<std::string>> cmds{{"CLIENT", "KILL", "TYPE", "pubsub"}};
  for (int i = 4; i <= 6; ++i) {
    publication p = to_rooms("e", {"g"}, std::to_string(i));
    cmds.push_back({"EVAL", publish_script(), "0", "t:", encode_body(p, "ts", "test"),
                    "test:" + std::to_string(i), "/", "1000", "60000", "test", "", "1", "g", "0"});
  }
  command(redis_.port(), cmds);
  ASSERT_TRUE(eventually([&] { return b_.b->status().ok && b_.b->counters().reconnects >= 1; }));
  a_.publish(to_rooms("e", {"g"}, "7"));
  ASSERT_TRUE(eventually([&] { return mb->count() == 7; })) << mb->count();
  auto got = mb->bytes();
  for (int i = 1; i <= 7; ++i)
    EXPECT_EQ(got[i - 1], "e|g|" + std::to_string(i) + "|" + std::to_string(i));
  EXPECT_GE(b_.b->counters().gaps_caught_up, 1u);
}

// A failover: the promoted replica lacks what the old master numbered last (here: its copy of
// the channel stands at seq 1 and was numbered under another replication ID). Its next seq is
// one the nodes delivered already; a new epoch makes that an explicit reset, never a skip.
TEST_F(RedisBroker, AChannelNumberedUnderAnotherServerStartsANewEpoch) {
  auto mb = b_.member("mb", {"x"});
  ASSERT_TRUE(b_.follows({"x"}));
  const auto first = a_.publish(to_rooms("e", {"x"}, "1"));
  a_.publish(to_rooms("e", {"x"}, "2"));
  ASSERT_TRUE(eventually([&] { return mb->count() == 2; }));
  command(redis_.port(), {{"HSET", "t:{r1:/x}:m", "replid", "the-old-master", "seq", "1"}});
  const auto after = a_.publish(to_rooms("e", {"x"}, "3"));
  EXPECT_EQ(after.seq, 1u) << "a new sequence, not seq 2 again";
  ASSERT_EQ(after.epochs.size(), 1u);
  EXPECT_NE(after.epochs[0], first.epochs[0]);
  ASSERT_TRUE(eventually([&] { return mb->count() == 3; })) << "delivered, not taken for seen";
  EXPECT_EQ(mb->bytes()[2], "e|x|1|3");
  history_request q;
  q.ch = {"/", "x"};
  q.since_seq = 2;
  q.epoch = first.epochs[0];
  EXPECT_EQ(b_.h.read_history(q).reset, "epoch_changed");
  // The server's own ID is kept with the channel: the next publication continues it.
  EXPECT_EQ(a_.publish(to_rooms("e", {"x"}, "4")).seq, 2u);
}

TEST_F(RedisBroker, RestartedRedisIsAnExplicitEpochChangeNeverASilentHole) {
  auto mb = b_.member("mb", {"x"});
  ASSERT_TRUE(b_.follows({"x"}));
  const auto first = a_.publish(to_rooms("e", {"x"}, "1"));
  a_.publish(to_rooms("e", {"x"}, "2"));
  ASSERT_TRUE(eventually([&] { return mb->count() == 2; }));
  redis_.restart();
  ASSERT_TRUE(eventually([&] { return b_.b->status().ok && b_.b->counters().reconnects >= 1; }));
  const auto after = a_.publish(to_rooms("e", {"x"}, "3"));
  EXPECT_EQ(after.seq, 1u) << "an empty Redis starts the sequence again";
  ASSERT_EQ(after.epochs.size(), 1u);
  EXPECT_NE(after.epochs[0], first.epochs[0]);
  ASSERT_TRUE(eventually([&] { return mb->count() == 3; }));
  EXPECT_EQ(mb->bytes()[2], "e|x|1|3");
  // A resume from the old sequence is told so.
  history_request q;
  q.ch = {"/", "x"};
  q.since_seq = 2;
  q.epoch = first.epochs[0];
  auto h = b_.h.read_history(q);
  EXPECT_FALSE(h.complete);
  EXPECT_EQ(h.reset, "epoch_changed");
  EXPECT_EQ(b_.h.position({"/", "x"}).epoch, after.epochs[0]);
}

TEST_F(RedisBroker, HistoryIsReadOnANodeThatNeverFollowedTheRoom) {
  publish_meta last;
  for (int i = 1; i <= 4; ++i) last = a_.publish(to_rooms("e", {"h"}, std::to_string(i)));
  ASSERT_TRUE(b_.follows({"h"}));
  EXPECT_EQ(b_.h.position({"/", "h"}).seq, 4u);
  EXPECT_EQ(b_.h.position({"/", "h"}).epoch, last.epochs[0]);
  history_request q;
  q.ch = {"/", "h"};
  q.since_seq = 2;
  q.epoch = last.epochs[0];
  auto h = b_.b->history(q);
  ASSERT_TRUE(h.complete) << h.reset;
  ASSERT_EQ(h.entries.size(), 2u);
  EXPECT_EQ(h.entries[0]->pub.data, "3");
  EXPECT_EQ(h.entries[1]->pub.data, "4");
  EXPECT_EQ(h.entries[1]->seq, 4u);
}

TEST_F(RedisBroker, WithoutRedisPublishFailsAtOnceAndStatusSaysWhy) {
  redis_.stop();
  ASSERT_TRUE(eventually([&] { return !a_.b->status().ok; }));
  EXPECT_FALSE(a_.b->status().reason.empty());
  EXPECT_THROW(a_.b->publish(to_rooms("e", {"r"}), nullptr), broker_unavailable);
  redis_.restart();
  ASSERT_TRUE(a_.up());
  EXPECT_NO_THROW(a_.b->publish(to_rooms("e", {"r"}), nullptr));
}

// Publications are pipelined: a thread's publications land in its order, whatever the other
// threads do, and each completion carries Redis's seq (1 .. N over all publishers).
TEST_F(RedisBroker, PublishAsyncPipelinesAndKeepsEachPublishersOrder) {
  auto mb = b_.member("mb", {"p"});
  ASSERT_TRUE(b_.follows({"p"}));
  constexpr int per_thread = 400;
  std::vector<std::vector<std::uint64_t>> seqs(2);
  std::atomic<int> errors{0}, done{0};
  auto run = [&](int t) {
    for (int i = 0; i < per_thread; ++i) {
      const publication p = to_rooms("e", {"p"}, std::to_string(t) + ":" + std::to_string(i));
      a_.b->publish_async(p, [&, t](publish_outcome r) {
        if (r.error || !r.meta.topic.empty()) ++errors;
        seqs[t].push_back(r.meta.seq);  // completions come on the broker's one thread
        ++done;
      });
    }
  };
  std::thread t0(run, 0), t1(run, 1);
  t0.join();
  t1.join();
  ASSERT_TRUE(eventually([&] { return done == 2 * per_thread; })) << done;
  EXPECT_EQ(errors, 0);
  std::vector<bool> seen(2 * per_thread + 1);
  for (const auto& mine : seqs) {
    for (std::size_t i = 1; i < mine.size(); ++i) EXPECT_LT(mine[i - 1], mine[i]);
    for (auto q : mine) {
      ASSERT_TRUE(q >= 1 && q <= 2 * per_thread) << q;
      EXPECT_FALSE(seen[q]) << q;
      seen[q] = true;
    }
  }
  ASSERT_TRUE(eventually([&] { return mb->count() == 2 * per_thread; })) << mb->count();
  int next[2] = {0, 0};
  for (const auto& f : mb->bytes()) {
    const std::string data = f.substr(f.rfind('|') + 1);
    const int t = data[0] - '0';
    EXPECT_EQ(data, std::to_string(t) + ":" + std::to_string(next[t]++));
  }
  EXPECT_EQ(a_.b->counters().publish_queued, 0u);
}

// A stalled Redis (SIGSTOP): at most max_queued_publishes wait, the next is refused at once
// with broker_busy; when Redis goes on they land; when it dies they fail, each once.
TEST(RedisBrokerQueue, FullQueueRefusesAndLostConnectionFailsWhatWasInFlight) {
  redis_process redis;
  node a{redis.port(), "q:", 3};
  ASSERT_TRUE(a.up());
  std::atomic<int> ok{0}, failed{0};
  auto count = [&](publish_outcome r) { ++(r.error ? failed : ok); };
  ASSERT_EQ(::kill(redis.pid(), SIGSTOP), 0);
  for (int i = 0; i < 3; ++i) a.b->publish_async(to_rooms("e", {"q"}), count);
  bool busy = false;
  a.b->publish_async(to_rooms("e", {"q"}), [&](publish_outcome r) {
    try {
      if (r.error) std::rethrow_exception(r.error);
    } catch (const broker_busy&) {
      busy = true;
    }
  });
  EXPECT_TRUE(busy) << "refused inline, before anything waits";
  EXPECT_EQ(a.b->counters().publish_refused, 1u);
  EXPECT_EQ(a.b->counters().publish_queued, 3u);
  // A publish without a receipt (emit) waits for a place instead (up to publish_timeout).
  std::atomic<bool> returned{false};
  std::thread emitter([&] {
    EXPECT_NO_THROW(a.b->publish(to_rooms("e", {"q"}), nullptr));
    returned = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(returned) << "no place while redis is stopped";
  ASSERT_EQ(::kill(redis.pid(), SIGCONT), 0);
  emitter.join();
  ASSERT_TRUE(eventually([&] { return ok == 3 && a.b->counters().publish_queued == 0; }));
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(a.b->counters().publish_refused, 1u);

  ASSERT_EQ(::kill(redis.pid(), SIGSTOP), 0);
  for (int i = 0; i < 2; ++i) a.b->publish_async(to_rooms("e", {"q"}), count);
  redis.kill_now();
  ASSERT_TRUE(eventually([&] { return failed == 2; }));
  EXPECT_EQ(ok, 3);
  EXPECT_EQ(a.b->counters().publish_failed, 2u);
  EXPECT_EQ(a.b->counters().publish_queued, 0u);
}

TEST(RedisBrokerUrl, SchemesAndPrefix) {
  auto o = parse_broker_url("redis://:pw@127.0.0.1:6380/2?prefix=app1:");
  EXPECT_EQ(o.url.port, 6380);
  EXPECT_EQ(o.url.password, "pw");
  EXPECT_EQ(o.url.db, 2);
  EXPECT_EQ(o.prefix, "app1:");
  o = parse_broker_url("redis+sentinel://s1:1,s2/mymaster/2?prefix=p:");
  EXPECT_EQ(o.url.master_name, "mymaster");
  EXPECT_EQ(o.url.sentinels.size(), 2u);
  EXPECT_EQ(o.prefix, "p:");
  o = parse_broker_url("rediss://h:1/0?verify=none");
  EXPECT_TRUE(o.url.tls.enabled);
  const std::pair<const char*, const char*> bad[] = {
      {"rediss://h:1/0?ca=/nonexistent/ca.pem", "/nonexistent/ca.pem"},
      {"redis://h:1/0?db=3", "unknown query name db"},
      {"redis://h:1/0?prefix=", "prefix= needs a value"},
      {"rediss+sentinel://h:1/m", "not supported"},
      {"redis+cluster://h:1/3", "no database number"},
  };
  for (auto [text, words] : bad) {
    try {
      parse_broker_url(text);
      ADD_FAILURE() << text;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  }
  auto q = parse_broker_url("redis://h:1/0?publish_queue=50&prefix=x:");
  EXPECT_EQ(q.max_queued_publishes, 50u);
  EXPECT_EQ(q.prefix, "x:");
  for (const char* bad : {"redis://h:1/0?publish_queue=0", "redis://h:1/0?publish_queue=2x",
                          "redis://h:1/0?prefix=a&prefix=b", "redis://h:1/0?prefix="})
    EXPECT_THROW(parse_broker_url(bad), std::invalid_argument) << bad;
}

TEST(RedisWire, TagsKeepNamespaceAndRoomApart) {
  EXPECT_NE(room_tag({"/a", "b#c"}), room_tag({"/a#b", "c"}));
  auto t = parse_tag(room_tag({"/admin", "x}y"}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->ch.nsp, "/admin");
  EXPECT_EQ(t->ch.room, "x}y");
  EXPECT_FALSE(t->broadcasts);
  auto b = parse_tag(broadcast_tag("/chat"));
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->broadcasts);
  EXPECT_EQ(b->ch.nsp, "/chat");
  EXPECT_FALSE(parse_tag("{r9:/x}"));
}

TEST(RedisWire, BodyRoundTripKeepsBinary) {
  publication p = to_rooms("ev", {"a", "b"}, "{\"k\":1}");
  p.args = "1,{\"_placeholder\":true,\"num\":0}";
  p.binary = std::make_shared<const std::vector<std::string>>(
      std::vector<std::string>{std::string("\0\xff\x01", 3)});
  p.skip = {"s1"};
  p.policy = overflow_policy::drop_oldest;
  p.nsp = "/chat";
  publication q;
  std::string ts;
  ASSERT_TRUE(decode_body(encode_body(p, "2026-12-06T00:00:00Z", "n1"), q, ts));
  EXPECT_EQ(q.event, p.event);
  EXPECT_EQ(q.data, p.data);
  EXPECT_EQ(q.args, p.args);
  ASSERT_TRUE(q.binary);
  EXPECT_EQ(*q.binary, *p.binary);
  EXPECT_EQ(q.to, p.to);
  EXPECT_EQ(q.skip, p.skip);
  EXPECT_EQ(q.policy, p.policy);
  EXPECT_EQ(q.nsp, "/chat");
  EXPECT_EQ(ts, "2026-12-06T00:00:00Z");
  EXPECT_FALSE(decode_body("not cbor", q, ts));
}

}  // namespace
}  // namespace skyrelay::redis
