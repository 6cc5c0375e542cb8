// redis::redis_connection against a real redis-server (Debian's) that each test starts on a
// free port of 127.0.0.1: pipelined commands complete in order, values are binary-safe, an error
// reply fails only its command, AUTH (password and ACL user) and SELECT, pub/sub in order and
// unsubscribing, a killed server fails what is pending and reports the loss, the queue bound,
// and the URL parser's refusals.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "redis_process.hpp"
#include "skyrelay/broker/redis_connection.hpp"
#include "skyrelay/broker/redis_wire.hpp"

namespace skyrelay::redis {
namespace {

using namespace std::chrono_literals;
using testing::redis_process;

struct result {
  bool done = false;
  std::error_code ec;
  redis_value value;
};

// Runs the context until `pred` holds or ten seconds pass (a bound, not a speed assertion).
template <class Pred>
bool run_until(boost::asio::io_context& ioc, Pred pred) {
  auto end = std::chrono::steady_clock::now() + 10s;
  while (!pred() && std::chrono::steady_clock::now() < end) {
    ioc.restart();
    ioc.run_for(20ms);
  }
  return pred();
}

class RedisConnection : public ::testing::Test {
 protected:
  redis_url url_for(const redis_process& p, std::string user = {}, std::string password = {},
                    int db = 0) {
    redis_url u;
    u.host = "127.0.0.1";
    u.port = p.port();
    u.user = std::move(user);
    u.password = std::move(password);
    u.db = db;
    return u;
  }

  // A started connection; fails the test when it does not become ready.
  std::shared_ptr<redis_connection> connect(redis_connection::options opts) {
    auto c = redis_connection::create(ioc_.get_executor(), std::move(opts));
    std::optional<std::error_code> ready;
    c->start([&](std::error_code ec) { ready = ec; });
    EXPECT_TRUE(run_until(ioc_, [&] { return ready.has_value(); }));
    EXPECT_FALSE(ready.value_or(make_error_code(redis_errc::closed))) << ready->message();
    connections_.push_back(c);
    return c;
  }

  std::shared_ptr<redis_connection> connect(const redis_url& url) {
    redis_connection::options o;
    o.url = url;
    return connect(o);
  }

  std::shared_ptr<result> exec(redis_connection& c, std::vector<std::string> args) {
    auto r = std::make_shared<result>();
    c.execute(std::move(args), [r](std::error_code ec, redis_value v) {
      r->done = true;
      r->ec = ec;
      r->value = std::move(v);
    });
    return r;
  }

  result exec_wait(redis_connection& c, std::vector<std::string> args) {
    auto r = exec(c, std::move(args));
    EXPECT_TRUE(run_until(ioc_, [&] { return r->done; }));
    return *r;
  }

  void TearDown() override {
    for (auto& c : connections_) c->close();
    ioc_.restart();
    ioc_.run_for(100ms);
  }

