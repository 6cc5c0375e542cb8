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

// The position of the first byte at or after `pos` that is not JSON white space (the text's
// size when there is none).
std::size_t skip_space(std::string_view s, std::size_t pos) {
  while (pos < s.size() && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' || s[pos] == '\r'))
    ++pos;
  return pos;
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
  bool array_starts_with_string = false;

  // Validated without building a document (nlohmann's accept: the same grammar and UTF-8 checks
  // as parse, no allocation per value); the shape checks below look only at the first bytes.
  char first = 0;
  if (!p.data.empty()) {
    if (!nlohmann::json::accept(p.data)) return std::string("invalid payload");
    // Bounded nesting: decoders of the arguments (Python's json, nlohmann) recurse per level.
    if (!proto::json_depth_within(p.data, proto::max_json_depth))
      return std::string("payload nested too deeply");
    std::size_t at = skip_space(p.data, 0);
    first = p.data[at];
    if (first == '[') {
      at = skip_space(p.data, at + 1);
      array_starts_with_string = p.data[at] == '"';
    }
  }
  switch (p.type) {
    case packet_type::connect:
      if (p.id || (!p.data.empty() && first != '{')) return std::string("invalid CONNECT payload");
      break;
    case packet_type::disconnect:
      if (p.id || !p.data.empty()) return std::string("invalid DISCONNECT packet");
      break;
    case packet_type::event:
    case packet_type::binary_event:
      if (!array_starts_with_string)
        return std::string("an event payload must be an array starting with the event name");
      break;
    case packet_type::ack:
    case packet_type::binary_ack:
      if (!p.id || first != '[') return std::string("an ack needs an id and an array payload");
      break;
    case packet_type::connect_error:
      return std::string("CONNECT_ERROR is sent by servers only");
  }
  return p;
}

bool split_event(std::string_view data, std::string& name, std::string& args) {
  std::size_t at = skip_space(data, 0);
  if (at >= data.size() || data[at] != '[') return false;
  at = skip_space(data, at + 1);
  if (at >= data.size() || data[at] != '"') return false;
  // The name's closing quote: the text is valid JSON, so a backslash always has a byte after it.
  const std::size_t open = at;
  bool escaped = false;
  std::size_t i = open + 1;
  while (i < data.size() && data[i] != '"') {
    if (data[i] == '\\') {
      escaped = true;
      i += 2;
    } else {
      ++i;
    }
  }
  if (i >= data.size()) return false;
  if (!escaped) {
    name.assign(data.substr(open + 1, i - open - 1));
  } else {  // escapes: decoded by the JSON parser (the rare case)
    auto decoded = nlohmann::json::parse(data.substr(open, i - open + 1), nullptr, false);
    if (!decoded.is_string()) return false;
    name = decoded.get<std::string>();
  }
  at = skip_space(data, i + 1);
  if (at >= data.size()) return false;
  if (data[at] == ']') {
    args.assign("[]");
    return true;
  }
  if (data[at] != ',') return false;
  // The other arguments as sent: "[" and the text after the comma, up to the closing bracket
  // (and any white space after it).
  args.reserve(data.size() - at);
  args.assign(1, '[');
  args.append(data.substr(at + 1));
  return true;
}

std::string encode(const packet& p) {
  std::string out;
  out.reserve(16 + p.nsp.size() + p.data.size());
  append_header(out, p.type, p.attachments, p.nsp, p.id);
  out += p.data;
  return out;
}

std::string ack_message(std::string_view nsp, std::uint64_t id, std::string_view args,
                        std::size_t attachments) {
  std::string out;
  out.reserve(28 + nsp.size() + args.size());
  out += '4';
  append_header(out, attachments ? packet_type::binary_ack : packet_type::ack, attachments, nsp,
                id);
  out += args;
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
