// The HTTP publish API (POST /api/publish, docs/protocol.md): decoding request bodies and
// encoding answers. Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "skyrelay/core/publication.hpp"

namespace skyrelay::proto {

inline constexpr std::size_t max_publish_batch = 1000;
inline constexpr std::size_t max_idempotency_key = 200;

struct publish_request {
  std::vector<publication> events;
  bool batch{false};            // the body had "events": answer with a list
  std::string idempotency_key;  // empty: none
};

struct publish_error {
  std::string code;  // bad_json or bad_request
  std::string message;
};

// `header_key` is the Idempotency-Key header (may be empty); a key in the body must agree.
std::variant<publish_request, publish_error> decode_publish(std::string_view body,
                                                            std::string_view header_key);

// What a request asks for, whatever its JSON spelling (whitespace, key order, the idempotency
// key in the header or the body): its events with every field, in order, length-prefixed.
// Idempotency keys are bound to a digest of it.
std::string publish_fingerprint(const publish_request& req);

// What one publication got: its unique id ("<process>:<n>", not a resume point), its topic,
// seq and the topic's epoch when it went to exactly one room (seq 0: none), and the number of
// connections it was queued for.
struct publish_receipt_view {
  std::string id;
  std::string_view topic;
  std::uint64_t seq{0};
  std::string_view epoch;
  std::size_t delivered{0};
};
std::string encode_published(const std::vector<publish_receipt_view>& receipts, bool batch,
                             bool duplicate);

}  // namespace skyrelay::proto