  boost::asio::io_context ioc_;
  std::vector<std::shared_ptr<redis_connection>> connections_;
};

TEST_F(RedisConnection, PipelinedCommandsCompleteInOrder) {
  redis_process server;
  auto c = connect(url_for(server));
  std::vector<int> order;
  std::vector<redis_value> values;
  std::vector<std::vector<std::string>> cmds = {
      {"SET", "k", "v1"}, {"GET", "k"}, {"INCR", "n"}, {"INCR", "n"}, {"INCR", "n"},
      {"GET", "missing"}};
  for (int i = 0; i < static_cast<int>(cmds.size()); ++i)
    c->execute(cmds[i], [&, i](std::error_code ec, redis_value v) {
      EXPECT_FALSE(ec) << i;
      order.push_back(i);
      values.push_back(std::move(v));
    });
  ASSERT_TRUE(run_until(ioc_, [&] { return order.size() == cmds.size(); }));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(values[0].type, redis_value::kind::status);
  EXPECT_EQ(values[0].str, "OK");
  EXPECT_EQ(values[1].str, "v1");
  EXPECT_EQ(values[2].integer, 1);
  EXPECT_EQ(values[4].integer, 3);
  EXPECT_EQ(values[5].type, redis_value::kind::nil);
}

TEST_F(RedisConnection, ValuesAreBinarySafe) {
  redis_process server;
  auto c = connect(url_for(server));
  std::string key("bin\0key", 7), value("a\0b\r\n\0\xff", 7);
  EXPECT_FALSE(exec_wait(*c, {"SET", key, value}).ec);
  auto got = exec_wait(*c, {"GET", key});
  ASSERT_FALSE(got.ec);
  EXPECT_EQ(got.value.str, value);
  EXPECT_EQ(exec_wait(*c, {"STRLEN", key}).value.integer, 7);
}

TEST_F(RedisConnection, ErrorReplyFailsOnlyItsCommand) {
  redis_process server;
  auto c = connect(url_for(server));
  auto set = exec(*c, {"SET", "s", "x"});
  auto bad = exec(*c, {"LPUSH", "s", "y"});
  auto get = exec(*c, {"GET", "s"});
  ASSERT_TRUE(run_until(ioc_, [&] { return get->done; }));
  EXPECT_FALSE(set->ec);
  EXPECT_EQ(bad->ec, redis_errc::server_error);
  EXPECT_EQ(bad->value.str.rfind("WRONGTYPE", 0), 0u) << bad->value.str;
  EXPECT_FALSE(get->ec);
  EXPECT_EQ(get->value.str, "x");
}

TEST_F(RedisConnection, AuthWithPasswordAndAclUser) {
  redis_process server({"--requirepass", "s3cret"});
  auto admin = connect(url_for(server, "", "s3cret"));
  EXPECT_EQ(exec_wait(*admin, {"PING"}).value.str, "PONG");
  ASSERT_FALSE(
      exec_wait(*admin, {"ACL", "SETUSER", "alice", "on", ">pw2", "~*", "&*", "+@all"}).ec);
  auto alice = connect(url_for(server, "alice", "pw2"));
  EXPECT_EQ(exec_wait(*alice, {"ACL", "WHOAMI"}).value.str, "alice");

  for (auto url : {url_for(server, "", "wrong"), url_for(server)}) {
    redis_connection::options o;
    o.url = url;
    auto c = redis_connection::create(ioc_.get_executor(), o);
    std::optional<std::error_code> ready;
    c->start([&](std::error_code ec) { ready = ec; });
    auto queued = exec(*c, {"PING"});  // given before ready: never sent unauthenticated
    ASSERT_TRUE(run_until(ioc_, [&] { return ready.has_value() && queued->done; }));
    if (url.password.empty()) {
      // No password: the connection is ready, and the server refuses the command itself.
      EXPECT_FALSE(*ready);
      EXPECT_EQ(queued->ec, redis_errc::server_error);
      EXPECT_EQ(queued->value.str.rfind("NOAUTH", 0), 0u) << queued->value.str;
      c->close();
    } else {
      EXPECT_EQ(*ready, redis_errc::auth_failed);
      EXPECT_EQ(queued->ec, redis_errc::auth_failed);
    }
  }
}

TEST_F(RedisConnection, SelectsTheDatabase) {
  redis_process server;
  auto db3 = connect(url_for(server, "", "", 3));
  auto db0 = connect(url_for(server));
  ASSERT_FALSE(exec_wait(*db3, {"SET", "where", "three"}).ec);
  EXPECT_EQ(exec_wait(*db0, {"GET", "where"}).value.type, redis_value::kind::nil);
  EXPECT_EQ(exec_wait(*db3, {"GET", "where"}).value.str, "three");
  EXPECT_EQ(exec_wait(*db3, {"CLIENT", "INFO"}).value.str.find(" db=3 ") != std::string::npos,
            true);
}

TEST_F(RedisConnection, SubscriberReceivesPublishesInOrderUntilUnsubscribed) {
  redis_process server;
  redis_connection::options so;
  so.url = url_for(server);
  so.mode = redis_connection::role::subscriber;
  auto sub = redis_connection::create(ioc_.get_executor(), so);
  std::vector<redis_message> got;
  sub->set_message_handler([&](redis_message m) { got.push_back(std::move(m)); });
  std::optional<std::error_code> ready;
  sub->start([&](std::error_code ec) { ready = ec; });
  connections_.push_back(sub);
  auto pub = connect(url_for(server));

  std::optional<std::error_code> subscribed;
  sub->subscribe({"news", "other"}, [&](std::error_code ec, redis_value) { subscribed = ec; });
  ASSERT_TRUE(run_until(ioc_, [&] { return subscribed.has_value(); }));
  ASSERT_FALSE(*ready);
  ASSERT_FALSE(*subscribed);

  constexpr int count = 200;
  for (int i = 0; i < count; ++i) exec(*pub, {"PUBLISH", "news", "m" + std::to_string(i)});
  ASSERT_TRUE(run_until(ioc_, [&] { return got.size() == count; }));
  for (int i = 0; i < count; ++i) {
    EXPECT_EQ(got[i].channel, "news");
    EXPECT_EQ(got[i].payload, "m" + std::to_string(i));
  }

  // A command on a subscriber connection, and SUBSCRIBE on a command one, are refused here.
  std::optional<std::error_code> wrong;
  sub->execute({"GET", "k"}, [&](std::error_code ec, redis_value) { wrong = ec; });
  ASSERT_TRUE(run_until(ioc_, [&] { return wrong.has_value(); }));
  EXPECT_EQ(*wrong, redis_errc::wrong_mode);

  std::optional<std::error_code> unsubscribed;
  sub->unsubscribe({"news"}, [&](std::error_code ec, redis_value) { unsubscribed = ec; });
  ASSERT_TRUE(run_until(ioc_, [&] { return unsubscribed.has_value(); }));
  EXPECT_FALSE(*unsubscribed);
  EXPECT_EQ(exec_wait(*pub, {"PUBLISH", "news", "late"}).value.integer, 0);  // no subscriber
  EXPECT_EQ(exec_wait(*pub, {"PUBLISH", "other", "still"}).value.integer, 1);
  ASSERT_TRUE(run_until(ioc_, [&] { return got.size() == count + 1; }));
  EXPECT_EQ(got.back().channel, "other");
  EXPECT_EQ(got.back().payload, "still");

  std::optional<std::error_code> psub;
  sub->psubscribe({"room:*"}, [&](std::error_code ec, redis_value) { psub = ec; });
  ASSERT_TRUE(run_until(ioc_, [&] { return psub.has_value(); }));
  EXPECT_EQ(exec_wait(*pub, {"PUBLISH", "room:7", "hi"}).value.integer, 1);
  ASSERT_TRUE(run_until(ioc_, [&] { return got.size() == count + 2; }));
  EXPECT_EQ(got.back().pattern, "room:*");
  EXPECT_EQ(got.back().channel, "room:7");
  EXPECT_EQ(got.back().payload, "hi");
}

// A 3-master cluster built on 127.0.0.1: our tags' slots are Redis's (CLUSTER KEYSLOT), every
// key and channel of one tag shares it, and sharded pub/sub (SSUBSCRIBE on the slot's master,
// SPUBLISH) delivers in order on each shard; the wrong master answers MOVED.
TEST_F(RedisConnection, ClusterSlotsAndShardedPubSub) {
  testing::redis_cluster cluster;
  const auto& nodes = cluster.nodes();
  auto any = connect(url_for(*nodes[0]));
  // slot -> index of the master serving it, from CLUSTER SLOTS (in our nodes' order).
  auto slots = exec_wait(*any, {"CLUSTER", "SLOTS"});
  ASSERT_FALSE(slots.ec);
  auto map = parse_cluster_slots(slots.value);
  ASSERT_TRUE(map);
  ASSERT_EQ(map->masters.size(), nodes.size());
  std::vector<int> owner(16384, -1);
  for (std::size_t s = 0; s < owner.size(); ++s) {
    ASSERT_GE(map->owner[s], 0) << "slot " << s << " is served";
    const auto& [host, port] = map->masters[static_cast<std::size_t>(map->owner[s])];
    EXPECT_EQ(host, "127.0.0.1");
    for (std::size_t i = 0; i < nodes.size(); ++i)
      if (nodes[i]->port() == port) owner[s] = static_cast<int>(i);
    ASSERT_GE(owner[s], 0);
  }
  EXPECT_FALSE(parse_cluster_slots(exec_wait(*any, {"GET", "x"}).value));
  // One room per master (the first room names whose slots fall on each).
  std::vector<std::string> tag_of(nodes.size());
  std::vector<std::shared_ptr<result>> asked;  // CLUSTER KEYSLOT of each, pipelined
  for (int i = 0; i < 200; ++i) {
    const std::string key = "sr:" + room_tag({"/", "room" + std::to_string(i)}) + ":m";
    asked.push_back(exec(*any, {"CLUSTER", "KEYSLOT", key}));
  }
  ASSERT_TRUE(run_until(ioc_, [&] { return asked.back()->done; }));
  for (int i = 0; i < 200; ++i) {
    const std::string tag = room_tag({"/", "room" + std::to_string(i)});
    const auto slot = key_slot("sr:" + tag + ":m");
    ASSERT_EQ(asked[i]->value.integer, slot) << tag;
    ASSERT_EQ(key_slot("sr:" + tag), slot);
    ASSERT_EQ(key_slot("sr:" + tag + ":s"), slot);
    if (tag_of[owner[slot]].empty()) tag_of[owner[slot]] = tag;
  }
  for (const auto& t : tag_of) ASSERT_FALSE(t.empty()) << "a master without a room";

  std::vector<redis_message> got;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    redis_connection::options so;
    so.url = url_for(*nodes[i]);
    so.mode = redis_connection::role::subscriber;
    auto sub = redis_connection::create(ioc_.get_executor(), so);
    sub->set_message_handler([&](redis_message m) { got.push_back(std::move(m)); });
    sub->start([](std::error_code) {});
    connections_.push_back(sub);
    std::optional<std::error_code> ok, moved;
    sub->ssubscribe({"sr:" + tag_of[i]}, [&](std::error_code ec, redis_value) { ok = ec; });
    // The next master's channel is not served here.
    sub->ssubscribe({"sr:" + tag_of[(i + 1) % nodes.size()]},
                    [&](std::error_code ec, redis_value v) {
                      moved = ec;
                      EXPECT_EQ(v.str.rfind("MOVED", 0), 0u) << v.str;
                    });
    ASSERT_TRUE(run_until(ioc_, [&] { return ok && moved; }));
    EXPECT_FALSE(*ok);
    EXPECT_EQ(*moved, redis_errc::server_error);
  }
  constexpr int per_shard = 50;
  std::vector<std::shared_ptr<redis_connection>> pubs;
  for (const auto& n : nodes) pubs.push_back(connect(url_for(*n)));
  for (int k = 0; k < per_shard; ++k)
    for (std::size_t i = 0; i < nodes.size(); ++i)
      exec(*pubs[i], {"SPUBLISH", "sr:" + tag_of[i], std::to_string(k)});
  ASSERT_TRUE(run_until(ioc_, [&] { return got.size() == per_shard * nodes.size(); }));
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    int next = 0;
    for (const auto& m : got)
      if (m.channel == "sr:" + tag_of[i]) EXPECT_EQ(m.payload, std::to_string(next++));
    EXPECT_EQ(next, per_shard);
  }
}

