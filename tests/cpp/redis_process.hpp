// A real redis-server for tests: Debian's binary started on a free port of 127.0.0.1 in a
// temporary directory (no persistence), waited for until it answers, stopped by its process id.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace skyrelay::testing {

class redis_process {
 public:
  // Starts `redis-server` with `extra` arguments (e.g. {"--requirepass", "pw"}); throws
  // std::runtime_error when it does not answer PING (or NOAUTH) within a few seconds.
  explicit redis_process(std::vector<std::string> extra = {});
  ~redis_process();  // stop()

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }

  // SIGTERM, then SIGKILL if it has not exited after five seconds; reaps it; idempotent.
  void stop();
  // SIGKILL at once (a crash), and reaps it.
  void kill_now();
  // Starts a new, empty server on the same port (after stop or kill_now); throws when it
  // does not answer within a few seconds (the port may have been taken meanwhile).
  void restart();

  redis_process(const redis_process&) = delete;
  redis_process& operator=(const redis_process&) = delete;

 private:
  bool spawn(const std::vector<std::string>& extra, std::uint16_t port = 0);
  bool answers() const;
  void reap(int first_signal);

  std::string dir_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
  std::vector<std::string> extra_;
};

// A Redis Cluster of `masters` cluster-enabled servers (each its own port, bus port and
// temporary directory), joined by `redis-cli --cluster create ... --cluster-replicas 0`; the
// constructor returns once every node says cluster_state:ok, else throws. Stopped by pid.
class redis_cluster {
 public:
  explicit redis_cluster(int masters = 3);
  const std::vector<std::unique_ptr<redis_process>>& nodes() const { return nodes_; }

 private:
  std::vector<std::unique_ptr<redis_process>> nodes_;
};

}  // namespace skyrelay::testing
