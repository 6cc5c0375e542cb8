// An SSE stream's cursor as its `id:` lines carry it (docs/protocol.md, "Resuming a stream").
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "skyrelay/core/channel_pos.hpp"

namespace skyrelay::proto {

// The longest cursor parse_sse_cursor reads: the prefix, and the broadcasts and 64 topics at
// two 20-digit numbers each, with room to spare.
inline constexpr std::size_t max_sse_cursor_length = 4096;

// "<prefix>~<n>.<pos>~<n>.<pos>...": one `~<n>.<pos>` per channel in the stream's order (the
// "/" broadcasts, then each topic), where the channel's epoch is "<prefix>.<n>" and `pos` the
// last position the stream has. Every epoch must start with "<prefix>." (the hub makes them
// so); `prefix` holds neither '~' nor '.'.
std::string format_sse_cursor(std::string_view prefix, const std::vector<stream_point>& points);

// A Last-Event-ID read back: the points, or why not: "bad_id" (not a cursor), or
// "epoch_changed" for an id of the form "<epoch>-<n>" that servers before per-channel cursors
// wrote (it counted every publication of the server, which maps to no channel's position).
struct sse_cursor_read {
  std::optional<std::vector<stream_point>> points;
  std::string_view error;
};
sse_cursor_read parse_sse_cursor(std::string_view id);

}  // namespace skyrelay::proto
