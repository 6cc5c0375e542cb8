// The Redis broker's state and steps (private to cpp/src/broker). Everything but the members
// under `mu` is touched on the broker's one thread only (see redis_broker.hpp).
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "skyrelay/broker/redis_backoff.hpp"
#include "skyrelay/broker/redis_broker.hpp"
#include "skyrelay/broker/redis_connection.hpp"
#include "skyrelay/broker/redis_wire.hpp"

namespace skyrelay::redis {

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

// `master_replid:<id>` of an INFO replication answer; empty when absent (redis_broker.cpp).
std::string replication_id(const std::string& info);

// The publish script of a cluster: one hash slot's rooms (redis_broker_cluster.cpp).
const std::string& cluster_publish_script();

struct redis_broker::impl {
  // One channel this node follows (a room with local members, or a namespace's broadcasts,
  // followed by pattern), and where it stands: the last seq delivered in `epoch`.
  struct follow {
    channel ch;
    bool broadcasts{false};
    bool wanted{false};      // a room: the hub has local members (or a warm asked for it)
    bool subscribed{false};  // SUBSCRIBE confirmed on the current connection
    bool known{false};       // epoch and last are where the node stands
    bool syncing{false};     // a catch-up from the stream is in flight
    bool starting{false};    // start_follow in flight; `waiters` hear when it is done
    std::vector<std::function<void(bool)>> waiters;
    bool just_synced{false}; // caught up; a gap seen now cannot be filled: a reset
    std::string epoch;
    std::uint64_t last{0};
    clock_type::time_point warmed{};  // warmed without members: unfollowed if none come
  };

  // One publication on its way: the EVALSHA arguments (the script's sha is filled in on the
  // broker's thread), what its receipt needs, and its completion's key in `completions`.
  struct outgoing {
    std::vector<std::string> args;
    std::string ts;
    std::uint64_t n{0};
    bool single_room{false};  // to one room only: the receipt names its topic and seq
    bool retried{false};      // sent again whole after NOSCRIPT
    std::uint64_t key{0};     // 0: nobody waits for the outcome
  };

  impl(hub& local, redis_broker_options o);

  // ---- redis_broker.cpp: connections, publishing, registry, timers ----
  void connect();
  // redis+sentinel (redis_broker_sentinel.cpp): asks the sentinels where the master is, sets
  // opts.url's host and port to it and connects; or lost() with every sentinel's answer.
  void locate(unsigned g);
  void on_ready(unsigned gen);     // reads the replication ID, then load_script
  void load_script(unsigned gen);  // SCRIPT LOAD, then on_loaded
  void on_loaded(unsigned gen);    // registry, subscriptions, catch-ups: then ready
  void lost(unsigned gen, std::string reason);
  void set_status(bool ok, std::string reason);
  void tick();
  // Queues `p` (any thread): refusals go to `done` inline; else send() runs on the broker's
  // thread and `done` (may be null) when Redis answered.
  void publish_async(const publication& p, publish_done done);
  // A place in the publish queue: taken at once, or (`may_wait`) once one frees within
  // opts.publish_timeout; false: none. release_slot() frees one and wakes the waiters.
  bool take_slot(bool may_wait);
  void release_slot();
  void send(std::shared_ptr<outgoing> o);
  void answered(const std::shared_ptr<outgoing>& o, std::error_code ec, redis_value v);
  void complete(std::uint64_t key, publish_outcome r);
  void sid_changed(const std::string& sid, bool added);

  // ---- redis_broker_receive.cpp: following, messages, gaps ----
  void want(const channel& ch);
  void unwant(const channel& ch);
  // Keeps the followed channels' keys from expiring; drops rooms warmed for nobody.
  void refresh();
  // Loads where the channel stands (its epoch, seq and stored tail) into the hub when the node
  // does not know it, subscribes, catches up; then `done(true)` (false: connection lost).
  void start_follow(const std::string& tag, std::function<void(bool)> done);
  void on_message(unsigned gen, redis_message m);
  // Delivers one message; false when it revealed a gap (a catch-up is started; the message
  // is handed again after it).
  bool handle(const std::string& payload);
  void sync(const std::string& tag);
  void drain();
  void warm(const std::vector<channel>& rooms, std::function<void(bool)> done);

