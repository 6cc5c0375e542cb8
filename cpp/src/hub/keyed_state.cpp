#include "skyrelay/hub/keyed_state.hpp"

#include <array>

namespace skyrelay {

namespace {
using json = nlohmann::json;

constexpr std::array<std::string_view, 5> reserved{"changes", "full_update", "removed", "index",
                                                   "count"};

void append_string(std::string& out, const std::string& s) { out += json(s).dump(); }
}  // namespace

std::string check_state_options(const state_options& o) {
  if (o.event.empty()) return "a state needs an event name";
  if (o.key_name.empty() || o.fields_name.empty()) return "key and fields names must not be empty";
  if (o.key_name == o.fields_name) return "key and fields names must differ";
  for (auto r : reserved)
    if (o.key_name == r || o.fields_name == r)
      return "\"" + std::string(r) + "\" is a name the payload uses itself";
  if (o.max_keys == 0 || o.max_key_bytes == 0) return "max_keys and max_key_bytes must be > 0";
  return {};
}

void keyed_state::head(std::string& out, const std::string* key) const {
  out += '{';
  append_string(out, opts_.key_name);
  out += ':';
  if (key) append_string(out, *key);
  else out += "null";
  out += ',';
  append_string(out, opts_.fields_name);
  out += ':';
}

state_result keyed_state::update(const std::string& key, std::string_view fields_json,
                                 std::string& delta, bool& added) {
  json fields = json::parse(fields_json, nullptr, false);
  if (fields.is_discarded() || !fields.is_object()) return state_result::bad_fields;
  auto it = keys_.find(key);
  added = it == keys_.end();
  if (added && keys_.size() >= opts_.max_keys) return state_result::too_many_keys;
  static const entry empty;
  const entry& was = added ? empty : it->second;
  json changed = json::object();
  json names = json::array();
  for (auto& [name, value] : fields.items()) {
    auto old = was.fields.find(name);
    if (old != was.fields.end() && *old == value) continue;
    names.push_back(name);
    changed[name] = std::move(value);
  }
  if (names.empty() && !added) return state_result::unchanged;
  json merged = was.fields;
  for (auto& [name, value] : changed.items()) merged[name] = value;
  const std::string text = merged.dump();
  if (text.size() > opts_.max_key_bytes) return state_result::too_large;
  entry& e = added ? keys_[key] : it->second;
  e.fields = std::move(merged);
  e.bytes = text.size();
  delta.clear();
  head(delta, &key);
  delta += changed.dump();
  delta += ",\"changes\":";
  delta += names.dump();
  delta += ",\"full_update\":false}";
  return state_result::changed;
}

state_result keyed_state::remove(const std::string& key, std::string& delta) {
  if (keys_.erase(key) == 0) return state_result::unchanged;
  delta.clear();
  head(delta, &key);
  delta += "{},\"changes\":[],\"full_update\":false,\"removed\":true}";
  return state_result::changed;
}

std::vector<std::string> keyed_state::full() const {
  std::vector<std::string> out;
  const std::string count = std::to_string(keys_.size());
  if (keys_.empty()) {
    std::string p;
    head(p, nullptr);
    p += "{},\"changes\":[],\"full_update\":true,\"index\":0,\"count\":0}";
    out.push_back(std::move(p));
    return out;
  }
  out.reserve(keys_.size());
  std::size_t index = 0;
  for (const auto& [key, e] : keys_) {
    std::string p;
    p.reserve(e.bytes + key.size() + 96);
    head(p, &key);
    p += e.fields.dump();
    json names = json::array();
    for (const auto& [name, value] : e.fields.items()) names.push_back(name);
    p += ",\"changes\":";
    p += names.dump();
    p += ",\"full_update\":true,\"index\":" + std::to_string(index++) + ",\"count\":" + count + "}";
    out.push_back(std::move(p));
  }
  return out;
}

std::optional<std::string> keyed_state::get(const std::string& key) const {
  auto it = keys_.find(key);
  if (it == keys_.end()) return std::nullopt;
  return it->second.fields.dump();
}

std::string keyed_state::snapshot() const {
  json all = json::object();
  for (const auto& [key, e] : keys_) all[key] = e.fields;
  return all.dump();
}

}  // namespace skyrelay
