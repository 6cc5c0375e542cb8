// libFuzzer target: an application envelope's inbound decoder (S2's shape, with every kind of
// field), and the replies built from what it accepts.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "skyrelay/proto/envelope.hpp"

namespace {
constexpr std::string_view spec = R"({
  "outbound": {"id": "$id", "type": "$event", "t": "$topic", "ts": "$ts_ms", "payload": "$data"},
  "kind": "type", "data": "payload", "id": "id",
  "subscribe": "subscribe", "unsubscribe": "unsubscribe", "topic": ["payload.topic", "topics"],
  "ping": "heartbeat", "pong": {"type": "heartbeat", "t": "$in.telescope_id"},
  "response": {"type": "r", "ref": "$ref", "result": "$result", "x": "$in.a.b"},
  "error": {"type": "error", "code": "$code", "message": "$message", "ref": "$ref"}
})";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace proto = skyrelay::proto;
  static const auto env =
      std::get<std::shared_ptr<const proto::envelope>>(proto::envelope::compile(spec));
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto decoded = env->decode(text);
  proto::reply_values v;
  if (auto* m = std::get_if<proto::envelope_message>(&decoded)) {
    std::string ref;
    std::vector<std::string> captured;
    if (!proto::envelope::from_token(proto::envelope::request_token(*m), ref, captured))
      __builtin_trap();  // a token the codec made must read back
    v.ref = ref;
    v.result = m->msg.data;
    v.captured = &captured;
    (void)env->response(v);
    (void)env->pong(v);
    (void)env->encode(m->msg.event, m->msg.data, m->msg.event, 1, 2, "2026-01-01T00:00:00.000Z");
  } else {
    auto& e = std::get<proto::decode_error>(decoded);
    v.ref = e.ref;
    v.message = e.message;
    (void)env->error(v);
  }
  return 0;
}
