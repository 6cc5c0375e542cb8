// Stable error codes and WebSocket close codes. These values are part of the public protocol
// (docs/protocol.md): never renumber or rename one, only add.
#pragma once

#include <cstdint>
#include <string_view>

namespace skyrelay {

// Codes sent in {"type":"error","code":...} frames and in failed responses.
enum class error_code : std::uint8_t {
  bad_json,             // the frame is not valid JSON
  bad_message,          // valid JSON, but not an object or a field has the wrong type
  unknown_type,         // "type" is missing or not one of the protocol's client messages
  binary_not_supported, // the JSON protocol carries text frames only
  unknown_event,        // a request names an event with no handler
  handler_error,        // the application's handler raised
  overloaded,           // the dispatcher queue is full; the message was not handled
  not_found,            // a request refers to something that does not exist
  too_many_rooms,       // a subscribe would take the connection past max_rooms_per_connection
  rate_limited,         // over the connection's inbound message rate; the message was dropped
  forbidden,            // the connection lacks a role the topic or event requires
  invalid_payload,      // a typed handler's data does not validate (the app's answer)
  count_
};

std::string_view to_string(error_code c) noexcept;

// WebSocket close codes used by the server (RFC 6455 section 7.4 plus our 4xxx range).
namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;      // server shutdown
inline constexpr std::uint16_t protocol_error = 1002;  // RFC 6455 framing violation
inline constexpr std::uint16_t invalid_payload = 1007; // text frame with invalid UTF-8
inline constexpr std::uint16_t policy_violation = 1008;
inline constexpr std::uint16_t message_too_big = 1009; // inbound message over the limit
inline constexpr std::uint16_t internal_error = 1011;
inline constexpr std::uint16_t heartbeat_timeout = 4000;  // nothing heard from the peer in time
inline constexpr std::uint16_t slow_consumer = 4001;      // outbox overflow with policy disconnect
inline constexpr std::uint16_t server_disconnect = 4002;  // the application called disconnect()
inline constexpr std::uint16_t token_expired = 4003;      // the connection's token expired
inline constexpr std::uint16_t idle_timeout = 4004;       // nothing at all heard for idle_timeout
}  // namespace close_code

// Why a connection ended; passed to on_disconnect and counted in /metrics.
enum class disconnect_reason : std::uint8_t {
  client_close,       // the peer sent a close frame
  transport_error,    // the socket failed or the peer vanished without a close frame
  server_disconnect,  // the application disconnected it
  heartbeat_timeout,
  slow_consumer,
  message_too_big,
  protocol_error,
  server_shutdown,
  token_expired,      // the token the connection was opened with expired
  idle_timeout,       // nothing at all arrived from the peer for idle_timeout
  count_
};

std::string_view to_string(disconnect_reason r) noexcept;

}  // namespace skyrelay
