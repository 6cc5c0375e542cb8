// redis::redis_broker on a real 3-master Redis Cluster (testing::redis_cluster): two hubs with a
// broker each in one process are two nodes on `redis+cluster://`. Rooms whose tags are on
// three different masters reach both nodes' members in Redis's order with their receipts; a
// publication to rooms on two masters is numbered in each (two positions, two epochs) and
// reaches a member of both once; a direct emit is resolved (sid:<name> on its slot's master)
// to the other node's connection; and the URL's grammar.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <set>
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
using skyrelay::testing::sink;

template <class Pred>
bool within_15s(Pred pred) {  // a bound, not a speed assertion
  const auto end = std::chrono::steady_clock::now() + 15s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// "<event>|<topic>|<seq>|<data>"
frame_ptr encode(const publication& p, const publish_meta& m) {
  return make_frame(p.event + "|" + std::string(m.topic) + "|" + std::to_string(m.seq) + "|" +
                    p.data);
}

// The cluster's slot map, asked of its first master.
cluster_map slot_map(std::uint16_t port) {
  boost::asio::io_context ioc;
  redis_connection::options o;
  o.url.host = "127.0.0.1";
  o.url.port = port;
  auto c = redis_connection::create(ioc.get_executor(), o);
  c->start([](std::error_code) {});
  std::optional<cluster_map> map;
  bool done = false;
  c->execute({"CLUSTER", "SLOTS"}, [&](std::error_code, redis_value v) {
    map = parse_cluster_slots(v);
    done = true;
  });
  for (int i = 0; i < 1000 && !done; ++i) {
    ioc.restart();
    ioc.run_for(10ms);
  }
  c->close();
  ioc.restart();
  ioc.run_for(10ms);
  EXPECT_TRUE(map);
  return map ? *map : cluster_map{};
}

struct cluster_node {
  hub h;
  std::unique_ptr<redis_broker> b;

  explicit cluster_node(const testing::redis_cluster& cluster) {
    h.add_encoder(encode);
    std::string url = "redis+cluster://";
    for (const auto& n : cluster.nodes()) url += "127.0.0.1:" + std::to_string(n->port()) + ",";
    url.pop_back();
    auto o = parse_broker_url(url + "?prefix=c:");
    o.heartbeat = 200ms;
    b = std::make_unique<redis_broker>(h, o);
    h.set_channel_listener([this](const channel& c, bool has) {
      if (has) b->subscribe(c);
      else b->unsubscribe(c);
    });
    h.set_connection_listener(
        [this](const std::string& sid, bool added) { b->connection_changed(sid, added); });
  }
  ~cluster_node() { b.reset(); }

  std::shared_ptr<sink> member(const std::string& sid, const std::vector<std::string>& rooms) {
    auto s = std::make_shared<sink>(sid);
    EXPECT_TRUE(h.add(s));
    for (const auto& r : rooms) EXPECT_TRUE(h.join(sid, {"/", r}));
    return s;
  }

  bool follows(const std::vector<std::string>& rooms) {
    std::vector<channel> chans;
    for (const auto& r : rooms) chans.push_back({"/", r});
    auto done = std::make_shared<std::promise<bool>>();
    auto f = done->get_future();
    b->warm(chans, [done](bool ok) { done->set_value(ok); });
    return f.wait_for(15s) == std::future_status::ready && f.get();
  }

  publish_meta publish(const publication& p) {
    publish_meta meta;
    b->publish(p, &meta);
    return meta;
  }
};

publication to(std::string event, std::vector<std::string> rooms, std::string data = "0") {
  publication p;
  p.event = std::move(event);
  p.data = std::move(data);
  p.to = std::move(rooms);
  return p;
}

class RedisClusterBroker : public ::testing::Test {
 protected:
  testing::redis_cluster cluster_;
  cluster_node a_{cluster_};
  cluster_node b_{cluster_};
  std::vector<std::string> rooms_;  // one per master

  void SetUp() override {
    ASSERT_TRUE(within_15s([&] { return a_.b->status().ok && b_.b->status().ok; }))
        << a_.b->status().reason;
    const auto map = slot_map(cluster_.nodes()[0]->port());
    ASSERT_EQ(map.masters.size(), 3u);
    std::set<int> masters;
    for (int i = 0; i < 300 && rooms_.size() < 3; ++i) {
      const std::string room = "room" + std::to_string(i);
      if (masters.insert(map.owner[key_slot(room_tag({"/", room}))]).second) rooms_.push_back(room);
    }
    ASSERT_EQ(rooms_.size(), 3u);
  }
};

TEST_F(RedisClusterBroker, RoomsOnThreeMastersReachBothNodesInOrder) {
  auto ma = a_.member("ma", rooms_);
  auto mb = b_.member("mb", rooms_);
  ASSERT_TRUE(a_.follows(rooms_));
  ASSERT_TRUE(b_.follows(rooms_));
  constexpr int per_room = 30;
  for (int i = 0; i < per_room; ++i)
    for (const auto& room : rooms_) {
      const publication p = to("e", {room}, std::to_string(i));
      const auto meta = (i % 2 ? a_ : b_).publish(p);
      EXPECT_EQ(meta.seq, static_cast<std::uint64_t>(i + 1)) << room;  // Redis's, per room
    }
  const std::size_t total = per_room * rooms_.size();
  ASSERT_TRUE(within_15s([&] { return ma->count() == total && mb->count() == total; }))
      << ma->count() << " " << mb->count();
  for (const auto& member : {ma, mb}) {
    const auto got = member->bytes();
    for (const auto& room : rooms_) {
      int next = 0;
      for (const auto& f : got)
        if (f.rfind("e|" + room + "|", 0) == 0) {
          EXPECT_EQ(f, "e|" + room + "|" + std::to_string(next + 1) + "|" + std::to_string(next));
          ++next;
        }
      EXPECT_EQ(next, per_room) << room;
    }
  }
}

TEST_F(RedisClusterBroker, OnePublicationToRoomsOnTwoMastersReachesAMemberOfBothOnce) {
  const std::string r1 = rooms_[0], r2 = rooms_[1];
  auto both = b_.member("both", {r1, r2});
  auto only2 = a_.member("only2", {r2});
  ASSERT_TRUE(b_.follows({r1, r2}));
  ASSERT_TRUE(a_.follows({r2}));
  const publication multi = to("multi", {r1, r2});
  const auto meta = a_.publish(multi);
  ASSERT_TRUE(meta.positions);
  ASSERT_EQ(meta.positions->size(), 2u) << "numbered by each master's script";
  EXPECT_EQ(meta.epochs.size(), 2u);
  b_.publish(to("marker", {r1}));
  b_.publish(to("marker", {r2}));
  ASSERT_TRUE(within_15s([&] { return both->count() >= 3 && only2->count() >= 2; }));
  std::this_thread::sleep_for(200ms);  // anything extra would have come by now
  const auto got = both->bytes();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].rfind("multi||0|", 0), 0u) << got[0];
  EXPECT_EQ(only2->count(), 2u);
  // The later copy advanced the other room's log on b without a second delivery: each
  // marker is its room's seq 2 there.
  const std::set<std::string> markers{got[1], got[2]};
  EXPECT_EQ(markers, (std::set<std::string>{"marker|" + r1 + "|2|0", "marker|" + r2 + "|2|0"}));
}

