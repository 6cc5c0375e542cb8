// libFuzzer target: the HTTP publish API's body decoder (first byte chooses a header key), and
// the fingerprint idempotency keys are bound to: the same body must always give the same one.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "skyrelay/proto/publish_api.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace proto = skyrelay::proto;
  if (size == 0) return 0;
  const std::string_view key = (data[0] & 1) ? std::string_view("key") : std::string_view();
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto decoded = proto::decode_publish(body, key);
  if (auto* r = std::get_if<proto::publish_request>(&decoded)) {
    std::vector<proto::publish_receipt_view> receipts;
    for (const auto& p : r->events) {
      const std::string_view topic = p.to.empty() ? std::string_view() : std::string_view(p.to[0]);
      receipts.push_back({"E:1", topic, 1, "E.1", 0});
    }
    (void)proto::encode_published(receipts, r->batch, false);
    auto again = proto::decode_publish(body, key);
    auto* r2 = std::get_if<proto::publish_request>(&again);
    if (!r2 || proto::publish_fingerprint(*r2) != proto::publish_fingerprint(*r)) __builtin_trap();
  }
  return 0;
}
