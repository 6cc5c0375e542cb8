// One thing to publish, and where it goes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "skyrelay/hub/subscriber.hpp"

namespace skyrelay {

struct publication {
  std::string event;              // event name
  std::string data;               // payload as JSON text (validated by the caller)
  // Names in `nsp`, each resolved by hub::publish: the sid of a live connection of `nsp`
  // (direct), else nothing when it is a connection's sid (of another namespace, or recently
  // closed), else the room (nsp, name).
  std::vector<std::string> to;
  // Sids for direct delivery through the connection registry only, never taken for a room; a
  // connection outside `nsp` or gone gets nothing. `to` and `to_conns` both empty: everyone.
  std::vector<std::string> to_conns;
  std::vector<std::string> skip;  // sids that must not receive it
  std::optional<overflow_policy> policy;  // overrides the room's policy
  std::string nsp{"/"};  // Socket.IO namespace; a broadcast to everyone stays inside it
  // Socket.IO only: the event's arguments as JSON texts joined by commas, when they are not
  // just `data` (several arguments, or binary placeholders); and the binary attachments the
  // placeholders refer to. JSON-protocol recipients get `data`.
  std::optional<std::string> sio_args;
  std::shared_ptr<const std::vector<std::string>> attachments;
};

// Per-delivery metadata the hub fixes when it routes a publication.
struct publish_meta {
  std::string_view topic;  // the room when the publication targets exactly one room, else empty
  std::uint64_t seq{0};    // that room's sequence number (from 1), 0 when there is no topic
  std::string ts;          // ISO-8601 UTC publication time
  std::int64_t publish_ns{0};
  std::uint64_t id{0};     // unique publication id, increasing in delivery order (offsets)
};

}  // namespace skyrelay
