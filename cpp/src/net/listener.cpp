#include "skyrelay/net/listener.hpp"

#include <sys/socket.h>

#include <array>

#include "skyrelay/net/client_address.hpp"
#include "skyrelay/net/session_context.hpp"

namespace skyrelay {

listener::listener(asio::io_context& ioc, tcp::endpoint ep, session_context& ctx,
                   handoff_fn handoff)
    : ioc_(ioc), acceptor_(ioc), ctx_(ctx), handoff_(std::move(handoff)) {
  acceptor_.open(ep.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  if (ctx.config().reuse_port) {
    // Several processes listen on the port; the kernel spreads new connections over them.
    acceptor_.set_option(asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true));
  }
  acceptor_.bind(ep);
  acceptor_.listen(asio::socket_base::max_listen_connections);
}

listener::listener(asio::io_context& ioc, int listening, session_context& ctx, handoff_fn handoff)
    : ioc_(ioc), acceptor_(ioc), ctx_(ctx), handoff_(std::move(handoff)), own_context_(true) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(listening, reinterpret_cast<sockaddr*>(&addr), &len);
  acceptor_.assign(addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), listening);
}

void listener::close_here() {
  boost::system::error_code ec;
  acceptor_.close(ec);
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
  // Each connection lives on the next I/O context (with per-thread descriptor tables, on this
  // listener's own: the socket is in its thread's table only); a context is run by one
  // thread, so a connection's handlers never run concurrently.
  acceptor_.async_accept(own_context_ ? ioc_ : ctx_.next_context(),
                         [self = shared_from_this()](boost::system::error_code ec,
                                                     tcp::socket socket) {
                           self->on_accept(ec, std::move(socket));
                         });
}

admission::slot admit_peer(session_context& ctx, const std::string& peer_ip,
                           connection_refusal& why) {
  const auto& proxies = ctx.config().trusted_proxies;
  if (proxies && proxies->contains(peer_ip)) return ctx.get_admission().admit_unattributed(why);
  return ctx.get_admission().admit(peer_ip, why);
}

void count_refusal(session_context& ctx, connection_refusal why,
                   const std::function<std::string()>& remote) {
  auto& m = ctx.get_metrics();
  m.add(why == connection_refusal::per_ip ? m.local().refused_ip_limit
        : why == connection_refusal::rate ? m.local().refused_rate_limit
                                       : m.local().refused_total_limit);
  log_event(ctx.log(), log_source::limits, log_level::warning, "connection_refused", [&] {
    return std::vector<log_field>{
        {"remote", remote()},
        {"limit", std::string(why == connection_refusal::per_ip ? "connections_per_ip"
                              : why == connection_refusal::rate ? "new_connections_per_ip"
                                                                : "connections_total")}};
  });
}

const std::string& refusal_body(connection_refusal why) {
  static const std::string total_body =
      R"({"error":"too_many_connections","message":"the server is at its connection limit"})";
  static const std::string ip_body =
      R"({"error":"too_many_connections","message":"too many connections from this address"})";
  static const std::string rate_body =
      R"({"error":"too_many_connections","message":"too many new connections from this address; slow down"})";
  return why == connection_refusal::per_ip ? ip_body
         : why == connection_refusal::rate ? rate_body
                                           : total_body;
}

void refuse_connection(session_context& ctx, tcp::socket socket, connection_refusal why) {
  count_refusal(ctx, why, [&socket] {
    boost::system::error_code ec;
    auto ep = socket.remote_endpoint(ec);
    return ec ? std::string() : ep.address().to_string() + ":" + std::to_string(ep.port());
  });
  if (ctx.tls_context()) {
    // A TLS client cannot read a plain answer, and a handshake is what the limit saves: close.
    boost::system::error_code ignored;
    socket.close(ignored);
    return;
  }
  // A short HTTP answer, written without reading the request, then the connection is closed.
  const std::string& body = refusal_body(why);
  auto text = std::make_shared<std::string>(
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1"
      "\r\nX-Content-Type-Options: nosniff"
      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
      body);
  // Lingering close: after the answer, read (and discard) what the client still sends until it
  // closes or a second passes. Closing with unread input would reset the connection, and the
  // client could lose the answer.
  struct refused {
    tcp::socket socket;
    asio::steady_timer timer;
    std::string text;
    std::array<char, 1024> sink{};
    explicit refused(tcp::socket s, std::string t)
        : socket(std::move(s)), timer(socket.get_executor()), text(std::move(t)) {}
    void drain(std::shared_ptr<refused> self) {
      socket.async_read_some(asio::buffer(sink), [self](boost::system::error_code ec, std::size_t) {
        if (ec) {
          self->timer.cancel();
          boost::system::error_code ignored;
          self->socket.close(ignored);
          return;
        }
        self->drain(self);
      });
    }
  };
  auto r = std::make_shared<refused>(std::move(socket), std::move(*text));
  asio::async_write(r->socket, asio::buffer(r->text), [r](boost::system::error_code ec, std::size_t) {
    boost::system::error_code ignored;
    if (ec) return r->socket.close(ignored);
    // No half-close: some clients take an early end of stream for a failed handshake before
    // they read the answer. "Connection: close" tells them to hang up.
    r->timer.expires_after(std::chrono::seconds(1));
    r->timer.async_wait([r](boost::system::error_code ec) {
      boost::system::error_code ignored;
      if (!ec) r->socket.close(ignored);
    });
    r->drain(r);
  });
}

void listener::on_accept(boost::system::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
  if (!ec) {
    boost::system::error_code ep_ec;
    const auto ep = socket.remote_endpoint(ep_ec);
    connection_refusal why = connection_refusal::total;
    auto slot = ep_ec ? nullptr : admit_peer(ctx_, ep.address().to_string(), why);
    if (!slot) {
      refuse_connection(ctx_, std::move(socket), why);
    } else {
      // Hand off on the socket's own context.
      auto& ctx = static_cast<asio::io_context&>(socket.get_executor().context());
      asio::post(ctx, [s = std::move(socket), handoff = handoff_,
                       slot = std::move(slot)]() mutable {
        handoff(std::move(s), std::move(slot));
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