TEST_F(RedisConnection, KilledServerFailsPendingAndReportsLoss) {
  redis_process server;
  redis_connection::options o;
  o.url = url_for(server);
  auto c = redis_connection::create(ioc_.get_executor(), o);
  std::vector<std::error_code> losses;
  c->set_error_handler([&](std::error_code ec) { losses.push_back(ec); });
  std::optional<std::error_code> ready;
  c->start([&](std::error_code ec) { ready = ec; });
  connections_.push_back(c);
  ASSERT_TRUE(run_until(ioc_, [&] { return ready.has_value(); }));
  ASSERT_FALSE(*ready);
  auto blocked = exec(*c, {"BLPOP", "never", "0"});  // stays pending until the server dies
  EXPECT_EQ(exec_wait(*connect(url_for(server)), {"CLIENT", "LIST", "TYPE", "normal"})
                .value.str.find("cmd=blpop") != std::string::npos,
            true);
  server.kill_now();
  ASSERT_TRUE(run_until(ioc_, [&] { return blocked->done && !losses.empty(); }));
  EXPECT_EQ(blocked->ec, redis_errc::connection_lost);
  EXPECT_EQ(losses, std::vector<std::error_code>{make_error_code(redis_errc::connection_lost)});
  auto after = exec_wait(*c, {"PING"});
  EXPECT_EQ(after.ec, redis_errc::connection_lost);
  EXPECT_EQ(losses.size(), 1u);
}

