// The server's cluster-wide state (issue 15 item 4): with a Redis broker, room sizes and
// /health answer for every node, and the publish API's idempotency keys and budget are shared
// through Redis (broker/redis_state.hpp, broker/redis_limits.hpp); else all of it is this
// process's.
#include <algorithm>
#include <cstdio>

#include "skyrelay/broker/redis_broker.hpp"
#include "skyrelay/broker/redis_limits.hpp"
#include "skyrelay/broker/redis_sio_recovery.hpp"
#include "skyrelay/broker/redis_state.hpp"
#include "skyrelay/net/server.hpp"

namespace skyrelay {

void server::make_shared_state() {
  if (cfg_.publish_rate.rate > 0)
    publish_limit_ = std::make_unique<rate_limiter>(cfg_.publish_rate.rate,
                                                    std::max(cfg_.publish_rate.burst, 1.0),
                                                    10'000);
  auto* network = dynamic_cast<redis::redis_broker*>(broker_.get());
  if (!network) return;
  auto opts = redis::parse_broker_url(cfg_.broker);
  // redis+cluster: the client routes each call to its key's master (redis_client.hpp): the
  // state's keys share the tag `{state}`; each idempotency key and budget is one key.
  redis::redis_state_options so;
  so.prefix = opts.prefix;
  so.node_id = network->node_id();
  so.ttl = cfg_.cluster_state_ttl;
  so.rooms_max = cfg_.cluster_rooms_max;
  so.seeds = opts.seeds;
  state_ = std::make_unique<redis::redis_state>(hub_, opts.url, so);
  shared_idem_ = std::make_unique<redis::redis_idempotency>(state_->client(), opts.prefix,
                                                            std::chrono::minutes(5));
  idem_.set_backend(shared_idem_.get());
  // Socket.IO recovery across nodes, on one server or Sentinel only: on a cluster the
  // publish's sid reads are not atomic with its numbering, so the direct counter cannot be
  // kept (docs/architecture.md): a reconnection that lands on another node gets a new
  // socket (recovered false), as before.
  if (cfg_.sio_recovery_window.count() > 0 && cfg_.socketio && opts.seeds.empty()) {
    sio_recovery_ = std::make_unique<redis::sio_recovery_store>(
        state_->client(), opts.prefix, cfg_.sio_recovery_window);
    sio_recovery_->set_node_id(network->node_id());
    sio_.set_recovery_store(sio_recovery_.get(), network->node_id(),
                            [b = broker_.get()](const std::vector<channel>& rooms,
                                                std::function<void(bool)> done) {
                              b->warm(rooms, std::move(done));
                            });
  }
  if (publish_limit_)
    shared_publish_limit_ = std::make_unique<redis::redis_rate_limiter>(
        state_->client(), opts.prefix + "publish_rate:", publish_limit_->rate(),
        publish_limit_->burst());
}

void server::take_publish_budget(const std::string& publisher, std::size_t events,
                                 publisher::budget_fn done) {
  const double cost = std::min(static_cast<double>(events), publish_limit_->burst());
  if (!shared_publish_limit_) {
    const rate_decision d = publish_limit_->acquire(publisher, cost);
    if (!d.allowed) ++publish_rate_limited_;
    return done(nullptr, d);
  }
  // The publisher's scope may hold a token digest's raw bytes: Redis keys are binary-safe.
  shared_publish_limit_->async_acquire(
      publisher, cost, [this, done = std::move(done)](std::exception_ptr error, rate_decision d) {
        if (!error && !d.allowed) ++publish_rate_limited_;
        done(error, d);
      });
}

std::size_t server::room_size(const channel& room) {
  return state_ ? state_->room_size(room) : hub_.room_size(room);
}

void server::append_cluster_health(std::string& out) const {
  if (!state_) return;
  const auto v = state_->view();
  char buf[200];
  std::snprintf(buf, sizeof buf,
                ",\"cluster\":{\"status\":\"%s\",\"nodes\":%zu,\"connections\":%zu,\"age_ms\":%lld",
                v.known ? "ok" : "unknown", v.nodes, v.connections,
                static_cast<long long>(v.age.count()));
  out += buf;
  out += ",\"node\":\"" + state_->node_id() + "\"}";  // a random id of [A-Za-z0-9_-]
}

void server::append_cluster_metrics(std::string& out) const {
  auto add = [&out](const char* name, const char* help, const char* type, std::uint64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + std::to_string(v) + "\n";
  };
  add("skyrelay_publish_rate_limited_total",
      "Publish API requests refused with 429 over the publisher's publish_rate.", "counter",
      publish_rate_limited_.load());
  if (!state_) return;
  const auto v = state_->view();
  const auto c = state_->counters();
  add("skyrelay_cluster_nodes", "Nodes whose cluster-state report is alive (this one included).",
      "gauge", v.nodes);
  add("skyrelay_cluster_connections", "Connections on every alive node.", "gauge",
      v.connections);
  add("skyrelay_cluster_rooms_reported", "This node's rooms in its last cluster-state report.",
      "gauge", c.rooms_reported);
  add("skyrelay_cluster_rooms_unreported",
      "This node's rooms left out of its report (over cluster_rooms_max; its smallest).", "gauge",
      c.rooms_unreported);
  add("skyrelay_cluster_reports_total", "Cluster-state reports written to Redis.", "counter",
      c.reports);
  add("skyrelay_cluster_report_errors_total", "Cluster-state reports that failed.", "counter",
      c.report_errors);
  add("skyrelay_cluster_shared_key_errors_total",
      "Shared idempotency-key calls to Redis that failed.", "counter", shared_idem_->errors());
  add("skyrelay_cluster_redirects_total",
      "MOVED and ASK answers followed by the shared-state connection (redis+cluster).",
      "counter", state_->client().redirects());
}

}  // namespace skyrelay
