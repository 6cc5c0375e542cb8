// libFuzzer target: Engine.IO packets and polling payloads (records, base64 binary).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "skyrelay/proto/engineio.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace eio = skyrelay::eio;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)eio::decode_text(text);
  if (auto packets = eio::decode_payload(text)) {
    // A payload that decodes must encode again and decode to the same packets.
    std::string again;
    for (std::size_t i = 0; i < packets->size(); ++i) {
      if (i) again += '\x1e';  // records are separated, not terminated
      eio::append_record(again, (*packets)[i]);
    }
    auto round = eio::decode_payload(again);
    if (!round || round->size() != packets->size()) __builtin_trap();
  }
  if (auto bytes = eio::base64_decode(text)) {
    if (eio::base64_decode(eio::base64_encode(*bytes)) != bytes) __builtin_trap();
  }
  return 0;
}
