#include "skyrelay/broker/redis_value.hpp"

namespace skyrelay::redis {
namespace {

class category : public std::error_category {
 public:
  const char* name() const noexcept override { return "skyrelay.redis"; }
  std::string message(int ev) const override {
    switch (static_cast<redis_errc>(ev)) {
      case redis_errc::server_error: return "the Redis server answered with an error";
      case redis_errc::queue_full: return "the Redis connection's pending queue is full";
      case redis_errc::connection_lost: return "the connection to Redis was lost";
      case redis_errc::closed: return "the Redis connection was closed";
      case redis_errc::connect_failed: return "could not connect to Redis";
      case redis_errc::auth_failed: return "Redis refused AUTH or SELECT";
      case redis_errc::protocol_error: return "the Redis server sent bytes that are not RESP";
      case redis_errc::wrong_mode: return "command not allowed in this connection's role";
      case redis_errc::bad_command: return "empty Redis command or channel list";
      case redis_errc::tls_setup_failed:
        return "cannot load the TLS CA file, client certificate or key of the Redis URL";
      case redis_errc::no_answer:
        return "the Redis server closed the connection without answering (a TLS port? then "
               "use rediss://)";
    }
    return "unknown Redis connection error";
  }
};

}  // namespace

const std::error_category& redis_category() {
  static const category instance;
  return instance;
}

std::error_code make_error_code(redis_errc e) { return {static_cast<int>(e), redis_category()}; }

}  // namespace skyrelay::redis
