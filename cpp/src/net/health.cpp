#include "skyrelay/net/health.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace skyrelay {

namespace {
using clock = std::chrono::steady_clock;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now().time_since_epoch())
      .count();
}

double seconds(clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Rounded to the millisecond: probes read these, nobody needs nanoseconds.
double rounded(double s) { return static_cast<double>(static_cast<std::int64_t>(s * 1000)) / 1000; }
}  // namespace

struct health_monitor::beat {
  explicit beat(asio::io_context& ctx, bool first) : timer(ctx), watches_broker(first) {}
  asio::steady_timer timer;
  std::atomic<std::int64_t> at_ns{0};
  const bool watches_broker;
};

health_monitor::health_monitor(const server_config& cfg, const dispatcher& d, const broker& b,
                               log_queue& log)
    : cfg_(cfg), dispatcher_(d), broker_(b), log_(log) {
  // Four beats per stall timeout, at most one a second: a stuck thread shows within 1.25x.
  interval_ = std::min<clock::duration>(std::chrono::seconds(1), cfg_.io_stall_timeout / 4);
  interval_ = std::max<clock::duration>(interval_, std::chrono::milliseconds(1));
}

health_monitor::~health_monitor() { stop(); }

void health_monitor::start(const std::vector<std::unique_ptr<asio::io_context>>& contexts) {
  std::lock_guard lock(mu_);
  beats_.clear();
  draining_ = false;
  broker_ok_ = -1;
  for (std::size_t i = 0; i < contexts.size(); ++i) {
    beats_.push_back(std::make_unique<beat>(*contexts[i], i == 0));
    beats_.back()->at_ns = now_ns();
    arm(*beats_.back());
  }
}

void health_monitor::stop() {
  // The contexts are stopped: cancelling posts nothing that runs, and destroying the timers
  // while their contexts still exist is what Asio asks.
  std::lock_guard lock(mu_);
  beats_.clear();
}

void health_monitor::arm(beat& b) {
  b.timer.expires_after(interval_);
  b.timer.async_wait([this, &b](boost::system::error_code ec) {
    if (ec) return;
    b.at_ns.store(now_ns(), std::memory_order_relaxed);
    if (b.watches_broker) watch_broker();
    arm(b);
  });
}

void health_monitor::watch_broker() {
  const bool memory = cfg_.broker.empty() || cfg_.broker == "memory";
  if (memory) return;
  const broker_status s = broker_.status();
  const int ok = s.ok ? 1 : 0;
  if (ok == broker_ok_) return;
  const bool first = broker_ok_ < 0;
  broker_ok_ = ok;
  if (first && s.ok) return;  // connected at start: the server's own start line says enough
  const int level = s.ok ? log_level::info : log_level::warning;
  if (!log_.enabled(log_source::broker, level)) return;
  std::vector<log_field> fields;
  if (!s.ok) fields.push_back({"reason", s.reason});
  log_.push(log_record{level, log_source::broker,
                       s.ok ? "broker_connected" : "broker_disconnected", 0.0, std::move(fields)});
}

health_monitor::report health_monitor::readiness() const {
  nlohmann::json checks;
  bool ok = true;

  const auto p = dispatcher_.progress();
  const bool moving = p.queued == 0 || p.stalled < cfg_.dispatcher_stall_timeout;
  checks["dispatcher"] = {{"status", moving ? "ok" : "fail"},
                          {"queued", p.queued},
                          {"stalled_s", rounded(seconds(p.stalled))},
                          {"timeout_s", seconds(cfg_.dispatcher_stall_timeout)}};
  ok = ok && moving;

  const broker_status bs = broker_.status();
  const bool memory = cfg_.broker.empty() || cfg_.broker == "memory";
  nlohmann::json broker = {{"status", bs.ok ? "ok" : "fail"}, {"kind", memory ? "memory" : "redis"}};
  if (!bs.ok) broker["reason"] = bs.reason;
  checks["broker"] = std::move(broker);
  ok = ok && bs.ok;

  const bool draining = draining_.load();
  checks["server"] = {{"status", draining ? "fail" : "ok"},
                      {"state", draining ? "stopping" : "running"}};
  ok = ok && !draining;

  nlohmann::json out = {{"status", ok ? "ok" : "fail"}, {"checks", std::move(checks)}};
  return {ok, out.dump()};
}

health_monitor::report health_monitor::liveness() const {
  const std::int64_t now = now_ns();
  std::int64_t oldest = 0;
  std::size_t stuck = 0;
  std::lock_guard lock(mu_);
  const auto limit_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(cfg_.io_stall_timeout).count();
  for (const auto& b : beats_) {
    const std::int64_t age = now - b->at_ns.load(std::memory_order_relaxed);
    oldest = std::max(oldest, age);
    if (age > limit_ns) ++stuck;
  }
  const bool ok = stuck == 0;
  nlohmann::json io = {{"status", ok ? "ok" : "fail"},
                       {"threads", beats_.size()},
                       {"stuck", stuck},
                       {"oldest_beat_s", rounded(static_cast<double>(oldest) / 1e9)},
                       {"timeout_s", seconds(cfg_.io_stall_timeout)}};
  nlohmann::json out = {{"status", ok ? "ok" : "fail"}, {"checks", {{"io_threads", std::move(io)}}}};
  return {ok, out.dump()};
}

}  // namespace skyrelay