TEST_F(RedisConnection, NothingListeningFailsTheStart) {
  std::uint16_t port;
  {
    redis_process gone;
    port = gone.port();
  }  // stopped: nothing listens on the port now
  redis_connection::options o;
  o.url.host = "127.0.0.1";
  o.url.port = port;
  auto c = redis_connection::create(ioc_.get_executor(), o);
  std::optional<std::error_code> ready;
  c->start([&](std::error_code ec) { ready = ec; });
  ASSERT_TRUE(run_until(ioc_, [&] { return ready.has_value(); }));
  EXPECT_EQ(*ready, redis_errc::connect_failed);
}

TEST_F(RedisConnection, PendingQueueIsBounded) {
  redis_process server;
  redis_connection::options o;
  o.url = url_for(server);
  o.max_pending = 2;
  auto c = connect(o);
  auto a = exec(*c, {"BLPOP", "q", "0"});  // blocks: the queue stays full
  auto b = exec(*c, {"PING"});
  auto full = exec(*c, {"PING"});
  ASSERT_TRUE(run_until(ioc_, [&] { return full->done; }));
  EXPECT_EQ(full->ec, redis_errc::queue_full);
  EXPECT_FALSE(a->done);
  auto pusher = connect(url_for(server));
  EXPECT_EQ(exec_wait(*pusher, {"RPUSH", "q", "item"}).value.integer, 1);
  ASSERT_TRUE(run_until(ioc_, [&] { return a->done && b->done; }));
  ASSERT_EQ(a->value.elements.size(), 2u);
  EXPECT_EQ(a->value.elements[1].str, "item");
  EXPECT_EQ(b->value.str, "PONG");
  EXPECT_EQ(exec_wait(*c, {"PING"}).value.str, "PONG");  // room again
}

