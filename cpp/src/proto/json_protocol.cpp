#include "skyrelay/proto/json_protocol.hpp"

#include <nlohmann/json.hpp>

namespace skyrelay::proto {

using json = nlohmann::json;

namespace {

decode_error fail(error_code code, std::string message, std::string ref = {}) {
  return decode_error{code, std::move(message), std::move(ref)};
}

// Reads "topic" or "topics" into m; returns an error message or empty.
std::string read_topics(const json& obj, client_message& m) {
  auto check = [](const json& t) -> std::string {
    if (!t.is_string()) return "a topic must be a string";
    const auto& s = t.get_ref<const std::string&>();
    if (s.empty()) return "a topic must not be empty";
    if (s.size() > max_topic_length) return "a topic is longer than 256 bytes";
    return {};
  };
  if (auto it = obj.find("topics"); it != obj.end()) {
    if (!it->is_array() || it->empty()) return "\"topics\" must be a non-empty array of strings";
    if (it->size() > max_topics_per_message) return "at most 64 topics per message";
    for (const auto& t : *it) {
      if (auto e = check(t); !e.empty()) return e;
      m.topics.push_back(t.get<std::string>());
    }
    m.topics_as_list = true;
    return {};
  }
  auto it = obj.find("topic");
  if (it == obj.end()) return "\"topic\" or \"topics\" is required";
  if (auto e = check(*it); !e.empty()) return e;
  m.topics.push_back(it->get<std::string>());
  return {};
}

void append_id(std::string& out, std::string_view id) {
  if (id.empty()) return;
  out += ",\"id\":";
  out += id;
}

std::string topics_reply(std::string_view type, const client_message& m) {
  std::string out = "{\"type\":\"";
  out += type;
  out += '"';
  if (m.topics_as_list) {
    out += ",\"topics\":[";
    for (std::size_t i = 0; i < m.topics.size(); ++i) {
      if (i) out += ',';
      append_json_string(out, m.topics[i]);
    }
    out += ']';
  } else {
    out += ",\"topic\":";
    append_json_string(out, m.topics.front());
  }
  append_id(out, m.id);
  out += '}';
  return out;
}

}  // namespace

std::variant<client_message, decode_error> decode(std::string_view text) {
  json obj = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (obj.is_discarded()) return fail(error_code::bad_json, "the message is not valid JSON");
  if (!obj.is_object()) return fail(error_code::bad_message, "the message must be a JSON object");

  client_message m;
  if (auto it = obj.find("id"); it != obj.end()) {
    if (!it->is_string() && !it->is_number_integer())
      return fail(error_code::bad_message, "\"id\" must be a string or an integer");
    m.id = it->dump();
  }
  if (!json_depth_within(text, max_json_depth))
    return fail(error_code::bad_message, "the message nests deeper than 128 levels", m.id);
  auto type_it = obj.find("type");
  if (type_it == obj.end() || !type_it->is_string())
    return fail(error_code::unknown_type, "\"type\" is required and must be a string", m.id);
  const auto& type = type_it->get_ref<const std::string&>();

  if (type == "subscribe" || type == "unsubscribe") {
    m.type = type == "subscribe" ? client_type::subscribe : client_type::unsubscribe;
    if (auto e = read_topics(obj, m); !e.empty()) return fail(error_code::bad_message, e, m.id);
    if (auto it = obj.find("since"); it != obj.end() && m.type == client_type::subscribe) {
      if (!it->is_number_unsigned())
        return fail(error_code::bad_message, "\"since\" must be a non-negative integer", m.id);
      if (m.topics_as_list)
        return fail(error_code::bad_message,
                    "\"since\" resumes one topic: use \"topic\", not \"topics\"", m.id);
      auto ep = obj.find("epoch");
      if (ep == obj.end() || !ep->is_string() || ep->get_ref<const std::string&>().empty() ||
          ep->get_ref<const std::string&>().size() > max_topic_length)
        return fail(error_code::bad_message,
                    "\"since\" needs the \"epoch\" string from the topic's subscribed reply",
                    m.id);
      m.since = it->get<std::uint64_t>();
      m.epoch = ep->get<std::string>();
    }
    return m;
  }
  if (type == "ping") {
    m.type = client_type::ping;
    return m;
  }
  if (type == "event" || type == "request") {
    m.type = type == "event" ? client_type::event : client_type::request;
    auto ev = obj.find("event");
    if (ev == obj.end() || !ev->is_string() || ev->get_ref<const std::string&>().empty())
      return fail(error_code::bad_message, "\"event\" must be a non-empty string", m.id);
    m.event = ev->get<std::string>();
    if (m.type == client_type::request && m.id.empty())
      return fail(error_code::bad_message, "a request needs an \"id\"");
    if (auto d = obj.find("data"); d != obj.end()) m.data = d->dump();
    return m;
  }
  return fail(error_code::unknown_type, "unknown message type \"" + type + "\"", m.id);
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 0xF]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

bool json_depth_within(std::string_view text, std::size_t max_depth) noexcept {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

std::string welcome(std::string_view sid, std::int64_t heartbeat_ms) {
  std::string out = "{\"type\":\"welcome\",\"sid\":";
  append_json_string(out, sid);
  out += ",\"heartbeat_ms\":";
  out += std::to_string(heartbeat_ms);
  out += '}';
  return out;
}

std::string subscribed(const client_message& m, const std::vector<topic_state>& positions,
                       const resume_state* resume) {
  std::string out = topics_reply("subscribed", m);
  out.pop_back();  // the closing brace
  auto append_position = [&out](const topic_state& p) {
    out += "\"seq\":";
    out += std::to_string(p.seq);
    out += ",\"epoch\":";
    append_json_string(out, p.epoch);
  };
  if (m.topics_as_list) {
    out += ",\"positions\":{";
    for (std::size_t i = 0; i < positions.size() && i < m.topics.size(); ++i) {
      if (i) out += ',';
      append_json_string(out, m.topics[i]);
      out += ":{";
      append_position(positions[i]);
      out += '}';
    }
    out += '}';
  } else if (!positions.empty()) {
    out += ',';
    append_position(positions.front());
  }
  if (resume) {
    out += resume->recovered ? ",\"recovered\":true" : ",\"recovered\":false,\"reset\":";
    if (!resume->recovered) append_json_string(out, resume->reset);
  }
  out += '}';
  return out;
}
std::string unsubscribed(const client_message& m) { return topics_reply("unsubscribed", m); }

std::string pong(std::string_view ts, std::string_view id) {
  std::string out = "{\"type\":\"pong\",\"ts\":";
  append_json_string(out, ts);
  append_id(out, id);
  out += '}';
  return out;
}

std::string reset(std::string_view topic, std::string_view reason, std::uint64_t seq,
                  std::string_view epoch) {
  std::string out = "{\"type\":\"reset\"";
  if (!topic.empty()) {
    out += ",\"topic\":";
    append_json_string(out, topic);
  }
  out += ",\"reason\":";
  append_json_string(out, reason);
  if (!topic.empty()) {
    out += ",\"seq\":" + std::to_string(seq) + ",\"epoch\":";
    append_json_string(out, epoch);
  }
  out += '}';
  return out;
}

std::string event(std::string_view name, std::string_view topic, std::uint64_t seq,
                  std::string_view ts, std::string_view data) {
  std::string out;
  out.reserve(64 + name.size() + topic.size() + data.size());
  out += "{\"type\":\"event\",\"event\":";
  append_json_string(out, name);
  if (!topic.empty()) {
    out += ",\"topic\":";
    append_json_string(out, topic);
    out += ",\"seq\":";
    out += std::to_string(seq);
  }
  out += ",\"ts\":";
  append_json_string(out, ts);
  out += ",\"data\":";
  out += data;
  out += '}';
  return out;
}

std::string response_ok(std::string_view id, std::string_view data) {
  std::string out = "{\"type\":\"response\",\"id\":";
  out += id;
  out += ",\"ok\":true,\"data\":";
  out += data;
  out += '}';
  return out;
}

std::string response_error(std::string_view id, std::string_view code, std::string_view message) {
  std::string out = "{\"type\":\"response\",\"id\":";
  out += id;
  out += ",\"ok\":false,\"error\":{\"code\":";
  append_json_string(out, code);
  out += ",\"message\":";
  append_json_string(out, message);
  out += "}}";
  return out;
}

std::string error(std::string_view code, std::string_view message, std::string_view ref) {
  std::string out = "{\"type\":\"error\",\"code\":";
  append_json_string(out, code);
  out += ",\"message\":";
  append_json_string(out, message);
  out += ",\"ref\":";
  out += ref.empty() ? std::string_view("null") : ref;
  out += '}';
  return out;
}

}  // namespace skyrelay::proto
