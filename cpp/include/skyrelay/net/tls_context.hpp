// The TLS context of the one port (https and wss), made once from the configuration.
#pragma once

#include <memory>

#include "skyrelay/core/config.hpp"

namespace boost::asio::ssl {
class context;
}

namespace skyrelay {

// The server's TLS context: TLS 1.2 or later, no compression, OpenSSL's default ciphers, ALPN
// answering only "http/1.1". Null when the configuration names no certificate (plain TCP).
// Throws std::invalid_argument naming the file and OpenSSL's reason when a file will not load
// or the key does not belong to the certificate, or when only one of the two files is given.
std::unique_ptr<boost::asio::ssl::context> make_tls_context(const server_config& cfg);

}  // namespace skyrelay
