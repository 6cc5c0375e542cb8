#include "skyrelay/proto/envelope.hpp"

#include <algorithm>
#include <array>
#include <charconv>

#include <nlohmann/json.hpp>

namespace skyrelay::proto {

namespace {

using ordered = nlohmann::ordered_json;
using json = nlohmann::json;

struct placeholder {
  std::string_view name;
  slot_kind kind;
};
constexpr std::array<placeholder, 13> placeholders{{
    {"$event", slot_kind::event}, {"$data", slot_kind::data}, {"$topic", slot_kind::topic},
    {"$seq", slot_kind::seq}, {"$id", slot_kind::id}, {"$ts", slot_kind::ts},
    {"$ts_ms", slot_kind::ts_ms}, {"$ref", slot_kind::ref}, {"$result", slot_kind::result},
    {"$code", slot_kind::code}, {"$message", slot_kind::message}, {"$kind", slot_kind::kind},
    {"$sid", slot_kind::sid},
}};

bool allowed(slot_kind k, template_use use) {
  switch (use) {
    case template_use::outbound:
      return k == slot_kind::event || k == slot_kind::data || k == slot_kind::topic ||
             k == slot_kind::seq || k == slot_kind::id || k == slot_kind::ts ||
             k == slot_kind::ts_ms;
    case template_use::reply:
      return k != slot_kind::event && k != slot_kind::data && k != slot_kind::seq;
    case template_use::stream:
      return k == slot_kind::topic || k == slot_kind::ts || k == slot_kind::ts_ms ||
             k == slot_kind::id || k == slot_kind::param || k == slot_kind::sid;
  }
  return false;
}

// The value at a dotted path of an object ("data.topic"), or null.
const json* at_path(const json& obj, std::string_view path) {
  const json* cur = &obj;
  while (true) {
    if (!cur->is_object()) return nullptr;
    const auto dot = path.find('.');
    auto it = cur->find(std::string(path.substr(0, dot)));
    if (it == cur->end()) return nullptr;
    cur = &*it;
    if (dot == std::string_view::npos) return cur;
    path.remove_prefix(dot + 1);
  }
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

void append_string_or_null(std::string& out, std::string_view s) {
  if (s.empty()) out += "null";
  else append_json_string(out, s);
}

void append_raw_or_null(std::string& out, std::string_view s) {
  out += s.empty() ? std::string_view("null") : s;
}

// The slots replies and stream templates share: $topic $ts $ts_ms $id $param.<name> $sid.
void append_common(const template_slot& s, const reply_values& v, std::string& out) {
  switch (s.kind) {
    case slot_kind::topic: append_string_or_null(out, v.topic); break;
    case slot_kind::ts: append_string_or_null(out, v.ts); break;
    case slot_kind::ts_ms: out += std::to_string(v.ts_ms); break;
    case slot_kind::id: append_string_or_null(out, v.fresh_id); break;
    case slot_kind::sid: append_string_or_null(out, v.sid); break;
    case slot_kind::param: {
      if (v.params)
        for (const auto& [name, value] : *v.params)
          if (name == s.arg) return append_json_string(out, value);
      out += "null";
      break;
    }
    default: out += "null"; break;
  }
}

decode_error envelope_error(error_code code, std::string message, std::string ref = {}) {
  return decode_error{code, std::move(message), std::move(ref)};
}

}  // namespace

// Walks a template value into literal chunks and slots.
struct template_builder {
  json_template t;
  template_use use;
  std::string error;
  std::size_t depth{0};

