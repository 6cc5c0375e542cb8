// redis::redis_client on a real 3-master Redis Cluster (testing::redis_cluster): commands
// routed to the master of their key's slot by the slot map, a script's keys in one slot, and
// a slot moved under the client (MOVED followed once, the map updated).
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "redis_process.hpp"
#include "skyrelay/broker/redis_client.hpp"
#include "skyrelay/broker/redis_wire.hpp"

namespace skyrelay::redis {
namespace {

using namespace std::chrono_literals;

redis_url at(std::uint16_t port) {
  redis_url u;
  u.host = "127.0.0.1";
  u.port = port;
  return u;
}

struct cluster_client : ::testing::Test {
  testing::redis_cluster cluster;
  std::vector<std::unique_ptr<redis_client>> direct;  // one per master, no routing
  std::unique_ptr<redis_client> client;

  void SetUp() override {
    std::vector<redis_endpoint> seeds;
    for (const auto& n : cluster.nodes()) {
      seeds.push_back({"127.0.0.1", n->port()});
      direct.push_back(std::make_unique<redis_client>(at(n->port())));
    }
    client = std::make_unique<redis_client>(at(seeds.front().port), seeds);
    ASSERT_TRUE(client->wait_connected(15s)) << client->reason();
    for (auto& d : direct) ASSERT_TRUE(d->wait_connected(15s)) << d->reason();
  }

  // The index (in cluster.nodes()) of the master serving `key`'s slot now: the one that
  // answers rather than MOVED (an error reply: std::runtime_error).
  int owner(const std::string& key) {
    for (std::size_t i = 0; i < direct.size(); ++i) try {
        direct[i]->call({"EXISTS", key}, 1s);
        return static_cast<int>(i);
      } catch (const std::runtime_error&) {
      }
    return -1;
  }
  // The index of the master holding `key` (-1: none).
  int holder(const std::string& key) {
    const int i = owner(key);
    if (i < 0 || direct[static_cast<std::size_t>(i)]->call({"EXISTS", key}, 1s).integer != 1)
      return -1;
    return i;
  }
  std::string id_of(std::size_t i) { return direct[i]->call({"CLUSTER", "MYID"}, 1s).str; }
};

TEST_F(cluster_client, SendsEachCommandToItsKeysMaster) {
  std::vector<int> on(direct.size(), 0);
  for (int i = 0; i < 30; ++i) {
    const std::string key = "k" + std::to_string(i);
    client->call({"SET", key, std::to_string(i)}, 1s);
    EXPECT_EQ(client->call({"GET", key}, 1s).str, std::to_string(i));
    const int h = holder(key);
    ASSERT_GE(h, 0) << key;
    ++on[static_cast<std::size_t>(h)];
  }
  for (int n : on) EXPECT_GT(n, 0);  // every master got some: not all on the first seed
  EXPECT_EQ(client->redirects(), 0u);  // the map was right every time

  // A script with two keys of one slot (a hash tag) runs on that slot's master.
  const redis_script both{"redis.call('SET', KEYS[1], ARGV[1]) "
                          "redis.call('SET', KEYS[2], ARGV[1]) return 2"};
  EXPECT_EQ(client->eval(both, {"{t}a", "{t}b"}, {"x"}, 1s).integer, 2);
  EXPECT_EQ(holder("{t}a"), holder("{t}b"));
}

TEST_F(cluster_client, FollowsASlotMovedUnderIt) {
  const std::string key = "moving";
  const auto slot = std::to_string(key_slot(key));
  client->call({"GET", key}, 1s);  // routed by the map read at connect
  const int from = owner(key);
  ASSERT_GE(from, 0);
  const std::size_t src = static_cast<std::size_t>(from), dst = (src + 1) % direct.size();
  // The documented resharding steps for an empty slot.
  direct[dst]->call({"CLUSTER", "SETSLOT", slot, "IMPORTING", id_of(src)}, 1s);
  direct[src]->call({"CLUSTER", "SETSLOT", slot, "MIGRATING", id_of(dst)}, 1s);
  for (std::size_t i : {dst, src, 3 - src - dst})
    direct[i]->call({"CLUSTER", "SETSLOT", slot, "NODE", id_of(dst)}, 1s);

  client->call({"SET", key, "v"}, 1s);  // MOVED by the old master, sent to the new one
  EXPECT_EQ(client->redirects(), 1u);
  EXPECT_EQ(holder(key), static_cast<int>(dst));
  EXPECT_EQ(client->call({"GET", key}, 1s).str, "v");
  EXPECT_EQ(client->redirects(), 1u);  // the map now names the new master
}

}  // namespace
}  // namespace skyrelay::redis
