#include "skyrelay/core/errors.hpp"

namespace skyrelay {

std::string_view to_string(error_code c) noexcept {
  switch (c) {
    case error_code::bad_json: return "bad_json";
    case error_code::bad_message: return "bad_message";
    case error_code::unknown_type: return "unknown_type";
    case error_code::binary_not_supported: return "binary_not_supported";
    case error_code::unknown_event: return "unknown_event";
    case error_code::handler_error: return "handler_error";
    case error_code::overloaded: return "overloaded";
    case error_code::too_many_rooms: return "too_many_rooms";
    case error_code::rate_limited: return "rate_limited";
    case error_code::forbidden: return "forbidden";
    case error_code::invalid_payload: return "invalid_payload";
    case error_code::not_found: return "not_found";
    case error_code::count_: break;
  }
  return "unknown";
}

std::string_view to_string(disconnect_reason r) noexcept {
  switch (r) {
    case disconnect_reason::client_close: return "client_close";
    case disconnect_reason::transport_error: return "transport_error";
    case disconnect_reason::server_disconnect: return "server_disconnect";
    case disconnect_reason::heartbeat_timeout: return "heartbeat_timeout";
    case disconnect_reason::slow_consumer: return "slow_consumer";
    case disconnect_reason::message_too_big: return "message_too_big";
    case disconnect_reason::protocol_error: return "protocol_error";
    case disconnect_reason::server_shutdown: return "server_shutdown";
    case disconnect_reason::token_expired: return "token_expired";
    case disconnect_reason::idle_timeout: return "idle_timeout";
    case disconnect_reason::count_: break;
  }
  return "unknown";
}

}  // namespace skyrelay
