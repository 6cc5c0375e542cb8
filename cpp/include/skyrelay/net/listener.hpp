// Accepts TCP connections, admits them (limits/admission.hpp) and hands each to the server's
// handoff (an http_session) on the next I/O context.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

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
  void run();
  void close();  // thread-safe
  unsigned short port() const;

 private:
  void do_accept();
  void on_accept(boost::system::error_code ec, tcp::socket socket);
  // Answers 503 and closes: a connection limit is reached.
  void refuse(tcp::socket socket, connection_refusal why);

  asio::io_context& ioc_;
  tcp::acceptor acceptor_;
  session_context& ctx_;
  handoff_fn handoff_;
};

}  // namespace skyrelay
