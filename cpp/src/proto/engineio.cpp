#include "skyrelay/proto/engineio.hpp"

#include <array>

#include "skyrelay/proto/json_protocol.hpp"

namespace skyrelay::eio {

namespace {
constexpr char record_separator = '\x1e';
constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

bool valid_type(char c) { return c >= '0' && c <= '6'; }
}  // namespace

std::string_view message(error_code c) noexcept {
  switch (c) {
    case error_code::unknown_transport: return "Transport unknown";
    case error_code::unknown_sid: return "Session ID unknown";
    case error_code::bad_handshake_method: return "Bad handshake method";
    case error_code::bad_request: return "Bad request";
    case error_code::forbidden: return "Forbidden";
    case error_code::unsupported_protocol_version: return "Unsupported protocol version";
  }
  return "Bad request";
}

std::string error_body(error_code c) {
  std::string out = "{\"code\":" + std::to_string(static_cast<int>(c)) + ",\"message\":";
  proto::append_json_string(out, message(c));
  out += '}';
  return out;
}

std::optional<packet> decode_text(std::string_view text) {
  if (text.empty() || !valid_type(text[0])) return std::nullopt;
  return packet{static_cast<packet_type>(text[0]), false, std::string(text.substr(1))};
}

std::optional<std::vector<packet>> decode_payload(std::string_view body) {
  std::vector<packet> out;
  std::size_t start = 0;
  while (start <= body.size()) {
    std::size_t end = body.find(record_separator, start);
    if (end == std::string_view::npos) end = body.size();
    std::string_view rec = body.substr(start, end - start);
    if (rec.empty()) return std::nullopt;
    if (rec[0] == 'b') {
      auto bytes = base64_decode(rec.substr(1));
      if (!bytes) return std::nullopt;
      out.push_back(packet{packet_type::message, true, std::move(*bytes)});
    } else {
      auto p = decode_text(rec);
      if (!p) return std::nullopt;
      out.push_back(std::move(*p));
    }
    start = end + 1;
  }
  return out;
}

void append_record(std::string& out, const packet& p) {
  if (p.binary) {
    out += 'b';
    out += base64_encode(p.data);
    return;
  }
  out += static_cast<char>(p.type);
  out += p.data;
}

std::string open_packet(std::string_view sid, bool offer_websocket, std::int64_t ping_interval_ms,
                        std::int64_t ping_timeout_ms, std::size_t max_payload) {
  std::string out = "{\"sid\":";
  proto::append_json_string(out, sid);
  out += offer_websocket ? ",\"upgrades\":[\"websocket\"]" : ",\"upgrades\":[]";
  out += ",\"pingInterval\":" + std::to_string(ping_interval_ms);
  out += ",\"pingTimeout\":" + std::to_string(ping_timeout_ms);
  out += ",\"maxPayload\":" + std::to_string(max_payload);
  out += '}';
  return out;
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                 (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                 static_cast<unsigned char>(bytes[i + 2]);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  if (std::size_t rest = bytes.size() - i) {
    unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    if (rest == 2) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += rest == 2 ? alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  static const auto table = [] {
    std::array<signed char, 256> t{};
    t.fill(-1);
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = static_cast<signed char>(i);
    return t;
  }();
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      char c = text[i + k];
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad) return std::nullopt;  // data after padding
      v[k] = table[static_cast<unsigned char>(c)];
      if (v[k] < 0) return std::nullopt;
    }
    unsigned n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out += static_cast<char>((n >> 16) & 0xFF);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(n & 0xFF);
  }
  return out;
}

}  // namespace skyrelay::eio
