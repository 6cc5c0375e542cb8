// Cluster-wide state on Redis (issue 15 item 4): what every node holds (connections, members
// per room), summed on read, for room sizes and /health. docs/architecture.md ("Cluster
// state") has the data model, the freshness and the bounds.
//
// Each node reports on a timer (every ttl/5) into its own hash `<prefix>{state}:node:<id>`
// (`c` = connections, one field per room tag = local members), which lives `ttl` after the
// report, and into the sorted set `<prefix>{state}:nodes` (score = when the report expires).
// A node that stops reporting (killed, partitioned) drops out within `ttl`. Reports are
// deltas against the last one on the same connection, whole after a (re)connect or when the
// hash expired meanwhile. At most `rooms_max` rooms per node are reported: the largest ones.
//
// Threads. The state runs on the thread of its own redis_client (a separate connection from
// the broker's). room_size() blocks the caller for one round trip (at most call_timeout);
// view() and counters() never block. Every method may be called from any thread but the
// client's.
#pragma once

#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "skyrelay/broker/redis_client.hpp"
#include "skyrelay/hub/channel.hpp"
#include "skyrelay/hub/hub.hpp"

namespace skyrelay::redis {

struct redis_state_options {
  std::string prefix{"sr:"};
  std::string node_id;                       // empty: made at random
  std::chrono::milliseconds ttl{5'000};      // a report's life; reports every ttl/5
  std::size_t rooms_max{10'000};             // rooms reported per node (its largest)
  std::chrono::milliseconds call_timeout{1'000};
  // redis+cluster: the seeds (redis_client.hpp); every key here has the hash tag `{state}`,
  // so all of them are in one slot, on one master.
  std::vector<redis_endpoint> seeds;
};

// The cluster as of this node's last report.
struct cluster_view {
  bool known{false};            // a report succeeded on the current connection
  std::size_t nodes{0};         // nodes whose report is alive, this one included
  std::size_t connections{0};   // their connections (this node's live count)
  std::chrono::milliseconds age{0};  // since the last successful report
};

struct cluster_counters {
  std::uint64_t reports{0}, report_errors{0};
  std::size_t rooms_reported{0}, rooms_unreported{0};  // in the last report
};

class redis_state {
 public:
  // Connects (without waiting) and starts reporting.
  redis_state(hub& local, redis_url url, redis_state_options opts);
  ~redis_state();  // stops reporting; the report expires by itself
  redis_state(const redis_state&) = delete;
  redis_state& operator=(const redis_state&) = delete;

  // Members of `room` on every node: this node's live count plus the other alive nodes'
  // reports. Throws broker_unavailable when Redis does not answer.
  std::size_t room_size(const channel& room);
  cluster_view view() const;
  cluster_counters counters() const;
  const std::string& node_id() const noexcept { return opts_.node_id; }
  // The connection, shared with the publish API's idempotency keys and rate limit.
  redis_client& client() noexcept { return *client_; }

 private:
  void schedule();
  void report();  // on the client's thread
  std::string state_key(const std::string& node) const;

  hub& hub_;
  redis_state_options opts_;
  std::unique_ptr<redis_client> client_;
  std::unique_ptr<boost::asio::steady_timer> timer_;
  // The client thread's.
  std::unordered_map<std::string, std::size_t> reported_;  // room tag -> count, as in Redis
  bool need_full_{true}, in_flight_{false}, stopping_{false};
  // Shared with callers.
  mutable std::mutex mu_;
  cluster_view view_;
  std::chrono::steady_clock::time_point last_ok_{};
  cluster_counters counters_;
};

}  // namespace skyrelay::redis
