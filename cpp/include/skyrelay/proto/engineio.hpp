// Engine.IO v4 packets and long-polling payloads: pure functions, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace skyrelay::eio {

enum class packet_type : char {
  open = '0', close = '1', ping = '2', pong = '3', message = '4', upgrade = '5', noop = '6'
};

struct packet {
  packet_type type{packet_type::noop};
  bool binary{false};  // a binary message (WebSocket binary frame, or "b<base64>" over polling)
  std::string data;    // text after the type character, or the raw bytes of a binary message
};

// Engine.IO error codes, sent as {"code":N,"message":"..."} with HTTP 400.
enum class error_code : int {
  unknown_transport = 0,
  unknown_sid = 1,
  bad_handshake_method = 2,
  bad_request = 3,
  forbidden = 4,
  unsupported_protocol_version = 5,
};
std::string_view message(error_code c) noexcept;
std::string error_body(error_code c);

// One packet from a WebSocket text frame; nullopt when the type is not a valid packet type.
std::optional<packet> decode_text(std::string_view text);

// The packets of a polling POST body (records separated by 0x1E; "b<base64>" is binary);
// nullopt when any record is malformed.
std::optional<std::vector<packet>> decode_payload(std::string_view body);

// Appends one packet as a polling record (no separator).
void append_record(std::string& out, const packet& p);

// The open packet's JSON: {"sid","upgrades","pingInterval","pingTimeout","maxPayload"} in that
// order and nothing else (the conformance suite checks the exact key set).
std::string open_packet(std::string_view sid, bool offer_websocket, std::int64_t ping_interval_ms,
                        std::int64_t ping_timeout_ms, std::size_t max_payload);

std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace skyrelay::eio
