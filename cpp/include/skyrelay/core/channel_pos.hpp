// Where a publication stands in one channel it was recorded in.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace skyrelay {

// A publication's place in one channel of its namespace: a room, or the namespace's broadcasts
// to everyone. `pos` counts every publication the channel recorded (1, 2, ...), those to
// several rooms included, within the channel's epoch; it is what an SSE stream's cursor keeps
// per channel. (A room's `seq`, the JSON protocol's, counts only publications to that room
// alone; see publish_meta.)
struct channel_pos {
  std::string room;        // the room; empty with `broadcast`
  bool broadcast{false};   // the namespace's broadcasts to everyone
  std::uint64_t pos{0};
};

// Shared by a publication's history entry, its meta and the frames encoded from it; immutable.
using channel_positions = std::shared_ptr<const std::vector<channel_pos>>;

// Where a stream stands in one channel: the last position (channel_pos::pos) it has, and the
// channel's epoch. An SSE stream's cursor is one per channel: its namespace's broadcasts, then
// each of its topics.
struct stream_point {
  std::string epoch;
  std::uint64_t pos{0};
  friend bool operator==(const stream_point&, const stream_point&) = default;
};

}  // namespace skyrelay
