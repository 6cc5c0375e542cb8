// A Redis reply as a C++ value (hiredis's redisReply stays inside redis_connection.cpp), and the
// error codes of the Redis connection.
#pragma once

#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

namespace skyrelay::redis {

struct redis_value {
  enum class kind { nil, string, status, error, integer, array };
  kind type = kind::nil;
  std::string str;                    // string (binary-safe), status and error text
  long long integer = 0;
  std::vector<redis_value> elements;  // array

  bool is_error() const { return type == kind::error; }
};

// Stable codes: a command's completion or the connection's error handler gets one of them.
enum class redis_errc {
  server_error = 1,      // the server answered this command with an error reply (in the value)
  queue_full = 2,        // the pending queue holds options::max_pending commands; not sent
  connection_lost = 3,   // the connection failed or the server closed it; the command may or
                         // may not have run
  closed = 4,            // close() was called; the command may or may not have run
  connect_failed = 5,    // resolving or connecting failed, or options::connect_timeout passed
  auth_failed = 6,       // AUTH or SELECT was refused
  protocol_error = 7,    // the bytes from the server are not RESP (hiredis's reader refused them)
  wrong_mode = 8,        // a command on a subscriber connection, or SUBSCRIBE on a command one
  bad_command = 9,       // an empty command or channel list
  tls_setup_failed = 10, // the URL's CA file, client certificate or key cannot be loaded
  no_answer = 11,        // a plaintext connection closed before the server's first byte
                         // (a TLS port does that: use rediss://)
};

const std::error_category& redis_category();
std::error_code make_error_code(redis_errc e);

}  // namespace skyrelay::redis

template <>
struct std::is_error_code_enum<skyrelay::redis::redis_errc> : std::true_type {};
