// Accepts TCP connections, admits them (limits/admission.hpp) and hands each to the server's
// handoff (an http_session) on the next I/O context.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "skyrelay/limits/admission.hpp"
#include "skyrelay/net/aliases.hpp"

namespace skyrelay {

class session_context;

class listener : public std::enable_shared_from_this<listener> {
 public:
  // Takes an admitted connection, on the connection's own I/O context.
  using handoff_fn = std::function<void(tcp::socket socket, admission::slot slot)>;

  // Binds and listens; throws boost::system::system_error on failure. Accepted connections go
  // to ctx.next_context(), are admitted by ctx.get_admission(), then handed to `handoff`.
  listener(asio::io_context& ioc, tcp::endpoint ep, session_context& ctx, handoff_fn handoff);
  // Accepts on `listening` (a listening socket it takes over), each connection onto `ioc`
  // itself: one of the I/O threads that have descriptor tables of their own
  // (net/descriptor_tables.hpp), where a socket accepted on one thread is in that thread's
  // table only. Constructed on that thread.
  listener(asio::io_context& ioc, int listening, session_context& ctx, handoff_fn handoff);
  void run();
  void close();  // thread-safe
  // Closes the listening socket on the calling thread, at once (the process's own copy, when
  // the I/O threads accept on copies of their own).
  void close_here();
  unsigned short port() const;
  int native_handle() { return acceptor_.native_handle(); }

 private:
  void do_accept();
  void on_accept(boost::system::error_code ec, tcp::socket socket);
  asio::io_context& ioc_;
  tcp::acceptor acceptor_;
  session_context& ctx_;
  handoff_fn handoff_;
  bool own_context_ = false;  // each connection onto ioc_, else onto ctx_.next_context()
};

// Counts a refused connection on ctx's metrics (by `why`) and answers it: a plain connection
// gets 503 `too_many_connections` (JSON, Retry-After: 1) and a lingering close, a TLS one is
// closed (it could not read a plain answer). The answer runs on the socket's executor. The listener
// calls it for a connection over a limit, and so does a worker that a connection was handed to
// (net/worker_handoff.hpp) when its own limits refuse it.
void refuse_connection(session_context& ctx, tcp::socket socket, connection_refusal why);

// Admits a new TCP connection from `peer_ip`: by its address, or, from a trusted proxy
// (server_config::trusted_proxies), unattributed until its requests name their clients
// (admission::admit_unattributed). The listener and a worker a connection was handed to call it.
admission::slot admit_peer(session_context& ctx, const std::string& peer_ip,
                           connection_refusal& why);

// The parts of refuse_connection's answer, for a session that refuses a request's client
// behind a trusted proxy: the count on ctx's metrics with the `connection_refused` log line
// (`remote`, the client's "ip:port", is asked for only when the line is logged), and the JSON
// body of the 503.
void count_refusal(session_context& ctx, connection_refusal why,
                   const std::function<std::string()>& remote);
const std::string& refusal_body(connection_refusal why);

}  // namespace skyrelay