  // ---- Redis Cluster (redis_cluster_topology.cpp: the masters; redis_broker_cluster.cpp:
  // publishing). Every command of a tag goes to the master of key_slot(tag); the node
  // channel, the heartbeat and the broadcasts' pattern use shard 0 (classic pub/sub is
  // forwarded by the cluster bus to every node). On one server these give `cmd` and `sub`.
  struct shard {
    std::string host;
    std::uint16_t port{0};
    std::shared_ptr<redis_connection> cmd, sub;
    std::string replid;  // the master's replication ID (as `replid` below, for its slots)
  };
  // One publication being resolved (its `to` names' sid:<name> keys, then their nodes'
  // alive keys); its scripts are sent once it and every one before it are resolved.
  struct resolving {
    std::shared_ptr<outgoing> o;
    std::vector<std::string> names, conns;           // from o->args
    std::unordered_map<std::string, std::string> owner;  // sid -> node ("-": nobody)
    std::unordered_set<std::string> alive;
    std::size_t waiting{0};
    bool failed{false}, resolved{false};
  };
  bool clustered() const { return !opts.seeds.empty(); }
  void discover(unsigned g, std::size_t seed);
  void open_shards(unsigned g, const cluster_map& map);
  const std::shared_ptr<redis_connection>& cmd_of(const std::string& key_or_tag) const;
  const std::shared_ptr<redis_connection>& sub_of(const std::string& tag) const;
  const std::string& replid_of(const std::string& tag) const;
  // cmd_of(key)->execute, where a MOVED or ASK answer (the slot moved) drops the topology
  // and discovers it again (lost()); `done` still gets the answer.
  void exec(const std::string& key, std::vector<std::string> args,
            redis_connection::reply_handler done);
  bool moved(unsigned g, std::error_code ec, const redis_value& v);
  // (S)SUBSCRIBE / (S)UNSUBSCRIBE of a room's channel on its slot's subscriber connection.
  void follow_channel(const std::string& tag, redis_connection::reply_handler done);
  void unfollow_channel(const std::string& tag);
  // After the connections are up: the script loaded on every master, then `then`.
  void load_scripts(unsigned g, std::function<void()> then);
  void cluster_send(std::shared_ptr<outgoing> o);
  void resolve(const std::shared_ptr<resolving>& r);
  void resolve_alive(const std::shared_ptr<resolving>& r);
  void pump();
  void dispatch(const std::shared_ptr<resolving>& r);
  // EVALSHA of one slot's script (EVAL again on NOSCRIPT); `done` gets the answer.
  void send_slot(std::vector<std::string> args,
                 std::function<void(std::error_code, redis_value)> done);

  std::string key(const std::string& tag, const char* suffix) const {
    return opts.prefix + tag + suffix;
  }
  // The keys' TTL in ms: the history's age bound, at least 60 s.
  std::string ms_ttl() const {
    return std::to_string(std::max(opts.history_ttl, std::chrono::milliseconds{60'000}).count());
  }

  hub& hub_;
  redis_broker_options opts;
  const std::string node_channel;  // <prefix>node:<id>
  const std::string heartbeat_payload;
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard;
  asio::steady_timer reconnect_timer, tick_timer;

  // Shared with publishing threads.
  mutable std::mutex mu;
  broker_status status{false, "connecting to redis"};
  std::shared_ptr<redis_connection> publisher;  // the command connection, while ok
  std::string sha;

  std::atomic<std::uint64_t> publishes{0}, received{0}, gaps{0}, resets{0}, reconnects{0};
  std::atomic<std::uint64_t> uids{0};
  // Publications queued or sent and not answered yet (bounded by opts.max_queued_publishes).
  std::atomic<std::uint64_t> queued{0}, refused{0}, failed{0};
  std::atomic<unsigned> slot_waiters{0};
  std::mutex slot_mu;  // only for slot_freed (no state of its own)
  std::condition_variable slot_freed;
  std::uint64_t id_base{0};  // receipts' ids: random high bits, so nodes' ids differ

  // The broker thread's.
  std::shared_ptr<redis_connection> cmd, sub;  // one server's; on a cluster, shard 0's
  std::vector<shard> shards;                   // redis+cluster: one per master
  std::vector<int> slot_owner;                 // redis+cluster: slot -> index in shards
  std::deque<std::shared_ptr<resolving>> resolving_fifo;
  std::string seed_errors;                     // redis+cluster: why each seed failed, for /health
  unsigned gen{0};
  bool ready{false}, stopping{false}, ever_connected{false};
  bool located{false};  // redis+sentinel: opts.url names the master just found
  // The server's replication ID (INFO replication's master_replid), read at each connect and
  // given to the scripts, which start a new epoch for a channel numbered under another one
  // (a failover). Empty when the server does not say (no INFO): no such check.
  // On a cluster each master has its own (shard::replid); this one is unused there.
  std::string replid;
  redis_backoff backoff;
  clock_type::time_point last_heard{}, last_refresh{};
  std::unordered_map<std::string, follow> chans;  // by tag
  std::unordered_set<std::string> sids;           // this node's connections
  std::deque<std::string> buffer;                 // live messages held during a catch-up
  unsigned syncing{0};
  bool overflowed{false};
  bool quiet{false};  // quiesce() was called: warm's `done` is no longer called
  std::deque<std::string> recent_order;           // uids delivered lately (direct dedup)
  std::unordered_set<std::string> recent;
  // Completions of publish_async waiting for Redis, by outgoing::key. Dropped at quiesce():
  // after it they are never called (they may post to I/O contexts being destroyed).
  std::unordered_map<std::uint64_t, publish_done> completions;
  std::uint64_t next_key{0};
  std::thread thread;
};

}  // namespace skyrelay::redis
