// libFuzzer target: the Socket.IO packet decoder, re-encoding what it accepts, and splitting an
// accepted EVENT into its name and arguments (checked against a JSON document of the payload).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "skyrelay/proto/socketio.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace sio = skyrelay::sio;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto decoded = sio::decode(text);
  if (auto* p = std::get_if<sio::packet>(&decoded)) {
    // An accepted packet encodes to text that decodes again.
    auto again = sio::decode(sio::encode(*p));
    if (!std::holds_alternative<sio::packet>(again)) __builtin_trap();
    if (p->type == sio::packet_type::event || p->type == sio::packet_type::binary_event) {
      // The split gives the document's first element and the array of the others.
      std::string name, args;
      if (!sio::split_event(p->data, name, args)) __builtin_trap();
      auto whole = nlohmann::json::parse(p->data, nullptr, false);
      auto rest = nlohmann::json::parse(args, nullptr, false);
      if (whole.is_discarded() || rest.is_discarded() || !whole.is_array() || whole.empty() ||
          !whole[0].is_string() || whole[0].get<std::string>() != name)
        __builtin_trap();
      whole.erase(whole.begin());
      if (whole != rest) __builtin_trap();
    }
    if (p->type == sio::packet_type::ack || p->type == sio::packet_type::binary_ack) {
      if (sio::ack_message(p->nsp, *p->id, p->data, p->attachments) != "4" + sio::encode(*p))
        __builtin_trap();
    }
  }
  return 0;
}
