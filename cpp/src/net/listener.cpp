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

void listener::on_accept(boost::system::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
  if (!ec) {
    // Hand off on the socket's own context.
    auto& ctx = static_cast<asio::io_context&>(socket.get_executor().context());
    asio::post(ctx, [s = std::move(socket), srv = &server_]() mutable {
      start_http_session(std::move(s), *srv);
    });
  } else if (ec == asio::error::no_descriptors) {
    // Out of file descriptors: back off briefly instead of spinning.
    auto t = std::make_shared<asio::steady_timer>(ioc_, std::chrono::milliseconds(50));
    t->async_wait([self = shared_from_this(), t](boost::system::error_code) { self->do_accept(); });
    return;
  }
  do_accept();
}

}  // namespace skyrelay
