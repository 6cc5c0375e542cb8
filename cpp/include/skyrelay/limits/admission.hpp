// Admission of new connections: the connection slots, the per-IP counts and the token buckets
// for new TCP connections and new Engine.IO polling sessions (server_config's max_connections,
// max_connections_per_ip, new_connections_per_ip, new_sessions_per_ip, limit_loopback).
//
// Thread-safe: any I/O thread admits, and a slot is given back from whichever thread drops it
// last. No I/O and no callback runs under its lock.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "skyrelay/core/config.hpp"
#include "skyrelay/limits/inbound_limit.hpp"

namespace skyrelay {

// Why a new connection was not admitted (admission::admit).
enum class connection_refusal : std::uint8_t { none, total, per_ip, rate };

class admission {
 public:
  // A slot that releases itself when the last holder drops it (the HTTP session, then the
  // WebSocket or stream it became). The admission must outlive every slot it gave out.
  using slot = std::shared_ptr<void>;

  // Keeps a reference to `cfg`, which must outlive the admission.
  explicit admission(const server_config& cfg) : cfg_(cfg) {}
  admission(const admission&) = delete;
  admission& operator=(const admission&) = delete;

  // Admits a new TCP connection from `ip`, or returns nullptr when a limit is reached (`why`
  // tells which; none when admitted). With `session`, the slot is for an Engine.IO polling
  // session instead: it counts against the same max_connections and max_connections_per_ip,
  // and its rate is new_sessions_per_ip. Loopback addresses skip the per-IP checks unless
  // limit_loopback. `now_ns` is the monotonic clock (steady_ns) unless a test drives it.
  slot admit(const std::string& ip, connection_refusal& why, bool session = false);
  slot admit(const std::string& ip, connection_refusal& why, bool session, std::int64_t now_ns);
  // Admits a connection whose client is not known yet: a trusted proxy's
  // (server_config::trusted_proxies), which carries many clients. It counts against
  // max_connections only; each request's client is admitted by address once its header is
  // read (admit), and that slot replaces this one.
  slot admit_unattributed(connection_refusal& why);

  // Slots held now, all addresses together.
  std::size_t total() const noexcept { return total_.load(); }
  // Slots held now by `ip` (loopback addresses that skip the per-IP checks are not counted).
  std::size_t held_by(const std::string& ip) const;
  // Rate buckets kept now, for connections and sessions together (diagnostics and tests): a
  // bucket that filled up again is forgotten once there are more than 1,024 of a kind.
  std::size_t buckets() const;

 private:
  const server_config& cfg_;
  std::atomic<std::size_t> total_{0};
  mutable std::mutex ip_mu_;
  std::unordered_map<std::string, std::size_t> per_ip_;
  std::unordered_map<std::string, token_bucket> new_per_ip_;  // forgotten once full again
  std::unordered_map<std::string, token_bucket> new_sessions_per_ip_;  // the same, for sessions
};

}  // namespace skyrelay
