#include "skyrelay/net/listener.hpp"

#include "skyrelay/net/http_session.hpp"
#include "skyrelay/net/server.hpp"

namespace skyrelay {

listener::listener(asio::io_context& ioc, tcp::endpoint ep, server& srv)
    : ioc_(ioc), acceptor_(ioc), server_(srv) {
  acceptor_.open(ep.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen(asio::socket_base::max_listen_connections);
}

unsigned short listener::port() const { return acceptor_.local_endpoint().port(); }

void listener::run() { do_accept(); }

void listener::close() {
  asio::post(ioc_, [self = shared_from_this()] {
    boost::system::error_code ec;
    self->acceptor_.close(ec);
  });
}

void listener::do_accept() {
  // Each connection lives on the next I/O context; a context is run by one thread, so a
  // connection's handlers never run concurrently.
  acceptor_.async_accept(server_.next_context(),
                         [self = shared_from_this()](boost::system::error_code ec,
                                                     tcp::socket socket) {
                           self->on_accept(ec, std::move(socket));
                         });
}

void listener::refuse(tcp::socket socket, bool per_ip) {
  auto& m = server_.get_metrics();
  m.add(per_ip ? m.local().refused_ip_limit : m.local().refused_total_limit);
  // A short HTTP answer, written without reading the request, then the connection is closed.
  static const std::string total_body =
      R"({"error":"too_many_connections","message":"the server is at its connection limit"})";
  static const std::string ip_body =
      R"({"error":"too_many_connections","message":"too many connections from this address"})";
  const std::string& body = per_ip ? ip_body : total_body;
  auto text = std::make_shared<std::string>(
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1"
      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
      body);
  auto s = std::make_shared<tcp::socket>(std::move(socket));
  asio::async_write(*s, asio::buffer(*text), [s, text](boost::system::error_code, std::size_t) {
    boost::system::error_code ec;
    s->shutdown(tcp::socket::shutdown_send, ec);
    s->close(ec);
  });
}

void listener::on_accept(boost::system::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
  if (!ec) {
    boost::system::error_code ep_ec;
    const auto ep = socket.remote_endpoint(ep_ec);
    bool per_ip = false;
    auto slot = ep_ec ? nullptr : server_.admit(ep.address().to_string(), per_ip);
    if (!slot) {
      refuse(std::move(socket), per_ip);
    } else {
      // Hand off on the socket's own context.
      auto& ctx = static_cast<asio::io_context&>(socket.get_executor().context());
      asio::post(ctx, [s = std::move(socket), srv = &server_, slot = std::move(slot)]() mutable {
        start_http_session(std::move(s), *srv, std::move(slot));
      });
    }
  } else if (ec == asio::error::no_descriptors) {
    // Out of file descriptors: back off briefly instead of spinning.
    auto t = std::make_shared<asio::steady_timer>(ioc_, std::chrono::milliseconds(50));
    t->async_wait([self = shared_from_this(), t](boost::system::error_code) { self->do_accept(); });
    return;
  }
  do_accept();
}

}  // namespace skyrelay
