#include "skyrelay/proto/socketio.hpp"

#include <nlohmann/json.hpp>

#include "skyrelay/proto/json_protocol.hpp"
#include "skyrelay/proto/ws_frame.hpp"

namespace skyrelay::sio {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Parses digits at `pos`; false on overflow or when there are none.
bool read_number(std::string_view s, std::size_t& pos, std::uint64_t& out) {
  std::size_t start = pos;
  out = 0;
  while (pos < s.size() && is_digit(s[pos])) {
    if (pos - start >= 18) return false;
    out = out * 10 + static_cast<std::uint64_t>(s[pos] - '0');
    ++pos;
  }
  return pos > start;
}

void append_header(std::string& out, packet_type type, std::size_t attachments,
                   std::string_view nsp, std::optional<std::uint64_t> id) {
  out += static_cast<char>('0' + static_cast<int>(type));
  if (type == packet_type::binary_event || type == packet_type::binary_ack) {
    out += std::to_string(attachments);
    out += '-';
  }
  if (!nsp.empty() && nsp != "/") {
    out += nsp;
    out += ',';
  }
  if (id) out += std::to_string(*id);
}

}  // namespace

std::variant<packet, std::string> decode(std::string_view s) {
  if (s.empty() || s[0] < '0' || s[0] > '6') return std::string("invalid packet type");
  packet p;
  p.type = static_cast<packet_type>(s[0] - '0');
  std::size_t pos = 1;
  const bool binary = p.type == packet_type::binary_event || p.type == packet_type::binary_ack;
  if (binary) {
    std::uint64_t n = 0;
    if (!read_number(s, pos, n) || pos >= s.size() || s[pos] != '-')
      return std::string("invalid attachment count");
    if (n == 0 || n > max_attachments) return std::string("invalid attachment count");
    p.attachments = static_cast<std::size_t>(n);
    ++pos;
  }
  if (pos < s.size() && s[pos] == '/') {
    std::size_t comma = s.find(',', pos);
    // "40/custom" (no comma and no payload) is valid for CONNECT and DISCONNECT.
    std::size_t end = comma == std::string_view::npos ? s.size() : comma;
    p.nsp = std::string(s.substr(pos, end - pos));
    pos = comma == std::string_view::npos ? s.size() : comma + 1;
  }
  if (pos < s.size() && is_digit(s[pos])) {
    std::uint64_t id = 0;
    if (!read_number(s, pos, id)) return std::string("invalid ack id");
    p.id = id;
  }
  p.data = std::string(s.substr(pos));

  nlohmann::json j;
  if (!p.data.empty()) {
    j = nlohmann::json::parse(p.data, nullptr, false);
    if (j.is_discarded()) return std::string("invalid payload");
    // The server re-serializes event arguments, which recurses once per level.
    if (!proto::json_depth_within(p.data, proto::max_json_depth))
      return std::string("payload nested too deeply");
  }
  switch (p.type) {
    case packet_type::connect:
      if (p.id || (!p.data.empty() && !j.is_object())) return std::string("invalid CONNECT payload");
      break;
    case packet_type::disconnect:
      if (p.id || !p.data.empty()) return std::string("invalid DISCONNECT packet");
      break;
    case packet_type::event:
    case packet_type::binary_event:
      if (!j.is_array() || j.empty() || !j[0].is_string())
        return std::string("an event payload must be an array starting with the event name");
      break;
    case packet_type::ack:
    case packet_type::binary_ack:
      if (!p.id || !j.is_array()) return std::string("an ack needs an id and an array payload");
      break;
    case packet_type::connect_error:
      return std::string("CONNECT_ERROR is sent by servers only");
  }
  return p;
}

std::string encode(const packet& p) {
  std::string out;
  out.reserve(16 + p.nsp.size() + p.data.size());
  append_header(out, p.type, p.attachments, p.nsp, p.id);
  out += p.data;
  return out;
}

std::string connect_ok(std::string_view nsp, std::string_view sid, std::string_view pid) {
  std::string out;
  append_header(out, packet_type::connect, 0, nsp, std::nullopt);
  out += "{\"sid\":";
  proto::append_json_string(out, sid);
  if (!pid.empty()) {
    out += ",\"pid\":";
    proto::append_json_string(out, pid);
  }
  out += '}';
  return out;
}

std::string connect_error(std::string_view nsp, std::string_view message,
                          std::string_view data_json) {
  std::string out;
  append_header(out, packet_type::connect_error, 0, nsp, std::nullopt);
  out += "{\"message\":";
  proto::append_json_string(out, message);
  if (!data_json.empty()) {
    out += ",\"data\":";
    out += data_json;
  }
  out += '}';
  return out;
}

std::string event(std::string_view nsp, std::string_view name, std::string_view args,
                  std::size_t attachments, std::optional<std::uint64_t> id) {
  std::string out;
  out.reserve(24 + nsp.size() + name.size() + args.size());
  append_header(out, attachments ? packet_type::binary_event : packet_type::event, attachments,
                nsp, id);
  out += '[';
  proto::append_json_string(out, name);
  if (!args.empty()) {
    out += ',';
    out += args;
  }
  out += ']';
  return out;
}

std::string event_frame_bytes(std::string_view nsp, std::string_view name, std::string_view args,
                              std::size_t attachments, std::optional<std::uint64_t> id,
                              std::uint8_t& payload_at) {
  // The short parts first, so that the header's length is known before `args` is copied.
  std::string head = "4";
  append_header(head, attachments ? packet_type::binary_event : packet_type::event, attachments,
                nsp, id);
  head += '[';
  proto::append_json_string(head, name);
  const std::size_t size = head.size() + (args.empty() ? 0 : 1 + args.size()) + 1;
  std::string out;
  out.reserve(10 + size);
  ws::append_header(out, ws::opcode::text, size);
  payload_at = static_cast<std::uint8_t>(out.size());
  out += head;
  if (!args.empty()) {
    out += ',';
    out += args;
  }
  out += ']';
  return out;
}

}  // namespace skyrelay::sio
