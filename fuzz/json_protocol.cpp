// libFuzzer target: the JSON protocol's client message decoder, and re-encoding what it accepts.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "skyrelay/proto/json_protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace proto = skyrelay::proto;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto decoded = proto::decode(text);
  if (auto* m = std::get_if<proto::client_message>(&decoded)) {
    // Whatever was accepted must encode back without trouble.
    if (m->type == proto::client_type::subscribe || m->type == proto::client_type::unsubscribe) {
      std::vector<proto::topic_state> states(m->topics.size(), {1, "e"});
      proto::resume_state resume{false, "history_gap"};
      (void)proto::subscribed(*m, states, m->since ? &resume : nullptr);
      (void)proto::unsubscribed(*m);
    }
    (void)proto::response_ok(m->id, m->data);
    (void)proto::error("bad_message", m->event, m->id);
  }
  return 0;
}
