// libFuzzer target: the Socket.IO packet decoder, and re-encoding what it accepts.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "skyrelay/proto/socketio.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace sio = skyrelay::sio;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto decoded = sio::decode(text);
  if (auto* p = std::get_if<sio::packet>(&decoded)) {
    // An accepted packet encodes to text that decodes again.
    auto again = sio::decode(sio::encode(*p));
    if (!std::holds_alternative<sio::packet>(again)) __builtin_trap();
  }
  return 0;
}
