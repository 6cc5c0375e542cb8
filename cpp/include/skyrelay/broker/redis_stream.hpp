// The byte stream under one Redis connection: plain TCP, or TLS over it (OpenSSL through
// Boost.Asio's ssl::stream) for `rediss://`. redis_connection sees only this.
//
// Threads: like the socket it wraps, one strand at a time (redis_connection's).
// TLS: the server's certificate chain is verified against the URL's `ca=` file, or the
// system's CA store when none is named, and its name against `sni=` or the URL's host (an IP
// address is checked against the certificate's IP SANs), unless the URL says `verify=none`;
// `cert=`/`key=` send a client certificate (mutual TLS). SNI is sent for a host name (never
// for an IP address, as RFC 6066 says).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>

#include <functional>
#include <memory>
#include <string>
#include <system_error>

#include "skyrelay/broker/redis_url.hpp"

namespace skyrelay::redis {

// Builds the client context `tls` describes; throws std::invalid_argument naming the file that
// cannot be read or the key that does not match its certificate.
std::shared_ptr<boost::asio::ssl::context> make_tls_context(const redis_tls& tls);

class redis_stream {
 public:
  using executor = boost::asio::strand<boost::asio::any_io_executor>;
  using handler = std::function<void(std::error_code, std::size_t)>;

  // `tls` null: plain TCP.
  redis_stream(executor ex, std::shared_ptr<boost::asio::ssl::context> tls);

  boost::asio::ip::tcp::socket& socket() { return tls_ ? tls_->next_layer() : plain_; }
  bool is_tls() const { return tls_ != nullptr; }

  // After the TCP connect: the TLS handshake as a client of `host` (SNI and the name checked,
  // see the file comment); completes at once with no error for plain TCP.
  void async_handshake(const redis_tls& opts, const std::string& host,
                       std::function<void(std::error_code)> done);

  template <class Buffers>
  void async_write(const Buffers& b, handler h) {
    if (tls_) boost::asio::async_write(*tls_, b, std::move(h));
    else boost::asio::async_write(plain_, b, std::move(h));
  }
  template <class Buffers>
  void async_read_some(const Buffers& b, handler h) {
    if (tls_) tls_->async_read_some(b, std::move(h));
    else plain_.async_read_some(b, std::move(h));
  }

  // Shuts the socket down and closes it (no TLS close_notify: the connection is abandoned).
  void close();

 private:
  std::shared_ptr<boost::asio::ssl::context> ctx_;
  boost::asio::ip::tcp::socket plain_;
  std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>> tls_;
};

}  // namespace skyrelay::redis
