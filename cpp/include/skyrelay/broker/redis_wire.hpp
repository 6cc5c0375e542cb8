// What the Redis broker stores and sends (docs/architecture.md, "Redis data model"): channel
// tags, the message (a JSON header line, then the publication as CBOR) and the publish script.
// Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "skyrelay/broker/redis_value.hpp"
#include "skyrelay/core/publication.hpp"
#include "skyrelay/hub/channel.hpp"

namespace skyrelay::redis {

// A channel's tag: the namespace's length keeps namespace and room apart, so no spelling of
// one collides with another: room (nsp, room) is `{r<len(nsp)>:<nsp><room>}`, the broadcasts
// of nsp `{b<len(nsp)>:<nsp>}`. The braces make it a Cluster hash tag later.
std::string room_tag(const channel& room);
std::string broadcast_tag(const std::string& nsp);
// The channel a tag names; nullopt for anything that is not a tag made above.
struct tagged_channel {
  channel ch;
  bool broadcasts{false};
};
std::optional<tagged_channel> parse_tag(std::string_view tag);

// The publication's body: every field of `p`, its time and the publishing node, as CBOR
// (binary-safe: binary parts stay bytes).
std::string encode_body(const publication& p, std::string_view ts, std::string_view node);
// False when `bytes` is not a body made by encode_body.
bool decode_body(std::string_view bytes, publication& p, std::string& ts);

// One message as the script publishes it: header line (JSON) + "\n" + body.
struct message_header {
  struct position {
    std::string tag, epoch;
    std::uint64_t seq{0};
  };
  std::string uid;                   // unique per publication (publishing node + counter)
  std::vector<position> channels;    // every channel it was numbered in
  // Direct targets, per node: (node id, sids on that node).
  std::vector<std::pair<std::string, std::vector<std::string>>> direct;
  // Redis Cluster: every room tag of the publication, over all hash slots (`"a"`; empty on
  // one server, whose message lists them all in `channels`).
  std::vector<std::string> all;
};
// Splits and parses a message; false when it is not one (the body is left unparsed).
bool split_message(std::string_view payload, message_header& h, std::string_view& body);

// The publish script (EVALSHA with no keys; ARGV documented in redis_wire.cpp).
const std::string& publish_script();
// The script that starts a channel's sequence when it has none (EVAL, 2 keys; redis_wire.cpp).
const std::string& start_script();

// The Redis Cluster hash slot of `key` (0 .. 16383): CRC16 of the key, or of the text between
// its first `{` and the first `}` after it when that text is not empty (the hash tag). Every
// key and channel of one tag is in one slot: `<prefix>{r1:/room}:m` and `<prefix>{r1:/room}`.
std::uint16_t key_slot(std::string_view key);

// Who serves which slots of a Redis Cluster, from a CLUSTER SLOTS reply: each master once
// (host, port), and for each slot the index of its master in `masters` (-1: not served).
struct cluster_map {
  std::vector<std::pair<std::string, std::uint16_t>> masters;
  std::vector<int> owner = std::vector<int>(16384, -1);
};
// Nullopt when `reply` is not a CLUSTER SLOTS answer (an error, or a malformed range).
std::optional<cluster_map> parse_cluster_slots(const redis_value& reply);

// Every node's epoch prefix on the Redis broker (hub::set_epoch_prefix).
inline constexpr const char* cluster_epoch_prefix = "r";

}  // namespace skyrelay::redis
