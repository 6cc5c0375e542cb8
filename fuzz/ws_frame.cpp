// libFuzzer target: the RFC 6455 frame parser over the input split at fuzzer-chosen points.
#include <cstddef>
#include <cstdint>
#include <string>

#include "skyrelay/proto/ws_frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace ws = skyrelay::ws;
  if (size < 1) return 0;
  // The first byte picks how the rest is cut into reads, as TCP may cut it.
  const std::size_t step = 1 + data[0] % 17;
  std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  ws::parser parser(4096);
  std::size_t frames = 0;
  for (std::size_t at = 0; at < bytes.size(); at += step) {
    const std::size_t n = std::min(step, bytes.size() - at);
    const auto code = parser.feed(bytes.data() + at, n, [&](const ws::inbound& in) {
      ++frames;
      return in.payload.size() <= 4096;
    });
    if (code) break;  // after an error the parser is not fed again
  }
  return 0;
}
