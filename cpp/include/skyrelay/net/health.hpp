// Readiness and liveness, apart (docs/deployment.md "Probes"): what GET /health/ready and
// GET /health/live answer, and the two booleans GET /health adds to its report.
//
// Liveness: every I/O thread answers. Each I/O context runs a heartbeat timer that stamps its
// slot; a slot older than server_config::io_stall_timeout means that thread is stuck (a
// handler that never returns), and restarting the process is the cure.
// Readiness: the dispatcher makes progress (jobs wait, and none was taken for
// server_config::dispatcher_stall_timeout: a sync handler blocked forever), the broker carries
// publications (a Redis broker's connection; the memory broker always does), and the server
// is not stopping. Not ready means "send no new clients here", not "restart me".
//
// The heartbeat on the first I/O context also watches the broker's status and logs its
// transitions (skyrelay.core.broker): the broker's own threads then need no log queue.
//
// Thread-safety: readiness(), liveness() and set_draining() from any thread; start() and stop()
// from the thread that starts and stops the server.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "skyrelay/core/config.hpp"
#include "skyrelay/core/log_queue.hpp"
#include "skyrelay/hub/broker.hpp"
#include "skyrelay/hub/dispatcher.hpp"
#include "skyrelay/net/aliases.hpp"

namespace skyrelay {

class health_monitor {
 public:
  // Keeps references: each part must outlive the monitor.
  health_monitor(const server_config& cfg, const dispatcher& d, const broker& b, log_queue& log);
  ~health_monitor();
  health_monitor(const health_monitor&) = delete;
  health_monitor& operator=(const health_monitor&) = delete;

  // Arms one heartbeat per context, before their threads run (they count as alive from now).
  void start(const std::vector<std::unique_ptr<asio::io_context>>& contexts);
  // Drops the timers: after the I/O threads ended, before the contexts are destroyed.
  void stop();
  // While the server drains (stop() began), readiness fails with "stopping".
  void set_draining(bool draining) noexcept { draining_.store(draining); }

  // A probe's answer: 200 when ok, else 503; `json` carries every check's detail.
  struct report {
    bool ok{true};
    std::string json;
  };
  report readiness() const;
  report liveness() const;

 private:
  struct beat;  // one I/O context's timer and last stamp
  void arm(beat& b);
  void watch_broker();

  const server_config& cfg_;
  const dispatcher& dispatcher_;
  const broker& broker_;
  log_queue& log_;
  std::chrono::steady_clock::duration interval_;
  mutable std::mutex mu_;  // beats_ itself (liveness() reads it while start/stop may change it)
  std::vector<std::unique_ptr<beat>> beats_;
  std::atomic<bool> draining_{false};
  int broker_ok_{-1};  // the last status seen by watch_broker (-1: none yet); first context only
};

}  // namespace skyrelay
