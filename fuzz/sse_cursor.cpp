// libFuzzer target: an SSE stream's Last-Event-ID (a per-stream cursor, or an id in the old
// "<epoch>-<n>" form), as a client sends it on reconnect. The parser must answer every input
// with points or a reason, never crash or trip a sanitizer; what it accepts must survive a
// round trip: formatting the points under the id's prefix and parsing that gives them back.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "skyrelay/proto/sse_cursor.hpp"

using namespace skyrelay::proto;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view id(reinterpret_cast<const char*>(data), size);
  const auto read = parse_sse_cursor(id);
  if (!read.points) {
    if (read.error != "bad_id" && read.error != "epoch_changed") std::abort();
    return 0;
  }
  if (!read.error.empty() || read.points->empty() || id.size() > max_sse_cursor_length)
    std::abort();
  const std::string_view prefix = id.substr(0, id.find('~'));
  const auto again = parse_sse_cursor(format_sse_cursor(prefix, *read.points));
  if (!again.points || *again.points != *read.points) std::abort();
  return 0;
}
