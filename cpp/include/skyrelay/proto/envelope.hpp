// An application's own JSON envelope (docs/protocol.md "Envelopes"): how an endpoint declared by
// the application (server.endpoint(..., envelope=...)) wraps what it sends, and reads what its
// clients send. Pure functions, no I/O.
//
// Outbound, a template: a JSON value whose strings "$event", "$data", ... are placeholders and
// everything else is constant, compiled once into literal chunks and slots, so that encoding a
// publication is concatenation. Inbound, a reading: which field holds the message's kind, where
// its data and request id are, which kinds subscribe, unsubscribe and ping (and where their
// topics are), with reply templates for each.
//
// Placeholders (a string value equal to one of these; "$$..." is the literal "$..."):
//   $event $data $topic $seq $id $ts $ts_ms   a publication (outbound); in a reply, $id is a
//                                             fresh id and $ts/$ts_ms the time of the reply
//   $ref $result $code $message $kind $topic  a reply: the request's id, a handler's result,
//                                             an error, the inbound kind, the topic (subscribed)
//   $in.<dotted.path>                         a field of the inbound frame (replies)
//   $param.<name> $sid                        a path parameter, the connection's id (replies)
// Which ones a template may use depends on what it is (template_use); any other "$..." string
// is an error at compile time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "skyrelay/core/errors.hpp"
#include "skyrelay/proto/json_protocol.hpp"

namespace skyrelay::proto {

enum class slot_kind : std::uint8_t {
  event, data, topic, seq, id, ts, ts_ms,   // a publication
  ref, result, code, message, kind,         // a reply
  in, param, sid,                           // the inbound frame, the path, the connection
};

// What a template is for: the placeholders it may use.
enum class template_use : std::uint8_t {
  outbound,  // $event $data $topic $seq $id $ts $ts_ms
  reply,     // pong, subscribed, unsubscribed, response, error, welcome: all but $event/$data/$seq
  stream,    // an SSE endpoint's first event or heartbeat: $topic $ts $ts_ms $id $param $sid
};

struct template_slot {
  slot_kind kind{slot_kind::data};
  std::string arg;  // $in's dotted path, $param's name
};

// A compiled JSON template. Immutable once compiled; render from any thread.
class json_template {
 public:
  // Compiles the JSON text `text` (any JSON value). The error's text when it is not JSON,
  // nests deeper than max_json_depth or uses a placeholder `use` does not allow.
  static std::variant<json_template, std::string> compile(std::string_view text,
                                                          template_use use);

  // The rendered JSON text: the literals, and for each slot whatever `value(slot, out)`
  // appends to `out` (one JSON value).
  template <class Fn>
  std::string render(Fn&& value) const {
    std::string out;
    out.reserve(size_hint_);
    out += literals_[0];
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      value(slots_[i], out);
      out += literals_[i + 1];
    }
    return out;
  }
  const std::vector<template_slot>& slots() const noexcept { return slots_; }

 private:
  std::vector<std::string> literals_{std::string()};  // slots_.size() + 1 chunks
  std::vector<template_slot> slots_;
  std::size_t size_hint_{0};
  friend struct template_builder;
};

// What one inbound frame of an envelope is.
struct envelope_message {
  client_message msg;                 // type, kind (as msg.event), data, id, topics
  std::vector<std::string> captured;  // JSON text of each envelope::in_paths() field ("null")
};

// A reply's values besides the inbound ones (each JSON text, or empty when not known).
struct reply_values {
  std::string_view ref;      // the request's id
  std::string_view result;   // a handler's result
  std::string_view code;     // an error's code (plain text)
  std::string_view message;  // an error's message (plain text)
  std::string_view kind;     // the inbound kind (plain text)
  std::string_view topic;    // a subscribed/unsubscribed reply's topic (plain text)
  std::string_view ts;       // ISO-8601 (plain text)
  std::int64_t ts_ms{0};
  std::string_view fresh_id;  // $id (plain text)
  std::string_view sid;
  const std::vector<std::pair<std::string, std::string>>* params{nullptr};
  const std::vector<std::string>* captured{nullptr};  // by index of in_paths()
};

class envelope {
 public:
  // Compiles the spec (JSON text, the form docs/protocol.md gives; Python's Envelope makes
  // it). The error's text when anything in it does not fit.
  static std::variant<std::shared_ptr<const envelope>, std::string> compile(std::string_view spec);

  // The publication's payload in the envelope (JSON text, without WebSocket framing). `data`
  // is JSON text (empty: null); `topic` empty is null; `ts` ISO-8601.
  std::string encode(std::string_view event, std::string_view data, std::string_view topic,
                     std::uint64_t seq, std::uint64_t id, std::string_view ts) const;

  // One inbound text frame, or the error it gets (its ref: the frame's id when it was read).
  std::variant<envelope_message, decode_error> decode(std::string_view text) const;

  // Replies; null when the envelope has no template for it (nothing is sent).
  std::optional<std::string> pong(const reply_values& v) const { return reply(pong_, v); }
  std::optional<std::string> subscribed(const reply_values& v) const {
    return reply(subscribed_, v);
  }
  std::optional<std::string> unsubscribed(const reply_values& v) const {
    return reply(unsubscribed_, v);
  }
  std::optional<std::string> response(const reply_values& v) const { return reply(response_, v); }
  std::optional<std::string> error(const reply_values& v) const { return reply(error_, v); }
  std::optional<std::string> welcome(const reply_values& v) const { return reply(welcome_, v); }

  // The inbound fields the reply templates name ($in.<path>), in the order of
  // envelope_message::captured.
  const std::vector<std::string>& in_paths() const noexcept { return in_paths_; }
  // A request's token for the application (server::respond hands it back): the id and the
  // captured fields as one JSON array. `from_token` reads it back (false: not one).
  static std::string request_token(const envelope_message& m);
  static bool from_token(std::string_view token, std::string& ref,
                         std::vector<std::string>& captured);

 private:
  std::optional<std::string> reply(const std::optional<json_template>& t,
                                   const reply_values& v) const;

  json_template outbound_;
  std::string kind_path_{"type"};
  std::optional<std::string> data_path_;  // null: the whole frame
  std::string id_path_;                   // empty: no request ids
  std::optional<std::vector<std::string>> request_kinds_;  // null: any kind with an id
  std::vector<std::string> subscribe_kinds_, unsubscribe_kinds_, ping_kinds_;
  std::vector<std::string> topic_paths_;
  std::optional<json_template> pong_, subscribed_, unsubscribed_, response_, error_, welcome_;
  std::vector<std::string> in_paths_;
  friend struct envelope_builder;
};

// Renders a stream template ($topic $ts $ts_ms $id $param.<name> $sid) with `v`.
std::string render_stream(const json_template& t, const reply_values& v);

// Milliseconds since the epoch of an ISO-8601 UTC time as utc_now_iso8601 writes it
// ("2026-11-22T11:33:03.123Z"); 0 when it is not one.
std::int64_t iso8601_ms(std::string_view ts) noexcept;

}  // namespace skyrelay::proto
