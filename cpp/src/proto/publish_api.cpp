#include "skyrelay/proto/publish_api.hpp"

#include <nlohmann/json.hpp>

#include "skyrelay/proto/json_protocol.hpp"

namespace skyrelay::proto {

using json = nlohmann::json;

namespace {

publish_error bad(std::string message) { return {"bad_request", std::move(message)}; }

// A room name, sid or namespace list entry: a non-empty string of at most 256 bytes.
bool valid_name(const json& v) {
  return v.is_string() && !v.get_ref<const std::string&>().empty() &&
         v.get_ref<const std::string&>().size() <= max_topic_length;
}

// Reads one event object into `p`; returns an error message or empty.
std::string read_event(const json& e, publication& p) {
  if (!e.is_object()) return "must be an object";
  for (const auto& [key, value] : e.items())
    if (key != "event" && key != "data" && key != "to" && key != "skip" && key != "namespace" &&
        key != "policy" && key != "idempotency_key")
      return "has an unknown field \"" + key + "\"";
  auto ev = e.find("event");
  if (ev == e.end() || !ev->is_string() || ev->get_ref<const std::string&>().empty() ||
      ev->get_ref<const std::string&>().size() > max_topic_length)
    return ".event must be a non-empty string of at most 256 bytes";
  p.event = ev->get<std::string>();
  auto data = e.find("data");
  p.data = data == e.end() ? "null" : data->dump();
  auto names = [&](const char* field, std::vector<std::string>& out) -> std::string {
    auto it = e.find(field);
    if (it == e.end() || it->is_null()) return {};
    if (valid_name(*it)) {
      out.push_back(it->get<std::string>());
      return {};
    }
    if (!it->is_array() || it->size() > max_topics_per_message)
      return std::string(".") + field + " must be a name or a list of at most 64 names";
    for (const auto& n : *it) {
      if (!valid_name(n))
        return std::string(".") + field + " must hold non-empty strings of at most 256 bytes";
      out.push_back(n.get<std::string>());
    }
    return {};
  };
  if (auto err = names("to", p.to); !err.empty()) return err;
  if (auto err = names("skip", p.skip); !err.empty()) return err;
  if (auto it = e.find("namespace"); it != e.end()) {
    if (!valid_name(*it) || it->get_ref<const std::string&>()[0] != '/')
      return ".namespace must be a string starting with \"/\"";
    p.nsp = it->get<std::string>();
  }
  if (auto it = e.find("policy"); it != e.end() && !it->is_null()) {
    if (*it == "drop_oldest") p.policy = overflow_policy::drop_oldest;
    else if (*it == "disconnect") p.policy = overflow_policy::disconnect;
    else return ".policy must be \"drop_oldest\" or \"disconnect\"";
  }
  return {};
}

std::string read_key(const json& obj, std::string& key) {
  auto it = obj.find("idempotency_key");
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_string() || it->get_ref<const std::string&>().empty() ||
      it->get_ref<const std::string&>().size() > max_idempotency_key)
    return "idempotency_key must be a non-empty string of at most 200 bytes";
  if (!key.empty() && key != it->get_ref<const std::string&>())
    return "idempotency_key differs from the Idempotency-Key header";
  key = it->get<std::string>();
  return {};
}

}  // namespace

std::variant<publish_request, publish_error> decode_publish(std::string_view body,
                                                            std::string_view header_key) {
  json obj = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (obj.is_discarded()) return publish_error{"bad_json", "the body is not valid JSON"};
  if (!json_depth_within(body, max_json_depth))
    return bad("the body nests deeper than 128 levels");
  if (!obj.is_object()) return bad("the body must be a JSON object");
  publish_request req;
  if (header_key.size() > max_idempotency_key)
    return bad("the Idempotency-Key header is longer than 200 bytes");
  req.idempotency_key = std::string(header_key);
  if (auto err = read_key(obj, req.idempotency_key); !err.empty()) return bad(err);
  if (auto events = obj.find("events"); events != obj.end()) {
    for (const auto& [key, value] : obj.items())
      if (key != "events" && key != "idempotency_key")
        return bad("a batch has \"events\" and \"idempotency_key\" only, not \"" + key + "\"");
    if (!events->is_array() || events->empty() || events->size() > max_publish_batch)
      return bad("events must be a list of 1 to 1000 events");
    req.batch = true;
    req.events.resize(events->size());
    for (std::size_t i = 0; i < events->size(); ++i) {
      if ((*events)[i].is_object() && (*events)[i].contains("idempotency_key"))
        return bad("events[" + std::to_string(i) + "]: the batch has one idempotency_key");
      if (auto err = read_event((*events)[i], req.events[i]); !err.empty())
        return bad("events[" + std::to_string(i) + "]" + (err[0] == '.' ? "" : " ") + err);
    }
    return req;
  }
  req.events.resize(1);
  if (auto err = read_event(obj, req.events[0]); !err.empty())
    return bad(std::string(err[0] == '.' ? err.substr(1) : "the body " + err));
  return req;
}

std::string publish_fingerprint(const publish_request& req) {
  std::string out = req.batch ? "batch" : "one";
  auto field = [&out](std::string_view v) {
    out += std::to_string(v.size());
    out += ':';
    out += v;
  };
  auto names = [&](const std::vector<std::string>& list) {
    out += '[' + std::to_string(list.size());
    for (const auto& n : list) field(n);
  };
  for (const auto& p : req.events) {
    out += "|e";
    field(p.event);
    field(p.data);  // re-serialized by the decoder: keys sorted, no whitespace
    names(p.to);
    names(p.skip);
    field(p.nsp);
    out += !p.policy ? '-' : *p.policy == overflow_policy::drop_oldest ? 'o' : 'd';
  }
  return out;
}

std::string encode_published(const std::vector<publish_receipt_view>& receipts, bool batch,
                             bool duplicate) {
  auto one = [](std::string& out, const publish_receipt_view& r) {
    out += "{\"id\":";
    append_json_string(out, r.id);
    if (!r.topic.empty()) {
      out += ",\"topic\":";
      append_json_string(out, r.topic);
      out += ",\"seq\":" + std::to_string(r.seq);
      out += ",\"epoch\":";
      append_json_string(out, r.epoch);
    }
    out += ",\"delivered\":" + std::to_string(r.delivered) + "}";
  };
  std::string out = "{";
  if (batch) {
    out += "\"published\":[";
    for (std::size_t i = 0; i < receipts.size(); ++i) {
      if (i) out += ',';
      one(out, receipts[i]);
    }
    out += ']';
  } else {
    out += "\"published\":";
    one(out, receipts.front());
  }
  out += duplicate ? ",\"duplicate\":true}" : ",\"duplicate\":false}";
  return out;
}

}  // namespace skyrelay::proto
