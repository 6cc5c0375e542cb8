#include "skyrelay/broker/redis_stream.hpp"

#include <openssl/ssl.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>

#include <stdexcept>

namespace skyrelay::redis {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

std::shared_ptr<ssl::context> make_tls_context(const redis_tls& tls) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  boost::system::error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  if (tls.verify) {
    if (!tls.ca_file.empty()) ctx->load_verify_file(tls.ca_file, ec);
    else ctx->set_default_verify_paths(ec);
    if (ec)
      throw std::invalid_argument(
          "rediss: cannot load the CA " +
          (tls.ca_file.empty() ? std::string("store of the system") : "file " + tls.ca_file) +
          ": " + ec.message());
    ctx->set_verify_mode(ssl::verify_peer);
  } else {
    ctx->set_verify_mode(ssl::verify_none);
  }
  if (!tls.cert_file.empty()) {
    ctx->use_certificate_chain_file(tls.cert_file, ec);
    if (ec)
      throw std::invalid_argument("rediss: cannot load the client certificate " + tls.cert_file +
                                  ": " + ec.message());
    ctx->use_private_key_file(tls.key_file, ssl::context::pem, ec);
    if (ec)
      throw std::invalid_argument("rediss: cannot load the client key " + tls.key_file + ": " +
                                  ec.message());
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
      throw std::invalid_argument("rediss: the key " + tls.key_file +
                                  " does not match the certificate " + tls.cert_file);
  }
  return ctx;
}

redis_stream::redis_stream(executor ex, std::shared_ptr<ssl::context> tls)
    : ctx_(std::move(tls)), plain_(ex) {
  if (ctx_) tls_ = std::make_unique<ssl::stream<tcp::socket>>(ex, *ctx_);
}

void redis_stream::async_handshake(const redis_tls& opts, const std::string& host,
                                   std::function<void(std::error_code)> done) {
  if (!tls_) {
    asio::post(plain_.get_executor(), [done = std::move(done)] { done({}); });
    return;
  }
  const std::string& name = opts.server_name.empty() ? host : opts.server_name;
  boost::system::error_code ec;
  asio::ip::make_address(name, ec);
  const bool is_ip = !ec;
  // SNI only for a name; an IP address is still checked (against the IP SANs).
  if (!is_ip) SSL_set_tlsext_host_name(tls_->native_handle(), name.c_str());
  if (opts.verify) tls_->set_verify_callback(ssl::host_name_verification(name));
  tls_->async_handshake(ssl::stream_base::client,
                        [done = std::move(done)](boost::system::error_code ec) { done(ec); });
}

void redis_stream::close() {
  boost::system::error_code ignored;
  socket().shutdown(tcp::socket::shutdown_both, ignored);
  socket().close(ignored);
}

}  // namespace skyrelay::redis