  void lit(std::string_view s) { t.literals_.back() += s; }
  void slot(template_slot s) {
    t.slots_.push_back(std::move(s));
    t.literals_.emplace_back();
  }
  bool string_value(const std::string& s) {
    if (s.empty() || s[0] != '$') {
      lit(ordered(s).dump());
      return true;
    }
    if (s.starts_with("$$")) {  // the escape for a literal "$..."
      lit(ordered(s.substr(1)).dump());
      return true;
    }
    template_slot slot_of;
    bool known = false;
    for (const auto& p : placeholders)
      if (s == p.name) slot_of.kind = p.kind, known = true;
    for (auto [prefix, kind] : {std::pair{std::string_view("$in."), slot_kind::in},
                                std::pair{std::string_view("$param."), slot_kind::param}})
      if (s.starts_with(prefix) && s.size() > prefix.size())
        slot_of = {kind, s.substr(prefix.size())}, known = true;
    if (!known || !allowed(slot_of.kind, use)) {
      error = "placeholder \"" + s + "\" is not one this template may use";
      return false;
    }
    slot(std::move(slot_of));
    return true;
  }
  bool walk(const ordered& v) {
    if (++depth > max_json_depth) {
      error = "the template nests too deep";
      return false;
    }
    bool ok = true;
    if (v.is_object() || v.is_array()) {
      lit(v.is_object() ? "{" : "[");
      bool first = true;
      for (auto it = v.begin(); ok && it != v.end(); ++it) {
        if (!first) lit(",");
        first = false;
        if (v.is_object()) {
          std::string key;
          append_json_string(key, it.key());
          lit(key);
          lit(":");
        }
        ok = walk(it.value());
      }
      lit(v.is_object() ? "}" : "]");
    } else if (v.is_string()) {
      ok = string_value(v.get_ref<const std::string&>());
    } else {
      lit(v.dump());
    }
    --depth;
    return ok;
  }
  static std::variant<json_template, std::string> build(const ordered& v, template_use use) {
    template_builder b{json_template{}, use, {}, 0};
    if (!b.walk(v)) return std::move(b.error);
    for (const auto& l : b.t.literals_) b.t.size_hint_ += l.size();
    b.t.size_hint_ += 32 * b.t.slots_.size();
    return std::move(b.t);
  }
};

std::variant<json_template, std::string> json_template::compile(std::string_view text,
                                                                template_use use) {
  if (!json_depth_within(text, max_json_depth)) return std::string("the template nests too deep");
  ordered v = ordered::parse(text, nullptr, false);
  if (v.is_discarded()) return std::string("the template is not valid JSON");
  return template_builder::build(v, use);
}

// Reads the spec's fields into an envelope.
struct envelope_builder {
  envelope e;
  std::string error;

