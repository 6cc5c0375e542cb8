// A connection's byte stream: a plain TCP socket, or TLS over one. Sessions hold a net::stream
// and never care which it is, except on the two hot paths that stay specialised for plain TCP
// (ws_session's readiness-based reads, and write_loop's sendmsg straight on the socket).
//
// It meets Asio's AsyncReadStream and AsyncWriteStream requirements, so Beast's HTTP reader and
// writer and asio::async_write take it as they take a socket. TLS is net::tls_socket (OpenSSL on
// the socket itself, no buffers of its own while idle), which packs a gathered buffer sequence
// (up to 16 KiB) into one TLS record instead of encrypting each small buffer separately.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <utility>
#include <variant>

#include <boost/asio/ssl.hpp>

#include "skyrelay/net/aliases.hpp"
#include "skyrelay/net/descriptor_tables.hpp"
#include "skyrelay/net/tls_socket.hpp"

namespace skyrelay {
namespace ssl = boost::asio::ssl;

namespace net {

class stream {
 public:
  using tls_stream = tls_socket;
  using executor_type = tcp::socket::executor_type;
  using lowest_layer_type = tcp::socket;

  // Plain TCP.
  explicit stream(tcp::socket socket) : s_(std::in_place_type<tcp::socket>, std::move(socket)) {}
  // TLS (server side) with the shared context; call async_handshake before anything else.
  stream(tcp::socket socket, ssl::context& ctx)
      : s_(std::in_place_type<tls_stream>, std::move(socket), ctx) {}

  // With per-thread descriptor tables, a socket is closed only on its own thread
  // (net/descriptor_tables.hpp): destroyed elsewhere, it is handed to its context.
  ~stream() {
    if (net::descriptor_tables::per_thread()) net::descriptor_tables::settle(socket());
  }

  stream(stream&&) noexcept = default;
  stream& operator=(stream&&) noexcept = default;
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;

  executor_type get_executor() noexcept { return socket().get_executor(); }

  bool is_tls() const noexcept { return s_.index() == 1; }
  tcp::socket* plain() noexcept { return std::get_if<tcp::socket>(&s_); }
  tls_stream* tls() noexcept { return std::get_if<tls_stream>(&s_); }

  // The TCP socket under whatever layers there are (options, endpoints, close).
  tcp::socket& socket() noexcept {
    if (auto* t = tls()) return t->next_layer();
    return std::get<tcp::socket>(s_);
  }
  const tcp::socket& socket() const noexcept {
    if (auto* t = std::get_if<tls_stream>(&s_)) return t->next_layer();
    return std::get<tcp::socket>(s_);
  }
  tcp::socket& lowest_layer() noexcept { return socket(); }

  tcp::endpoint remote_endpoint(boost::system::error_code& ec) const {
    return socket().remote_endpoint(ec);
  }

  template <class MutableBufferSequence, class ReadToken>
  auto async_read_some(const MutableBufferSequence& buffers, ReadToken&& token) {
    return asio::async_initiate<ReadToken, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const MutableBufferSequence& b) {
          if (auto* t = tls())
            t->async_read_some(b, std::move(handler));
          else
            std::get<tcp::socket>(s_).async_read_some(b, std::move(handler));
        },
        token, buffers);
  }

  template <class ConstBufferSequence, class WriteToken>
  auto async_write_some(const ConstBufferSequence& buffers, WriteToken&& token) {
    return asio::async_initiate<WriteToken, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBufferSequence& b) {
          if (auto* t = tls())
            t->async_write_some(b, std::move(handler));
          else
            std::get<tcp::socket>(s_).async_write_some(b, std::move(handler));
        },
        token, buffers);
  }

  // The server side of the TLS handshake; completes at once with success on plain TCP.
  template <class HandshakeToken>
  auto async_handshake(HandshakeToken&& token) {
    return asio::async_initiate<HandshakeToken, void(boost::system::error_code)>(
        [this](auto handler) {
          if (auto* t = tls()) {
            t->async_handshake(std::move(handler));
          } else {
            auto ex = asio::get_associated_executor(handler, get_executor());
            asio::post(ex, [h = std::move(handler)]() mutable { h(boost::system::error_code{}); });
          }
        },
        token);
  }

  // Ends the connection at once: no TLS close_notify, both directions shut down, closed.
  void close() noexcept {
    boost::system::error_code ec;
    auto& s = socket();
    if (!s.is_open()) return;
    if (net::descriptor_tables::per_thread() && net::descriptor_tables::settle(s)) return;
    s.shutdown(tcp::socket::shutdown_both, ec);
    s.close(ec);
  }

  // Ends the connection politely. Plain TCP: as close(). TLS: cancels what is in flight, sends
  // close_notify and waits up to `limit` for the peer's, then closes; a peer that never answers
  // costs at most `limit`. `owner` keeps this stream alive meanwhile (the session holding it).
  void close_gracefully(std::shared_ptr<void> owner, std::chrono::milliseconds limit) {
    if (!is_tls() || !socket().is_open() || !owner ||
        static_cast<asio::io_context&>(get_executor().context()).stopped())
      return close();
    boost::system::error_code ec;
    socket().cancel(ec);
    // After the cancelled operations have completed, so the shutdown is the only one running.
    asio::post(get_executor(), [this, owner = std::move(owner), limit]() mutable {
      if (!socket().is_open()) return;
      auto timer = std::make_shared<asio::steady_timer>(get_executor(), limit);
      timer->async_wait([this, owner, timer](boost::system::error_code ec) {
        if (!ec) close();
      });
      tls()->async_shutdown([this, owner, timer](boost::system::error_code) {
        timer->cancel();
        close();
      });
    });
  }

 private:
  std::variant<tcp::socket, tls_stream> s_;
};

}  // namespace net
}  // namespace skyrelay
