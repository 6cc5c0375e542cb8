#include "skyrelay/proto/ws_frame.hpp"

#include <cstring>

#include "skyrelay/core/frame.hpp"

namespace skyrelay {

frame message_frame(std::string_view payload, std::uint8_t ws_opcode, std::int64_t publish_ns,
                    bool is_data) {
  frame f;
  f.bytes.reserve(payload.size() + 10);
  ws::append_header(f.bytes, static_cast<ws::opcode>(ws_opcode), payload.size());
  f.payload_at = static_cast<std::uint8_t>(f.bytes.size());
  f.bytes.append(payload);
  f.publish_ns = publish_ns;
  f.is_data = is_data;
  f.ws_opcode = ws_opcode;
  return f;
}

}  // namespace skyrelay

namespace skyrelay::ws {

void append_header(std::string& out, opcode op, std::size_t len) {
  out.push_back(static_cast<char>(0x80 | static_cast<std::uint8_t>(op)));
  if (len < 126) {
    out.push_back(static_cast<char>(len));
  } else if (len <= 0xFFFF) {
    out.push_back(static_cast<char>(126));
    out.push_back(static_cast<char>(len >> 8));
    out.push_back(static_cast<char>(len & 0xFF));
  } else {
    out.push_back(static_cast<char>(127));
    for (int shift = 56; shift >= 0; shift -= 8)
      out.push_back(static_cast<char>((static_cast<std::uint64_t>(len) >> shift) & 0xFF));
  }
}

std::string encode(opcode op, std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 10);
  append_header(out, op, payload.size());
  out.append(payload);
  return out;
}

std::string encode_close(std::uint16_t code, std::string_view reason) {
  if (reason.size() > 123) reason = reason.substr(0, 123);
  // Do not cut a UTF-8 sequence in half: back up over continuation bytes.
  while (!reason.empty() && !proto::is_valid_utf8(reason)) reason.remove_suffix(1);
  std::string payload;
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code & 0xFF));
  payload.append(reason);
  return encode(opcode::close, payload);
}

void unmask(char* p, std::size_t n, const unsigned char mask[4]) noexcept {
  std::uint32_t m32;
  std::memcpy(&m32, mask, 4);
  const std::uint64_t m64 = (static_cast<std::uint64_t>(m32) << 32) | m32;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t v;
    std::memcpy(&v, p + i, 8);
    v ^= m64;
    std::memcpy(p + i, &v, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<char>(p[i] ^ mask[i & 3]);
}

std::uint16_t validate_close_payload(std::string_view payload) noexcept {
  if (payload.empty()) return 0;
  if (payload.size() == 1) return 1002;
  const auto code = static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                               static_cast<unsigned char>(payload[1]));
  // RFC 6455 7.4: codes that may appear on the wire.
  const bool valid = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
                     (code >= 3000 && code <= 4999);
  if (!valid) return 1002;
  if (!proto::is_valid_utf8(payload.substr(2))) return 1007;
  return 0;
}

int parser::parse_header(const unsigned char* p, std::size_t n, header& h) const noexcept {
  if (n < 2) return 0;
  const unsigned char b0 = p[0], b1 = p[1];
  // RSV2 and RSV3: no extension uses them. RSV1: permessage-deflate, when negotiated, on the
  // first frame of a data message only (RFC 7692 6.1).
  if (b0 & 0x30) return -1;
  h.fin = (b0 & 0x80) != 0;
  h.rsv1 = (b0 & 0x40) != 0;
  const unsigned op = b0 & 0x0F;
  if (h.rsv1 && (!allow_rsv1_ || op == 0x0 || op >= 0x8)) return -1;
  switch (op) {
    case 0x0: case 0x1: case 0x2: case 0x8: case 0x9: case 0xA: break;
    default: return -1;
  }
  h.op = static_cast<opcode>(op);
  if (!(b1 & 0x80)) return -1;  // client frames must be masked
  std::uint64_t len = b1 & 0x7F;
  std::size_t pos = 2;
  if (op >= 0x8 && (len > 125 || !h.fin)) return -1;
  if (len == 126) {
    if (n < 4) return 0;
    len = (static_cast<std::uint64_t>(p[2]) << 8) | p[3];
    if (len < 126) return -1;  // not minimal
    pos = 4;
  } else if (len == 127) {
    if (n < 10) return 0;
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
    if (len >> 63) return -1;
    if (len <= 0xFFFF) return -1;  // not minimal
    pos = 10;
  }
  if (n < pos + 4) return 0;
  std::memcpy(h.mask, p + pos, 4);
  h.header_len = pos + 4;
  h.payload_len = len;
  return 1;
}

}  // namespace skyrelay::ws
