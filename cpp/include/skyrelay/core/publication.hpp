// One thing to publish, and where it goes. Protocol-neutral: each transport's encoder (see
// core/encoder.hpp) decides how an event goes on its wire.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "skyrelay/core/channel_pos.hpp"
#include "skyrelay/core/overflow_policy.hpp"

namespace skyrelay {

struct publication {
  // ---- the event ----
  std::string event;  // its name
  // The payload as one JSON value (JSON text, validated by the caller). Always set: it is the
  // whole payload for an encoder that carries one value (the JSON protocol's `data`, SSE's
  // data lines). When `args` is set, `data` is the same arguments as one value: a JSON array
  // of them, with each binary part as a base64 string.
  std::string data;
  // The payload as several JSON arguments, when it is not just the one argument `data`
  // (several arguments, or binary parts among them): the arguments' JSON texts joined by
  // commas, that is a JSON array's text without its brackets ("" for no arguments). A binary
  // part stands in it as the placeholder {"_placeholder":true,"num":<i>}, i its index in
  // `binary`. An encoder that carries arguments and binary (Socket.IO) takes `args`, else
  // `data` as the one argument.
  std::optional<std::string> args;
  // The binary parts the placeholders of `args` refer to, in index order; null or empty when
  // there are none. Shared, never mutated: the history keeps the publication as it is.
  std::shared_ptr<const std::vector<std::string>> binary;

  // ---- where it goes ----
  // Names in `nsp`, each resolved by hub::publish: the sid of a live connection of `nsp`
  // (direct), else nothing when it is a connection's sid (of another namespace, or recently
  // closed), else the room (nsp, name).
  std::vector<std::string> to;
  // Sids for direct delivery through the connection registry only, never taken for a room; a
  // connection outside `nsp` or gone gets nothing. `to` and `to_conns` both empty: everyone.
  std::vector<std::string> to_conns;
  std::vector<std::string> skip;  // sids that must not receive it
  std::optional<overflow_policy> policy;  // overrides the room's policy
  // The namespace: the address part shared by every target. A room named in `to` is the
  // channel (nsp, name) (see hub/channel.hpp), a direct target must be a connection of `nsp`,
  // and a broadcast to everyone reaches only the connections of `nsp`. The JSON protocol's and
  // SSE's connections are in "/"; Socket.IO's are in their namespace.
  std::string nsp{"/"};
};

// What the hub fixes when it routes a publication, handed to each encoder with it.
struct publish_meta {
  std::string_view topic;  // the room when the publication targets exactly one room, else empty
  // That room's sequence number (from 1), 0 when there is no topic. It counts the
  // publications to that room alone (the JSON protocol's `seq`).
  std::uint64_t seq{0};
  std::string ts;          // ISO-8601 UTC publication time
  std::int64_t publish_ns{0};  // steady-clock time of publication; 0 for a replay
  // Unique publication id. It is taken under the locks of the channels the publication goes
  // to, so it increases in delivery order within a channel, but says nothing about the order
  // of publications to different channels.
  std::uint64_t id{0};
  // Its position in every channel it was recorded in (rooms, or the namespace's broadcasts);
  // null when it went to connections only.
  channel_positions positions;
  // The epoch of each channel in `positions`, in the same order (for receipts).
  std::vector<std::string> epochs;
};

}  // namespace skyrelay
