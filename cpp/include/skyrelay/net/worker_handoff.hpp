// One worker's side of the connection handoff between the worker processes that share a port
// (`skyrelay run --workers N`, SO_REUSEPORT; docs/deployment.md). The kernel picks a worker per
// TCP connection, so the next request of an Engine.IO polling session (or its WebSocket
// upgrade) may reach a worker that does not hold the session. Each Engine.IO sid names its
// worker ("<index>.<random>"); a worker that reads a request for another's session sends the
// owner the connection: its descriptor (SCM_RIGHTS) and the bytes already read from it, as one
// datagram on the owner's handoff socket (AF_UNIX, SOCK_DGRAM, set up by the parent). The owner
// admits the connection and serves it from those bytes as if it had accepted it.
//
// Plain TCP only: a TLS connection's state lives in the process that did the handshake, so it
// cannot be handed over (the caller answers unknown_sid instead).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "skyrelay/net/aliases.hpp"

namespace skyrelay {

class session_context;

class worker_handoff {
 public:
  enum class send_result { sent, busy, failed };

  // `index` is this worker's, `peer_fds[i]` the socket that reaches worker i, `inbox_fd` this
  // worker's receiving end (server_config::worker_*). The descriptors stay the process's: the
  // inbox is duplicated for reading and the duplicate closed by stop(). Connections received
  // go to ctx.next_context(), are admitted by ctx.get_admission() and served by an
  // http_session. Throws boost::system::system_error when the inbox cannot be duplicated.
  worker_handoff(asio::io_context& ioc, session_context& ctx, int index,
                 std::vector<int> peer_fds, int inbox_fd);
  worker_handoff(const worker_handoff&) = delete;
  worker_handoff& operator=(const worker_handoff&) = delete;

  // Starts receiving on the io_context given to the constructor. Call once.
  void start();
  // Stops receiving (thread-safe). Datagrams that arrive later stay in the inbox for the
  // worker that replaces this one, which finds no session for them (unknown_sid).
  void stop();

  int index() const noexcept { return index_; }
  // A new Engine.IO sid owned by this worker: "<index>." then core/random's new_sid() (the
  // random part is as long and as unpredictable as a single process's sid).
  std::string new_sid() const;
  // The worker a sid of that form names, or -1 (another form, or an index out of range).
  // Cheap: a few digits are read, nothing allocated.
  int owner_of(std::string_view sid) const noexcept;

  // Sends connection `fd` and `bytes` (read from it and not yet answered) to worker `to`.
  // Never blocks. `sent`: the owner has it (the caller closes its own descriptor, without a
  // shutdown, which would end the connection for the owner too); `busy`: the owner's inbox is
  // full for now (try again shortly); `failed`: no such worker, or the system refused (the
  // caller answers the request itself). Bytes beyond inline_limit travel in a memfd.
  // Thread-safe.
  send_result send(int to, int fd, std::string_view bytes) const;

  // Bytes carried in the datagram itself; more go in a memfd passed beside the connection.
  static constexpr std::size_t inline_limit = 32 * 1024;

 private:
  void do_wait();
  void receive_some();
  void serve(int fd, std::string bytes);

  session_context& ctx_;
  int index_;
  std::vector<int> peer_fds_;
  asio::posix::stream_descriptor inbox_;
};

}  // namespace skyrelay
