#include "skyrelay/broker/sio_manager_message.hpp"

#include <nlohmann/json.hpp>

#include <memory>
#include <vector>

#include "skyrelay/proto/engineio.hpp"
#include "skyrelay/proto/json_protocol.hpp"

namespace skyrelay::redis {

namespace {
using json = nlohmann::json;

// Thrown inside the parser only, for a field of the wrong shape; becomes `error`.
struct bad_field {
  std::string what;
};

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::strict); }

// A string field, or `fallback` when it is absent or null.
std::string text_field(const json& m, const char* name, const char* fallback) {
  auto it = m.find(name);
  if (it == m.end() || it->is_null()) {
    if (fallback) return fallback;
    throw bad_field{std::string("\"") + name + "\" is missing"};
  }
  if (!it->is_string()) throw bad_field{std::string("\"") + name + "\" is not a string"};
  return it->get<std::string>();
}

std::string namespace_field(const json& m) {
  std::string nsp = text_field(m, "namespace", "/");
  if (nsp.empty() || nsp.front() != '/') throw bad_field{"\"namespace\" does not start with /"};
  return nsp;
}

// null: none; a string: one; an array of strings: those.
std::vector<std::string> names_field(const json& m, const char* name) {
  std::vector<std::string> out;
  auto it = m.find(name);
  if (it == m.end() || it->is_null()) return out;
  if (it->is_string()) {
    out.push_back(it->get<std::string>());
    return out;
  }
  if (!it->is_array()) throw bad_field{std::string("\"") + name + "\" is not a string or list"};
  for (const auto& v : *it) {
    if (!v.is_string()) throw bad_field{std::string("\"") + name + "\" holds a non-string"};
    out.push_back(v.get<std::string>());
  }
  return out;
}

bool is_placeholder(const json& v) {
  auto p = v.find("_placeholder");
  return p != v.end() && p->is_boolean() && p->get<bool>() && v.contains("num");
}

// Checks every placeholder in `v` and replaces it (in the copy the caller passed) by its
// attachment's base64 text, the form the one-value `data` carries binary in.
void inline_binary(json& v, const std::vector<std::string>& base64) {
  if (v.is_object() && is_placeholder(v)) {
    const json& num = v["num"];
    if (!num.is_number_unsigned() || num.get<std::uint64_t>() >= base64.size())
      throw bad_field{"a binary placeholder names no attachment"};
    v = base64[num.get<std::size_t>()];
    return;
  }
  if (v.is_object() || v.is_array())
    for (auto& child : v) inline_binary(child, base64);
}

void read_emit(const json& m, manager_message& out) {
  publication& p = out.pub;
  p.event = text_field(m, "event", nullptr);
  p.nsp = namespace_field(m);
  auto data = m.find("data");
  if (data == m.end() || !data->is_array()) throw bad_field{"\"data\" is not a list"};
  json args = *data;
  std::vector<std::string> base64;
  auto binary = m.find("binary");
  const bool has_binary = binary != m.end() && binary->is_boolean() && binary->get<bool>();
  if (has_binary) {
    // [[the arguments, with placeholders], base64 of each attachment...]
    if (args.empty() || !args[0].is_array()) throw bad_field{"binary \"data\" is malformed"};
    auto parts = std::make_shared<std::vector<std::string>>();
    for (std::size_t i = 1; i < args.size(); ++i) {
      if (!args[i].is_string()) throw bad_field{"a binary attachment is not a string"};
      auto bytes = eio::base64_decode(args[i].get<std::string>());
      if (!bytes) throw bad_field{"a binary attachment is not base64"};
      base64.push_back(args[i].get<std::string>());
      parts->push_back(std::move(*bytes));
    }
    args = json(args[0]);
    p.binary = std::move(parts);
  }
  json inlined = args;
  inline_binary(inlined, base64);  // also checks that every placeholder names an attachment
  // As python-socketio's receiving side does: one argument is the data, [null] (emit with
  // data=None) and [] are no argument at all.
  const bool none = args.empty() || (args.size() == 1 && args[0].is_null());
  if (none) {
    p.data = "null";
    p.args = std::string();
  } else if (args.size() == 1 && !has_binary) {
    p.data = dump(args[0]);
  } else {
    std::string joined;
    for (const auto& a : args) {
      if (!joined.empty()) joined += ',';
      joined += dump(a);
    }
    p.args = std::move(joined);
    p.data = dump(args.size() == 1 ? inlined[0] : inlined);
  }
  p.to = names_field(m, "room");
  if (p.to.empty() && m.contains("room") && m["room"].is_array())
    throw bad_field{"\"room\" is an empty list"};  // to nobody in python-socketio, never "all"
  p.skip = names_field(m, "skip_sid");
  auto cb = m.find("callback");
  out.wants_ack = cb != m.end() && !cb->is_null();
}
}  // namespace

std::optional<manager_message> parse_manager_message(std::string_view text, std::string& error) {
  json m = json::parse(text, nullptr, false);
  if (m.is_discarded()) {
    error = "not JSON";
    return std::nullopt;
  }
  if (!proto::json_depth_within(text, proto::max_json_depth)) {
    error = "nested too deep";
    return std::nullopt;
  }
  if (!m.is_object()) {
    error = "not a JSON object";
    return std::nullopt;
  }
  manager_message out;
  try {
    const std::string method = text_field(m, "method", nullptr);
    if (method == "emit") {
      out.what = manager_message::kind::emit;
      read_emit(m, out);
    } else if (method == "enter_room" || method == "leave_room") {
      out.what = method == "enter_room" ? manager_message::kind::enter_room
                                        : manager_message::kind::leave_room;
      out.sid = text_field(m, "sid", nullptr);
      out.room = {namespace_field(m), text_field(m, "room", nullptr)};
    } else if (method == "close_room") {
      out.what = manager_message::kind::close_room;
      out.room = {namespace_field(m), text_field(m, "room", nullptr)};
    } else if (method == "disconnect") {
      out.what = manager_message::kind::disconnect;
      out.sid = text_field(m, "sid", nullptr);
      out.room.nsp = namespace_field(m);
    }
  } catch (const bad_field& e) {
    error = e.what;
    return std::nullopt;
  } catch (const json::exception& e) {
    error = e.what();
    return std::nullopt;
  }
  return out;
}

}  // namespace skyrelay::redis
