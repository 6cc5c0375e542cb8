// An encoded, immutable unit of output: the exact bytes one connection writes to its socket.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace skyrelay {

// A frame is built once (for example, the WebSocket frame of one publication) and shared by every
// connection that sends it; nobody mutates it after construction.
struct frame {
  std::string bytes;          // wire bytes, header included
  std::int64_t publish_ns{0};  // steady-clock time of publication, for the publish-to-write histogram
  bool is_data{true};          // data frames count as messages out; control frames do not
};

using frame_ptr = std::shared_ptr<const frame>;

inline frame_ptr make_frame(std::string bytes, std::int64_t publish_ns = 0, bool is_data = true) {
  return std::make_shared<const frame>(frame{std::move(bytes), publish_ns, is_data});
}

}  // namespace skyrelay