TEST(RedisUrl, ParsesTheParts) {
  std::string error;
  auto u = parse_redis_url("redis://alice:p%40ss@cache.local:6380/4", error);
  ASSERT_TRUE(u) << error;
  EXPECT_EQ(u->user, "alice");
  EXPECT_EQ(u->password, "p@ss");
  EXPECT_EQ(u->host, "cache.local");
  EXPECT_EQ(u->port, 6380);
  EXPECT_EQ(u->db, 4);
  u = parse_redis_url("REDIS://:pw@[::1]", error);
  ASSERT_TRUE(u) << error;
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 6379);
  EXPECT_EQ(u->password, "pw");
  EXPECT_TRUE(u->user.empty());
  u = parse_redis_url("redis://127.0.0.1/", error);
  ASSERT_TRUE(u) << error;
  EXPECT_EQ(u->db, 0);
  EXPECT_FALSE(u->tls.enabled);
}

TEST(RedisUrl, ParsesTlsOptions) {
  std::string error;
  auto u = parse_redis_url("rediss://h:6380/1", error);
  ASSERT_TRUE(u) << error;
  EXPECT_TRUE(u->tls.enabled);
  EXPECT_TRUE(u->tls.verify);
  EXPECT_TRUE(u->tls.ca_file.empty());  // the system's CA store
  u = parse_redis_url("RediSS://h?ca=/etc/a%20b.pem&cert=/c.pem&key=/k.pem&sni=cache.internal",
                      error);
  ASSERT_TRUE(u) << error;
  EXPECT_EQ(u->tls.ca_file, "/etc/a b.pem");
  EXPECT_EQ(u->tls.cert_file, "/c.pem");
  EXPECT_EQ(u->tls.key_file, "/k.pem");
  EXPECT_EQ(u->tls.server_name, "cache.internal");
  u = parse_redis_url("rediss://h?verify=none", error);
  ASSERT_TRUE(u) << error;
  EXPECT_FALSE(u->tls.verify);
  std::map<std::string, std::string> extra;
  u = parse_redis_url("rediss://h?prefix=x&verify=full", error, &extra);
  ASSERT_TRUE(u) << error;
  EXPECT_TRUE(u->tls.verify);
  EXPECT_EQ(extra, (std::map<std::string, std::string>{{"prefix", "x"}}));
}

