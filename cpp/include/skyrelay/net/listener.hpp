// Accepts TCP connections and hands each to an http_session on the next I/O context.
#pragma once

#include <cstdint>

#include <memory>

#include "skyrelay/net/aliases.hpp"

namespace skyrelay {

enum class connection_refusal : std::uint8_t;

class server;

class listener : public std::enable_shared_from_this<listener> {
 public:
  // Binds and listens; throws std::system_error on failure.
  listener(asio::io_context& ioc, tcp::endpoint ep, server& srv);
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
  server& server_;
};

}  // namespace skyrelay
