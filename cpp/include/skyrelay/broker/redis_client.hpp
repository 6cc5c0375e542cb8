// A blocking face over one Redis command connection, for the engine's calls that need Redis's
// answer before they go on: cluster state (redis_state.hpp), the publish API's shared
// idempotency keys and rate limits, and skyrelay.RateLimiter(redis=...) (redis_limits.hpp).
//
// Threads. The client runs a thread of its own with its own io_context; its connection
// (redis_connection, the commands role) lives there and is made again after a loss, with
// backoff (0.1 s doubling to 5 s). call() and eval() block the calling thread until Redis
// answered or the timeout passed; they may be called from any thread except the client's own
// (context()'s handlers), and never under a lock. send() and async_eval() never block.
//
// Redis Cluster (`cluster_seeds` not empty): the client asks the seeds in order for CLUSTER
// SLOTS and keeps one connection to each master (all made again after any loss). Every
// command goes to the master of its key's hash slot: eval()'s first key, call()'s and send()'s
// first argument after the command name (a command with no key goes to any master). Every
// key of one script must be in one slot (a hash tag). A MOVED answer (the slot moved since
// the map was read) updates the slot's master, opening a connection to it when it is new,
// and sends the command there once; an ASK answer sends ASKING and the command to the node
// named, once. A second redirection is the command's error reply.
//
// Failure is a value for the caller to map: every call throws broker_unavailable (nothing
// was done, or it is unknown whether it was) while there is no connection, when the answer
// does not come within the timeout, or when the connection is lost meanwhile; an error reply
// from Redis throws std::runtime_error with its text.
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "skyrelay/broker/redis_url.hpp"
#include "skyrelay/broker/redis_value.hpp"

namespace skyrelay::redis {

// A Lua script and its SHA-1 (EVALSHA first; EVAL when the server does not have it).
struct redis_script {
  explicit redis_script(std::string text);
  std::string text, sha;
};

class redis_client {
 public:
  using reply_fn = std::function<void(std::error_code, redis_value)>;
  // The answer, or (non-null) what eval() would have thrown instead.
  using result_fn = std::function<void(std::exception_ptr, redis_value)>;

  // `url` is the server, or on a cluster the credentials and options every master is logged
  // in with (its host and port are not used).
  explicit redis_client(redis_url url, std::vector<redis_endpoint> cluster_seeds = {});
  ~redis_client();  // closes the connection and joins the thread
  redis_client(const redis_client&) = delete;
  redis_client& operator=(const redis_client&) = delete;

  redis_value call(std::vector<std::string> args, std::chrono::milliseconds timeout);
  redis_value eval(const redis_script& s, const std::vector<std::string>& keys,
                   const std::vector<std::string>& args, std::chrono::milliseconds timeout);
  // Sends a command and does not wait; its reply (or failure) is dropped.
  void send(std::vector<std::string> args);
  // Sends a command (routed as call()) without waiting: `done` runs once, on the client's
  // thread, with the reply; on no connection with redis_errc::connection_lost at once (on
  // that thread too).
  void async_call(std::vector<std::string> args, reply_fn done);
  // EVALSHA (then EVAL on NOSCRIPT) with `done` on the client's thread; on no connection,
  // `done` gets redis_errc::connection_lost at once (on that thread too).
  void async_eval(const redis_script& s, const std::vector<std::string>& keys,
                  const std::vector<std::string>& args, reply_fn done);
  // eval() without blocking: `done` runs exactly once, on the client's thread, with the
  // answer or with the error eval() would throw (broker_unavailable: no connection, no answer
  // within `timeout`, the connection lost; std::runtime_error: an error reply). `done` must
  // not block; a caller on an I/O thread posts the result back to its own executor. `s`
  // must outlive the call (scripts are statics).
  void async_eval(const redis_script& s, std::vector<std::string> keys,
                  std::vector<std::string> args, std::chrono::milliseconds timeout,
                  result_fn done);

  bool connected() const noexcept;
  // Waits until connected, at most `timeout`; whether it is. Not from the client's thread.
  bool wait_connected(std::chrono::milliseconds timeout) const;
  // Why not connected (empty while connected); for messages.
  std::string reason() const;
  // MOVED and ASK answers followed (a cluster's slots moved under this client).
  std::uint64_t redirects() const noexcept;
  // The client's io_context, for an owner's timers (they run on the client's thread).
  boost::asio::io_context& context() noexcept;

 private:
  struct impl;
  struct timed_call;
  std::shared_ptr<impl> impl_;
};

}  // namespace skyrelay::redis
