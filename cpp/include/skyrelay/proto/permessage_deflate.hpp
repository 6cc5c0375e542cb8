// permessage-deflate (RFC 7692): the negotiation of a WebSocket handshake, the compression of
// one outbound message and the bounded inflation of one inbound message. Pure functions and
// zlib state, no I/O. zlib does the DEFLATE (raw streams, negative window bits).
//
// Decisions (docs/protocol.md "Compression", docs/architecture.md):
// - The server always compresses without context takeover (server_no_context_takeover in every
//   response): a message's compressed bytes depend on that message alone, so a publication is
//   compressed once and the same bytes go to every connection that negotiated the extension.
// - It always asks the client for client_no_context_takeover too (RFC 7692 7.1.1.2 lets a
//   server add it to any response): no connection keeps an inflate window between messages,
//   so an idle connection holds no zlib state at all; each I/O thread has one inflater.
// - The shared encoding uses shared_window_bits; an offer whose server_max_window_bits is below
//   it is declined (the next offer is tried) rather than answered with a window it cannot keep.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "skyrelay/core/frame.hpp"

namespace skyrelay::ws {

// The LZ77 window of the shared encoding (2^15 bytes: zlib's largest and best ratio).
constexpr int shared_window_bits = 15;

// One extension of a Sec-WebSocket-Extensions value with its parameters, names lower-cased,
// values unquoted (a parameter without a value has none).
struct extension_param {
  std::string name;
  std::optional<std::string> value;
};
struct extension_offer {
  std::string name;
  std::vector<extension_param> params;
};

// Parses a Sec-WebSocket-Extensions value (RFC 6455 9.1: comma-separated extensions, each with
// ";"-separated parameters, values as tokens or quoted strings). Several header fields are
// passed joined with ", ". nullopt when the value does not follow the grammar.
std::optional<std::vector<extension_offer>> parse_extensions(std::string_view value);

// What the server accepted of a client's permessage-deflate offer.
struct deflate_agreement {
  // The client's LZ77 window (client_max_window_bits when the server set it; else 15).
  int client_window_bits{15};
  // The Sec-WebSocket-Extensions value of the 101 response.
  std::string response;
};

// The first permessage-deflate offer in `offers` (a Sec-WebSocket-Extensions value) that the
// server can honour, or nullopt (none, a malformed header, or no acceptable offer: the
// connection then goes on uncompressed). An offer is declined for an unknown or repeated
// parameter, a value out of range, or a server_max_window_bits below shared_window_bits.
std::optional<deflate_agreement> negotiate_deflate(std::string_view offers);

// Compresses `message` as one permessage-deflate message with a fresh context, and returns the
// DEFLATE bytes without the final 0x00 0x00 0xff 0xff (RFC 7692 7.2.1). Any thread (each has
// its own zlib state).
std::string deflate_message(std::string_view message);

// The frame `f` as a connection that negotiated permessage-deflate writes it: `f`'s compressed
// twin (RSV1 set), made by the first caller and shared by every later one whatever its thread,
// or `f` itself (a control frame, a message under `threshold` bytes, one that compression does
// not shrink). `made` is set when this call compressed. Any thread.
frame_ptr deflated(const frame_ptr& f, std::size_t threshold, bool& made);

// Inflates inbound messages. Its zlib state is allocated on first use. With no context
// takeover, each message starts afresh, and one inflater can serve every connection of a
// thread in turn.
class inflater {
 public:
  enum class result { ok, too_big, bad_data };

  // `window_bits`: the peer's window (8..15); `reset_each_message`: no context takeover.
  explicit inflater(int window_bits = 15, bool reset_each_message = true);
  ~inflater();
  inflater(const inflater&) = delete;
  inflater& operator=(const inflater&) = delete;

  // Inflates one message's payload (as received, without the 4-byte tail) into `out`
  // (replaced). It never holds more than `max` + 1 bytes of output, whatever the input
  // promises: a message that inflates past `max` bytes stops there with too_big. After
  // too_big or bad_data, the state is reset (the connection is closing anyway).
  result inflate(std::string_view payload, std::size_t max, std::string& out);

  // Whether zlib state is held (for tests and accounting).
  bool allocated() const noexcept { return static_cast<bool>(z_); }

 private:
  struct state;
  result run(std::string_view payload, std::size_t max, std::string& out);
  std::unique_ptr<state> z_;
  int window_bits_;
  bool reset_each_message_;
};

}  // namespace skyrelay::ws
