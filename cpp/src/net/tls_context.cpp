#include "skyrelay/net/tls_context.hpp"

#include <stdexcept>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>

namespace skyrelay {

namespace {
// The most recent OpenSSL error as text, or `fallback`; clears the error queue.
std::string openssl_reason(const boost::system::error_code& ec) {
  std::string out = ec ? ec.message() : std::string();
  if (unsigned long e = ERR_peek_last_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out = buf;
  }
  ERR_clear_error();
  return out;
}

// ALPN: this port speaks HTTP/1.1 (WebSocket upgrades included) and nothing else.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  static const unsigned char ours[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, outlen, ours, sizeof ours, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;  // no ALPN answer: the client may still speak HTTP/1.1
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

// The server's TLS context: TLS 1.2 or later, no compression, OpenSSL's default ciphers.
// Throws std::invalid_argument naming the file and OpenSSL's reason when a file will not load
// or the key does not belong to the certificate.
std::unique_ptr<boost::asio::ssl::context> make_tls_context(const server_config& cfg) {
  namespace ssl = boost::asio::ssl;
  if (cfg.tls_cert_file.empty() != cfg.tls_key_file.empty())
    throw std::invalid_argument("TLS needs both a certificate file and a key file");
  if (cfg.tls_cert_file.empty()) return nullptr;
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::no_compression | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ERR_clear_error();
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(cfg.tls_cert_file, ec);
  if (ec)
    throw std::invalid_argument("TLS: cannot load the certificate chain from '" +
                                cfg.tls_cert_file + "': " + openssl_reason(ec));
  ctx->use_private_key_file(cfg.tls_key_file, ssl::context::pem, ec);
  if (ec)
    throw std::invalid_argument("TLS: cannot load the private key from '" + cfg.tls_key_file +
                                "' (or it does not match the certificate): " +
                                openssl_reason(ec));
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
    throw std::invalid_argument("TLS: the private key in '" + cfg.tls_key_file +
                                "' does not match the certificate in '" + cfg.tls_cert_file +
                                "': " + openssl_reason({}));
  SSL_CTX_set_alpn_select_cb(ctx->native_handle(), select_alpn, nullptr);
  return ctx;
}

}  // namespace skyrelay
