// RFC 6455 framing: pure functions and an incremental parser, no I/O.
//
// The server writes its own frames instead of going through Beast's websocket::stream so that a
// publication's frame (header and payload) is encoded once and shared by every connection, and so
// that each connection's write loop can send all queued frames in one gathered write.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace skyrelay::ws {

enum class opcode : std::uint8_t {
  continuation = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA
};

// Appends an unmasked (server-to-client), final frame header for a payload of `len` bytes.
void append_header(std::string& out, opcode op, std::size_t len);
// A complete unmasked frame.
std::string encode(opcode op, std::string_view payload);
// A close frame with a status code and a reason (cut to fit the 125-byte control limit).
std::string encode_close(std::uint16_t code, std::string_view reason);

// What the parser hands back: a complete data message (text or binary, fragments joined) or one
// control frame. `payload` is valid only during the callback. `compressed`: the message's first
// frame had RSV1 (permessage-deflate): `payload` is DEFLATE data still to inflate, and a text
// message's UTF-8 is checked after inflation, by the receiver.
struct inbound {
  opcode op;
  std::string_view payload;
  bool compressed{false};
};

// Parses client-to-server frames: each must be masked. Validates framing (RSV bits, opcodes,
// control frame rules, fragmentation order), the message size limit and UTF-8 of text messages
// and close reasons. After an error the parser must not be fed again.
class parser {
 public:
  explicit parser(std::size_t max_message) : max_message_(max_message) {}

  // permessage-deflate was negotiated: RSV1 on a message's first frame marks it compressed.
  // Without it, RSV1 is a protocol error (1002), as every other RSV bit always is.
  void allow_compressed() noexcept { allow_rsv1_ = true; }

  // Consumes `n` bytes (which it may unmask in place) and calls `on_frame(const inbound&)` for
  // each complete message or control frame; `on_frame` returns false to stop early. Returns 0, or
  // the close code to send: 1002 protocol error, 1007 invalid UTF-8, 1009 message too big.
  template <class F>
  std::uint16_t feed(char* data, std::size_t n, F&& on_frame);

  // Bytes held for an incomplete frame or message (for memory accounting).
  std::size_t buffered() const noexcept { return pending_.size() + message_.size(); }

 private:
  struct header {
    bool fin;
    bool rsv1;
    opcode op;
    std::size_t header_len;
    std::uint64_t payload_len;
    unsigned char mask[4];
  };
  // 0: need more bytes; >0: header parsed; <0: protocol error.
  int parse_header(const unsigned char* p, std::size_t n, header& h) const noexcept;
  // Validates and handles one complete frame; returns 0 or a close code.
  template <class F>
  std::uint16_t on_complete(const header& h, char* payload, bool& stop, F& on_frame);

  std::size_t max_message_;
  std::string pending_;   // bytes of an incomplete frame
  std::string message_;   // fragments of a message in progress
  opcode message_op_{opcode::continuation};
  bool in_message_{false};
  bool message_compressed_{false};
  bool allow_rsv1_{false};
};

// Out-of-line helpers used by the template.
void unmask(char* p, std::size_t n, const unsigned char mask[4]) noexcept;
std::uint16_t validate_close_payload(std::string_view payload) noexcept;

template <class F>
std::uint16_t parser::feed(char* data, std::size_t n, F&& on_frame) {
  bool stop = false;
  // Fast path: nothing pending, parse straight from the caller's buffer.
  char* p = data;
  std::size_t left = n;
  if (!pending_.empty()) {
    pending_.append(data, n);
    p = pending_.data();
    left = pending_.size();
  }
  std::size_t used = 0;
  while (!stop) {
    header h{};
    int r = parse_header(reinterpret_cast<const unsigned char*>(p + used), left - used, h);
    if (r < 0) return 1002;
    if (r == 0) break;
    // Size limit as soon as the header is known, before buffering the payload.
    if (h.payload_len > max_message_ ||
        (static_cast<std::uint8_t>(h.op) < 0x8 && message_.size() + h.payload_len > max_message_))
      return 1009;
    if (left - used < h.header_len + h.payload_len) break;
    char* payload = p + used + h.header_len;
    unmask(payload, static_cast<std::size_t>(h.payload_len), h.mask);
    used += h.header_len + static_cast<std::size_t>(h.payload_len);
    if (auto code = on_complete(h, payload, stop, on_frame)) return code;
  }
  if (p == data) {
    pending_.assign(p + used, left - used);
  } else {
    pending_.erase(0, used);
  }
  return 0;
}

}  // namespace skyrelay::ws

#include "skyrelay/proto/ws_frame_impl.hpp"
