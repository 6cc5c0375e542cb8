// Socket.IO v5 packets (carried in Engine.IO message packets): pure functions, no I/O.
//
//   <type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]
//
// Types: 0 CONNECT, 1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR, 5 BINARY_EVENT, 6 BINARY_ACK.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace skyrelay::sio {

enum class packet_type : std::uint8_t {
  connect = 0, disconnect = 1, event = 2, ack = 3, connect_error = 4, binary_event = 5,
  binary_ack = 6
};

struct packet {
  packet_type type{packet_type::event};
  std::string nsp{"/"};
  std::size_t attachments{0};      // binary packets: how many binary messages follow
  std::optional<std::uint64_t> id; // ack id
  std::string data;                // JSON text; empty when absent
};

// Maximum number of binary attachments accepted in one packet.
inline constexpr std::size_t max_attachments = 64;

// Decodes a packet sent by a client and validates it for its type: CONNECT carries nothing or
// an object; DISCONNECT nothing; EVENT an array whose first element is a string; ACK an array
// and an id; binary types an attachment count. CONNECT_ERROR is server-only. Returns an error
// message for anything else.
std::variant<packet, std::string> decode(std::string_view text);

// Splits the payload of an EVENT that decode() accepted, `["name", args...]`, into the event
// name (unescaped) and the JSON array of the other arguments as they were sent (`[args...]`,
// white space included; `[]` when there are none), without building a JSON document. False
// when the payload is not of that shape.
bool split_event(std::string_view data, std::string& name, std::string& args);

// Encodes a packet; the namespace is written only when it is not "/".
std::string encode(const packet& p);

// The Engine.IO message of an ACK (BINARY_ACK when attachments > 0) in one string: "4" and
// encode() of that packet, `args` being its JSON array.
std::string ack_message(std::string_view nsp, std::uint64_t id, std::string_view args,
                        std::size_t attachments = 0);

// Common server packets.
std::string connect_ok(std::string_view nsp, std::string_view sid, std::string_view pid = {});
std::string connect_error(std::string_view nsp, std::string_view message,
                          std::string_view data_json = {});
// An EVENT (or BINARY_EVENT when attachments > 0) with the event name and a JSON array of
// arguments given as the text between the brackets (may be empty).
std::string event(std::string_view nsp, std::string_view name, std::string_view args,
                  std::size_t attachments = 0, std::optional<std::uint64_t> id = std::nullopt);
// The same EVENT as the Engine.IO message "4<event>" behind its WebSocket text-frame header,
// built in one string that copies `args` once (frame::bytes of a Socket.IO event); sets
// `payload_at` to the header's size (frame::payload_at).
std::string event_frame_bytes(std::string_view nsp, std::string_view name, std::string_view args,
                              std::size_t attachments, std::optional<std::uint64_t> id,
                              std::uint8_t& payload_at);

}  // namespace skyrelay::sio
