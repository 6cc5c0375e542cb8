// The Redis broker (issue 15, first step): several skyrelay processes ("nodes") share one
// Redis server; every publication is numbered by Redis and reaches every node's members in
// one order per channel. The data model and the order and gap rules are in
// docs/architecture.md ("Redis broker"); the decisions in /work/redis-design.md.
//
// Threads. The broker runs one thread of its own with its own io_context: both Redis
// connections, its timers and all its state live there, so its state needs no lock (only the
// status and the command connection handed to publishers take a small one). It calls into the
// hub (publish_ordered, load_history) from that thread only, never under a lock of its own.
//
// Publishing never waits for Redis unless the caller asks for the receipt. Each publication
// is encoded on the caller's thread and queued to the broker's thread, which pipelines them on
// the command connection (many EVALSHA in flight; one FIFO from each publishing thread, so
// what one thread publishes is numbered by Redis in that order). publish_async() hands the
// receipt (Redis's seq and epoch) to a completion; publish() with `out` waits for it (at most
// options::publish_timeout), without `out` it returns once queued. While the broker has no
// connection it refuses at once (broker_unavailable); while max_queued_publishes wait for
// Redis, publish_async refuses at once with broker_busy, and publish() without `out` waits
// for a place (at most publish_timeout) before it does. Local delivery happens when the
// message comes back on the subscriber connection, like every other node's, so publish()
// returns 0 deliveries.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "skyrelay/broker/redis_url.hpp"
#include "skyrelay/hub/broker.hpp"

namespace skyrelay::redis {

struct redis_broker_options {
  redis_url url;
  std::string prefix{"sr:"};  // of every key and channel (`?prefix=` in the URL)
  std::string node_id;        // empty: made at random
  std::size_t history_max{1000};                  // stream MAXLEN ~ (at least 100)
  std::chrono::milliseconds history_ttl{120'000};  // keys' PEXPIRE (at least 60 s)
  std::chrono::milliseconds closed_sid_ttl{600'000};
  std::chrono::milliseconds publish_timeout{5'000};  // publish() with a receipt only
  // Publications sent or waiting to be sent and not answered yet (`?publish_queue=`): one more
  // is refused with broker_busy. 10,000 is ~1 s of a busy node's publishes at one Redis's
  // script rate, and bounds the memory a stalled Redis can take (~10,000 bodies).
  std::size_t max_queued_publishes{10'000};
  std::chrono::milliseconds heartbeat{1'000};  // self-published on the node channel
  std::chrono::milliseconds deaf_after{5'000};  // no heartbeat back for this long: reconnect
  std::chrono::milliseconds warm_timeout{3'000};
  std::size_t buffer_max{100'000};  // live messages held while a gap is caught up
  // redis+cluster: the seeds asked for the slot map, in the URL's order (`url` is the first,
  // and holds the credentials every master is logged in with). Empty: one server.
  std::vector<redis_endpoint> seeds;
};

// Parses a Redis URL (redis_url.hpp: `redis://`, `rediss://` with TLS, `redis+sentinel://`)
// with the broker's own query names `prefix=<text>` and `publish_queue=<n>` (1 .. 1,000,000)
// into options (the other fields keep their defaults); reads the TLS files it names; throws
// std::invalid_argument naming what is wrong. `redis+cluster://[auth@]host:port[,host:port...]
// [?query]` (Redis Cluster, 7.0+) fills `seeds`; it takes no /db and no TLS, and its prefix
// holds no braces.
redis_broker_options parse_broker_url(const std::string& url);

class redis_broker final : public skyrelay::broker {
 public:
  // Starts the thread and connects (without waiting: status() is degraded until connected).
  redis_broker(hub& local, redis_broker_options opts);
  ~redis_broker() override;  // closes both connections and joins the thread

  std::size_t publish(const publication& p, publish_meta* out) override;
  // `done` runs inline for a refusal, else on the broker's thread; the outcome's meta.topic
  // is left empty (meta.seq is set when `p` went to one room: that room's seq).
  void publish_async(const publication& p, publish_done done) override;
  void subscribe(const channel& ch) override;
  void unsubscribe(const channel& ch) override;
  history_result history(const history_request& q) override;
  void connection_changed(const std::string& sid, bool added) override;
  void warm(const std::vector<channel>& rooms, std::function<void(bool)> done) override;
  void quiesce() override;
  broker_status status() const override;
  broker_counters counters() const override;

  const std::string& node_id() const noexcept;

  redis_broker(const redis_broker&) = delete;
  redis_broker& operator=(const redis_broker&) = delete;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

// The broker `url` names, for a server: empty or "memory" the in-memory broker (see
// skyrelay::make_broker), `redis://...` a Redis broker whose streams keep `history_max`
// entries for `history_ttl` (the server's history bounds). Throws std::invalid_argument for
// anything else, naming the scheme.
std::unique_ptr<skyrelay::broker> make_any_broker(const std::string& url, hub& local,
                                                  std::size_t history_max,
                                                  std::chrono::milliseconds history_ttl);

}  // namespace skyrelay::redis