TEST_F(RedisClusterBroker, DirectEmitIsResolvedToTheOtherNodesConnection) {
  auto target = b_.member("sid-on-b", {});
  ASSERT_TRUE(b_.follows({rooms_[0]}));
  // Until the registration landed, the name is a room: published again until it reaches b.
  ASSERT_TRUE(within_15s([&] {
    a_.publish(to("direct", {"sid-on-b"}));
    return target->count() > 0;
  }));
  publication conns;
  conns.event = "conns";
  conns.to_conns = {"sid-on-b"};
  a_.publish(conns);
  ASSERT_TRUE(within_15s([&] { return target->bytes().back().rfind("conns|", 0) == 0; }));
}

TEST(RedisClusterBrokerUrl, SeedsAndRefusals) {
  auto o = parse_broker_url("redis+cluster://:pw@h1:7000,h2:7001,[::1]:7002?prefix=app:");
  ASSERT_EQ(o.seeds.size(), 3u);
  EXPECT_EQ(o.seeds[1].host, "h2");
  EXPECT_EQ(o.seeds[1].port, 7001);
  EXPECT_EQ(o.seeds[2].host, "::1");
  EXPECT_EQ(o.url.host, "h1");
  EXPECT_EQ(o.url.password, "pw");
  EXPECT_EQ(o.prefix, "app:");
  EXPECT_TRUE(parse_broker_url("redis://h:1").seeds.empty());
  const std::pair<const char*, const char*> bad[] = {
      {"redis+cluster://h:1/2", "no database number"},
      {"redis+cluster://h:1?prefix=a{b}", "no { or }"},
      {"redis+cluster://h:1,,h:2", "bad Redis URL"},
      {"rediss+cluster://h:1", "scheme"},
  };
  for (auto [text, words] : bad) {
    try {
      parse_broker_url(text);
      ADD_FAILURE() << text;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace skyrelay::redis
