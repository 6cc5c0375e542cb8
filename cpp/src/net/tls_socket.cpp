#include "skyrelay/net/tls_socket.hpp"

#include <cerrno>
#include <stdexcept>

namespace skyrelay::net {

tls_socket::tls_socket(tcp::socket socket, boost::asio::ssl::context& ctx)
    : socket_(std::move(socket)), ssl_(SSL_new(ctx.native_handle())) {
  if (!ssl_) throw std::runtime_error("TLS: SSL_new failed");
  // The socket is non-blocking, so OpenSSL's reads and writes return WANT_READ/WANT_WRITE
  // instead of waiting. A partial write is the rest of the write loop's business; the loop
  // retries with the same bytes, possibly at another address (its scratch copy).
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);  // a failure shows as the handshake's error
  SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                               SSL_MODE_RELEASE_BUFFERS);
  if (SSL_set_fd(ssl_.get(), socket_.native_handle()) != 1)
    throw std::runtime_error("TLS: SSL_set_fd failed");
  SSL_set_accept_state(ssl_.get());
}

std::size_t tls_socket::read_some(boost::asio::mutable_buffer b,
                                  boost::system::error_code& ec) {
  ERR_clear_error();
  std::size_t n = 0;
  const int ret = SSL_read_ex(ssl_.get(), b.data(), b.size(), &n);
  want w = want::nothing;
  ec = result(ssl_.get(), ret, w);
  read_wants_write_ = w == want::write;
  if (w != want::nothing) ec = boost::asio::error::would_block;
  return ec ? 0 : n;
}

int tls_socket::step_shutdown::operator()(SSL* s, std::size_t& n) const {
  n = 0;
  // 0: our close_notify is out, the peer's not in yet: call again to read it.
  int r = SSL_shutdown(s);
  if (r == 0) r = SSL_shutdown(s);
  return r;
}

// As Asio's ssl::stream reports them, so that callers tell the same cases apart: a clean
// close_notify is asio::error::eof, an end of the TCP stream without one
// ssl::error::stream_truncated, OpenSSL's own errors in Asio's ssl category.
boost::system::error_code tls_socket::result(SSL* ssl, int ret, want& w) {
  w = want::nothing;
  if (ret > 0) return {};
  const int e = SSL_get_error(ssl, ret);
  switch (e) {
    case SSL_ERROR_WANT_READ:
      w = want::read;
      return {};
    case SSL_ERROR_WANT_WRITE:
      w = want::write;
      return {};
    case SSL_ERROR_ZERO_RETURN:
      return boost::asio::error::eof;
    case SSL_ERROR_SYSCALL: {
      const int err = errno;
      if (const unsigned long code = ERR_get_error())
        return {static_cast<int>(code), boost::asio::error::get_ssl_category()};
      if (ret == 0 || err == 0) return boost::asio::ssl::error::stream_truncated;
      return {err, boost::system::system_category()};
    }
    case SSL_ERROR_SSL: {
      const unsigned long code = ERR_get_error();
      if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        return boost::asio::ssl::error::stream_truncated;
      return {static_cast<int>(code), boost::asio::error::get_ssl_category()};
    }
    default:
      return boost::asio::ssl::error::unexpected_result;
  }
}

}  // namespace skyrelay::net
