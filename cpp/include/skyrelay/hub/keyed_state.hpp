// A keyed state: the fields of each key of one room, and the delta and full-update payloads
// that keep members' copies equal to it (docs/api.md "Delta updates").
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace skyrelay {

// How a state's publications look, and its bounds. Every payload is a JSON object:
//   {<key_name>: key, <fields_name>: {...}, "changes": [names], "full_update": bool}
// plus "removed": true for a removed key, and "index"/"count" (the key's place among the
// keys) in a full update. `key_name` and `fields_name` must differ and be none of those.
struct state_options {
  std::string event;                  // the event name of its publications
  std::string key_name{"key"};
  std::string fields_name{"fields"};
  std::size_t max_keys{1000};         // keys held at once
  std::size_t max_key_bytes{16384};   // the JSON text of one key's fields
};

// The outcome of a change. The refusals leave the state as it was.
enum class state_result : std::uint8_t {
  changed,        // something changed: the delta payload was made
  unchanged,      // every value was equal already (or the key to remove was not there)
  too_many_keys,  // a new key past max_keys
  too_large,      // the key's fields past max_key_bytes
  bad_fields,     // not one JSON object
};

// Why the options cannot make a state, or empty when they can.
std::string check_state_options(const state_options& o);

// Not thread-safe: the hub guards each state with its channel's order lock, so that a change
// and its publication, and a member's join and its full update, are one step each.
class keyed_state {
 public:
  explicit keyed_state(state_options o) : opts_(std::move(o)) {}

  const state_options& options() const noexcept { return opts_; }
  std::size_t size() const noexcept { return keys_.size(); }

  // Merges `fields_json` (one JSON object) into `key`'s fields (a new key starts empty).
  // Values are compared as JSON (nlohmann::json equality: 1 and 1.0 are equal, object key
  // order does not matter). On `changed`, `delta` holds the payload: the fields whose value
  // changed, their names in "changes" (sorted), full_update false. A new key is a change
  // even with no fields. `added` is set when the key is new.
  state_result update(const std::string& key, std::string_view fields_json, std::string& delta,
                      bool& added);
  // Removes `key`; on `changed`, `delta` holds its removal (empty fields, "removed": true).
  state_result remove(const std::string& key, std::string& delta);

  // The full update: one payload per key, in key order, each with every field, full_update
  // true, its "index" and the "count" of keys; an empty state gives one payload with a null
  // key and count 0, so that a member learns that nothing is held.
  std::vector<std::string> full() const;
  // One key's fields as JSON text, or nothing when the key is not held.
  std::optional<std::string> get(const std::string& key) const;
  // Every key's fields: {"key": {...}, ...}.
  std::string snapshot() const;

 private:
  struct entry {
    nlohmann::json fields = nlohmann::json::object();
    std::size_t bytes{2};  // its JSON text's size
  };
  // The payload's head: {"<key_name>":<key>,"<fields_name>":
  void head(std::string& out, const std::string* key) const;

  state_options opts_;
  std::map<std::string, entry> keys_;  // ordered: full updates list keys in one order
};

}  // namespace skyrelay
