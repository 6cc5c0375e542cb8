// The skyrelay JSON protocol (docs/protocol.md): decoding client messages and encoding server
// messages. Pure functions, no I/O. Every string returned is one text frame's payload.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "skyrelay/core/errors.hpp"

namespace skyrelay::proto {

inline constexpr std::size_t max_topic_length = 256;
inline constexpr std::size_t max_topics_per_message = 64;
// Deepest nesting of arrays and objects accepted in a client message, the message itself
// counting as one. Re-serializing a value (to hand "data" on as JSON text) recurses once per
// level, so a 64 KiB message of brackets would otherwise overflow the stack.
inline constexpr std::size_t max_json_depth = 128;

enum class client_type : std::uint8_t { subscribe, unsubscribe, ping, event, request };

struct client_message {
  client_type type{client_type::ping};
  std::vector<std::string> topics;  // subscribe / unsubscribe
  bool topics_as_list{false};       // the client used "topics": reply the same way
  std::optional<std::uint64_t> since;  // subscribe: resume after this seq (one topic only)
  std::string epoch;                    // ... of this epoch (required with since)
  std::string event;                // event / request
  std::string data{"null"};         // JSON text of "data"
  std::string id;                   // JSON text of "id" (a string or an integer), empty if absent
};

struct decode_error {
  error_code code;
  std::string message;
  std::string ref;  // JSON text of the message's "id" when it could be read, else empty
};

std::variant<client_message, decode_error> decode(std::string_view text);

// Server messages. `id` arguments are JSON text as kept in client_message::id (may be empty).
std::string welcome(std::string_view sid, std::int64_t heartbeat_ms);
// Where a topic stands (see hub::topic_position); `recovered`/`reset` answer a `since`.
struct topic_state {
  std::uint64_t seq{0};
  std::string_view epoch;
};
struct resume_state {
  bool recovered{false};
  std::string_view reset;  // the reason when not recovered
};
std::string subscribed(const client_message& m, const std::vector<topic_state>& positions,
                       const resume_state* resume = nullptr);
std::string unsubscribed(const client_message& m);
std::string pong(std::string_view ts, std::string_view id);
// A live reset: the sequence of `topic` changed under the client (`topic` empty: the
// broadcasts to everyone, then without seq and epoch); it stands at `seq` in `epoch` now.
std::string reset(std::string_view topic, std::string_view reason, std::uint64_t seq,
                  std::string_view epoch);
// `topic` may be empty (no topic and no seq); `data` is JSON text.
std::string event(std::string_view name, std::string_view topic, std::uint64_t seq,
                  std::string_view ts, std::string_view data);
std::string response_ok(std::string_view id, std::string_view data);
std::string response_error(std::string_view id, std::string_view code, std::string_view message);
std::string error(std::string_view code, std::string_view message, std::string_view ref);

// Appends `s` as a JSON string literal (quotes and escapes).
void append_json_string(std::string& out, std::string_view s);

// True when the arrays and objects of the JSON text `text` nest at most `max_depth` deep. A
// linear scan that skips string contents; call it on text the parser has accepted.
bool json_depth_within(std::string_view text, std::size_t max_depth) noexcept;

}  // namespace skyrelay::proto