  bool kinds(const ordered& spec, const char* key, std::vector<std::string>& out) {
    auto it = spec.find(key);
    if (it == spec.end() || it->is_null()) return true;
    auto add = [&](const ordered& k) {
      if (!k.is_string() || k.get_ref<const std::string&>().empty()) return false;
      out.push_back(k.get<std::string>());
      return true;
    };
    bool ok = it->is_string() ? add(*it) : it->is_array();
    if (it->is_array())
      for (const auto& k : *it) ok = ok && add(k);
    if (!ok) error = std::string("\"") + key + "\" must be a non-empty string or a list of them";
    return ok;
  }
  bool path(const ordered& spec, const char* key, std::string& out, bool required) {
    auto it = spec.find(key);
    if (it == spec.end() || it->is_null()) {
      if (required) error = std::string("\"") + key + "\" is required";
      return !required;
    }
    if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
      error = std::string("\"") + key + "\" must be a non-empty dotted path";
      return false;
    }
    out = it->get<std::string>();
    return true;
  }
  bool reply(const ordered& spec, const char* key, std::optional<json_template>& out) {
    auto it = spec.find(key);
    if (it == spec.end() || it->is_null()) return true;
    auto t = template_builder::build(*it, template_use::reply);
    if (auto* err = std::get_if<std::string>(&t)) {
      error = std::string("\"") + key + "\": " + *err;
      return false;
    }
    for (const auto& s : std::get<json_template>(t).slots())
      if (s.kind == slot_kind::in && !contains(e.in_paths_, s.arg)) e.in_paths_.push_back(s.arg);
    out = std::get<json_template>(std::move(t));
    return true;
  }
  bool build(const ordered& spec) {
    if (!spec.is_object()) return error = "the envelope spec must be a JSON object", false;
    auto out = spec.find("outbound");
    if (out == spec.end()) return error = "\"outbound\" is required", false;
    auto t = template_builder::build(*out, template_use::outbound);
    if (auto* err = std::get_if<std::string>(&t)) return error = "\"outbound\": " + *err, false;
    e.outbound_ = std::get<json_template>(std::move(t));
    std::string data;
    if (!path(spec, "kind", e.kind_path_, true) || !path(spec, "data", data, false) ||
        !path(spec, "id", e.id_path_, false))
      return false;
    if (!data.empty()) e.data_path_ = data;
    if (auto it = spec.find("requests"); it != spec.end() && !it->is_null()) {
      e.request_kinds_.emplace();
      if (!kinds(spec, "requests", *e.request_kinds_)) return false;
    }
    if (!kinds(spec, "subscribe", e.subscribe_kinds_) ||
        !kinds(spec, "unsubscribe", e.unsubscribe_kinds_) || !kinds(spec, "ping", e.ping_kinds_) ||
        !kinds(spec, "topic", e.topic_paths_))
      return false;
    if ((!e.subscribe_kinds_.empty() || !e.unsubscribe_kinds_.empty()) && e.topic_paths_.empty())
      return error = "subscribe and unsubscribe kinds need \"topic\" paths", false;
    return reply(spec, "pong", e.pong_) && reply(spec, "subscribed", e.subscribed_) &&
           reply(spec, "unsubscribed", e.unsubscribed_) &&
           reply(spec, "response", e.response_) && reply(spec, "error", e.error_) &&
           reply(spec, "welcome", e.welcome_);
  }
};

std::variant<std::shared_ptr<const envelope>, std::string> envelope::compile(
    std::string_view spec) {
  if (!json_depth_within(spec, max_json_depth)) return std::string("the spec nests too deep");
  ordered v = ordered::parse(spec, nullptr, false);
  if (v.is_discarded()) return std::string("the envelope spec is not valid JSON");
  envelope_builder b;
  if (!b.build(v)) return std::move(b.error);
  return std::make_shared<const envelope>(std::move(b.e));
}

std::string envelope::encode(std::string_view event, std::string_view data,
                             std::string_view topic, std::uint64_t seq, std::uint64_t id,
                             std::string_view ts) const {
  return outbound_.render([&](const template_slot& s, std::string& out) {
    switch (s.kind) {
      case slot_kind::event: append_json_string(out, event); break;
      case slot_kind::data: append_raw_or_null(out, data); break;
      case slot_kind::topic: append_string_or_null(out, topic); break;
      case slot_kind::seq: out += std::to_string(seq); break;
      case slot_kind::id: out += '"' + std::to_string(id) + '"'; break;
      case slot_kind::ts: append_json_string(out, ts); break;
      case slot_kind::ts_ms: out += std::to_string(iso8601_ms(ts)); break;
      default: out += "null"; break;  // not allowed outbound (compile refuses it)
    }
  });
}

std::variant<envelope_message, decode_error> envelope::decode(std::string_view text) const {
  json obj = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (obj.is_discarded()) return envelope_error(error_code::bad_json, "the message is not valid JSON");
  if (!obj.is_object()) return envelope_error(error_code::bad_message, "the message must be a JSON object");
  envelope_message out;
  client_message& m = out.msg;
  if (!id_path_.empty()) {
    if (const json* id = at_path(obj, id_path_); id && !id->is_null()) {
      if (!id->is_string() && !id->is_number_integer())
        return envelope_error(error_code::bad_message, "\"" + id_path_ + "\" must be a string or an integer");
      m.id = id->dump();
    }
  }
  if (!json_depth_within(text, max_json_depth))
    return envelope_error(error_code::bad_message, "the message nests deeper than 128 levels", m.id);
  const json* kind = at_path(obj, kind_path_);
  if (!kind || !kind->is_string() || kind->get_ref<const std::string&>().empty())
    return envelope_error(error_code::unknown_type, "\"" + kind_path_ + "\" is required and must be a string",
                m.id);
  m.event = kind->get<std::string>();
  for (const auto& p : in_paths_) {
    const json* v = at_path(obj, p);
    out.captured.push_back(v ? v->dump() : "null");
  }
  if (contains(ping_kinds_, m.event)) {
    m.type = client_type::ping;
    return out;
  }
  const bool sub = contains(subscribe_kinds_, m.event);
  if (sub || contains(unsubscribe_kinds_, m.event)) {
    m.type = sub ? client_type::subscribe : client_type::unsubscribe;
    for (const auto& p : topic_paths_) {
      const json* v = at_path(obj, p);
      if (!v) continue;
      auto add = [&](const json& t) {
        if (!t.is_string() || t.get_ref<const std::string&>().empty() ||
            t.get_ref<const std::string&>().size() > max_topic_length)
          return false;
        if (!contains(m.topics, t.get_ref<const std::string&>())) m.topics.push_back(t.get<std::string>());
        return true;
      };
      bool ok = v->is_string() ? add(*v) : v->is_array();
      if (v->is_array())
        for (const auto& t : *v) ok = ok && add(t);
      if (!ok)
        return envelope_error(error_code::bad_message,
                    "\"" + p + "\" must be a topic (1 to 256 bytes) or a list of them", m.id);
    }
    if (m.topics.empty())
      return envelope_error(error_code::bad_message, "\"" + m.event + "\" names no topic", m.id);
    if (m.topics.size() > max_topics_per_message)
      return envelope_error(error_code::bad_message, "at most 64 topics per message", m.id);
    return out;
  }
  const json* data = data_path_ ? at_path(obj, *data_path_) : &obj;
  m.data = data ? data->dump() : "null";
  const bool request =
      !m.id.empty() && (!request_kinds_ || contains(*request_kinds_, m.event));
  m.type = request ? client_type::request : client_type::event;
  return out;
}

std::optional<std::string> envelope::reply(const std::optional<json_template>& t,
                                           const reply_values& v) const {
  if (!t) return std::nullopt;
  return t->render([&](const template_slot& s, std::string& out) {
    switch (s.kind) {
      case slot_kind::ref: append_raw_or_null(out, v.ref); break;
      case slot_kind::result: append_raw_or_null(out, v.result); break;
      case slot_kind::code: append_string_or_null(out, v.code); break;
      case slot_kind::message: append_string_or_null(out, v.message); break;
      case slot_kind::kind: append_string_or_null(out, v.kind); break;
      case slot_kind::in: {
        auto it = std::find(in_paths_.begin(), in_paths_.end(), s.arg);
        const auto i = static_cast<std::size_t>(it - in_paths_.begin());
        if (v.captured && i < v.captured->size()) out += (*v.captured)[i];
        else out += "null";
        break;
      }
      default: append_common(s, v, out); break;
    }
  });
}

std::string render_stream(const json_template& t, const reply_values& v) {
  return t.render([&](const template_slot& s, std::string& out) { append_common(s, v, out); });
}

std::string envelope::request_token(const envelope_message& m) {
  std::string out = "[";
  append_raw_or_null(out, m.msg.id);
  for (const auto& c : m.captured) out += ',' + c;
  out += ']';
  return out;
}

bool envelope::from_token(std::string_view token, std::string& ref,
                          std::vector<std::string>& captured) {
  json v = json::parse(token, nullptr, false);
  if (v.is_discarded() || !v.is_array() || v.empty()) return false;
  ref = v[0].is_null() ? std::string() : v[0].dump();
  captured.clear();
  for (std::size_t i = 1; i < v.size(); ++i) captured.push_back(v[i].dump());
  return true;
}

std::int64_t iso8601_ms(std::string_view ts) noexcept {
  // YYYY-MM-DDTHH:MM:SS[.mmm]Z
  if (ts.size() < 20 || ts[4] != '-' || ts[7] != '-' || ts[10] != 'T' || ts[13] != ':' ||
      ts[16] != ':')
    return 0;
  auto num = [&](std::size_t at, std::size_t n, int& out) {
    auto r = std::from_chars(ts.data() + at, ts.data() + at + n, out);
    return r.ec == std::errc() && r.ptr == ts.data() + at + n;
  };
  int y, mo, d, h, mi, sec, ms = 0;
  if (!num(0, 4, y) || !num(5, 2, mo) || !num(8, 2, d) || !num(11, 2, h) || !num(14, 2, mi) ||
      !num(17, 2, sec))
    return 0;
  if (ts.size() >= 24 && ts[19] == '.' && !num(20, 3, ms)) return 0;
  // Days from the civil date (Howard Hinnant's algorithm).
  y -= mo <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * static_cast<unsigned>(mo + (mo > 2 ? -3 : 9)) + 2) / 5 +
                       static_cast<unsigned>(d) - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const std::int64_t days = static_cast<std::int64_t>(era) * 146097 + doe - 719468;
  return ((days * 24 + h) * 60 + mi) * 60'000LL + sec * 1000LL + ms;
}

}  // namespace skyrelay::proto