TEST(RedisUrl, ParsesSentinelUrls) {
  std::string error;
  auto u = parse_redis_url("redis+sentinel://:pw@10.0.0.1,10.0.0.2:5000,[::1]:26380/mymaster/3",
                           error);
  ASSERT_TRUE(u) << error;
  ASSERT_EQ(u->sentinels.size(), 3u);
  EXPECT_EQ(u->sentinels[0].host, "10.0.0.1");
  EXPECT_EQ(u->sentinels[0].port, 26379);
  EXPECT_EQ(u->sentinels[1].port, 5000);
  EXPECT_EQ(u->sentinels[2].host, "::1");
  EXPECT_EQ(u->sentinels[2].port, 26380);
  EXPECT_EQ(u->master_name, "mymaster");
  EXPECT_EQ(u->db, 3);
  EXPECT_EQ(u->password, "pw");
  EXPECT_TRUE(u->host.empty());  // where the master is: the sentinels say
  EXPECT_TRUE(u->uses_sentinel());
  u = parse_redis_url("redis+sentinel://s1/m", error);
  ASSERT_TRUE(u) << error;
  EXPECT_EQ(u->db, 0);
}

TEST(RedisUrl, RefusesBadUrlsWithAMessage) {
  const std::pair<const char*, const char*> cases[] = {
      {"http://h:1", "scheme"},
      {"rediss+sentinel://h/m", "not supported"},
      {"redis+sentinel://h", "master name"},
      {"redis+sentinel://h/", "master name"},
      {"redis+sentinel://h,/m", "no host"},
      {"redis+sentinel://h/m/x", "database"},
      {"redis://h?ca=/x.pem", "rediss://"},
      {"rediss://h?cert=/c.pem", "go together"},
      {"rediss://h?verify=maybe", "verify="},
      {"rediss://h?ca=", "empty"},
      {"rediss://h?ca=/a&ca=/b", "twice"},
      {"rediss://h?ca", "name=value"},
      {"redis://h#f", "fragment"},
      {"h:6379", "redis://"},
      {"redis://", "no host"},
      {"redis://:6379", "no host"},
      {"redis://h:0", "port"},
      {"redis://h:70000", "port"},
      {"redis://h:x", "port"},
      {"redis://h:", "empty port"},
      {"redis://h/db", "database"},
      {"redis://h/-1", "database"},
      {"redis://h/99999999999", "database"},
      {"redis://h/1?x=1", "unknown query name x"},
      {"redis://user@h", "password"},
      {"redis://u:%zz@h", "percent"},
      {"redis://u:pw%4@h", "percent"},
      {"redis://::1:6379", "brackets"},
      {"redis://[::1", "']'"},
      {"redis://h ost", "spaces"},
  };
  for (auto [text, words] : cases) {
    std::string error;
    EXPECT_FALSE(parse_redis_url(text, error)) << text;
    EXPECT_NE(error.find(words), std::string::npos) << text << ": " << error;
    EXPECT_EQ(error.rfind("bad Redis URL: ", 0), 0u) << error;
  }
}

}  // namespace
}  // namespace skyrelay::redis
