#include "skyrelay/net/endpoint_table.hpp"

#include <algorithm>
#include <stdexcept>

#include "skyrelay/net/static_files.hpp"
#include "skyrelay/proto/json_protocol.hpp"

namespace skyrelay {

namespace {

[[noreturn]] void refuse(const endpoint_config& cfg, const std::string& why) {
  throw std::invalid_argument("endpoint \"" + cfg.path + "\": " + why);
}

// The `{name}`s of a template, in order.
std::vector<std::string> names_in(std::string_view tmpl) {
  std::vector<std::string> out;
  for (auto open = tmpl.find('{'); open != std::string_view::npos; open = tmpl.find('{', open)) {
    auto close = tmpl.find('}', open);
    if (close == std::string_view::npos) break;
    out.emplace_back(tmpl.substr(open + 1, close - open - 1));
    open = close;
  }
  return out;
}

std::vector<endpoint::segment> split_path(const endpoint_config& cfg) {
  std::string_view path = cfg.path;
  if (path.size() < 2 || path[0] != '/' || path.back() == '/')
    refuse(cfg, "a path starts with '/' and does not end with one");
  std::vector<endpoint::segment> out;
  for (path.remove_prefix(1); !path.empty();) {
    auto slash = path.find('/');
    std::string_view seg = path.substr(0, slash);
    if (seg.empty()) refuse(cfg, "empty path segment");
    const bool param = seg.front() == '{' && seg.back() == '}' && seg.size() > 2;
    if (!param && (seg.find_first_of("{}%?#") != std::string_view::npos))
      refuse(cfg, "a parameter is a whole segment, {name}");
    std::string text(param ? seg.substr(1, seg.size() - 2) : seg);
    if (param && std::any_of(out.begin(), out.end(),
                             [&](const auto& s) { return s.param && s.text == text; }))
      refuse(cfg, "parameter {" + text + "} appears twice");
    out.push_back({std::move(text), param});
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

std::optional<proto::json_template> stream_template(const endpoint_config& cfg,
                                                    const std::string& text, const char* what) {
  if (text.empty()) return std::nullopt;
  auto t = proto::json_template::compile(text, proto::template_use::stream);
  if (auto* err = std::get_if<std::string>(&t)) refuse(cfg, std::string(what) + ": " + *err);
  return std::get<proto::json_template>(std::move(t));
}

}  // namespace

std::string fill_template(std::string_view tmpl, const path_params& params) {
  std::string out;
  while (!tmpl.empty()) {
    auto open = tmpl.find('{');
    auto close = open == std::string_view::npos ? open : tmpl.find('}', open);
    if (close == std::string_view::npos) {
      out += tmpl;
      break;
    }
    out += tmpl.substr(0, open);
    const auto name = tmpl.substr(open + 1, close - open - 1);
    for (const auto& [k, v] : params)
      if (k == name) out += v;
    tmpl.remove_prefix(close + 1);
  }
  return out;
}

endpoint_table::endpoint_table(const std::vector<endpoint_config>& endpoints) {
  for (const auto& cfg : endpoints) {
    endpoint e;
    e.cfg = cfg;
    e.segments = split_path(cfg);
    for (const auto& t : cfg.topics) {
      if (t.empty()) refuse(cfg, "an empty topic template");
      for (const auto& name : names_in(t))
        if (std::none_of(e.segments.begin(), e.segments.end(),
                         [&](const auto& s) { return s.param && s.text == name; }))
          refuse(cfg, "topic \"" + t + "\" names {" + name + "}, which the path does not have");
    }
    if (!cfg.envelope.empty()) {
      if (cfg.sse) refuse(cfg, "an SSE endpoint takes no envelope");
      auto env = proto::envelope::compile(cfg.envelope);
      if (auto* err = std::get_if<std::string>(&env)) refuse(cfg, "envelope: " + *err);
      e.env = std::get<std::shared_ptr<const proto::envelope>>(std::move(env));
    }
    e.welcome_data = stream_template(cfg, cfg.welcome_data, "welcome data");
    e.heartbeat_data = stream_template(cfg, cfg.heartbeat_data, "heartbeat data");
    entries_.push_back(std::move(e));
  }
}

std::optional<endpoint_match> endpoint_table::match(std::string_view path) const {
  for (const auto& e : entries_) {
    std::string_view rest = path;
    endpoint_match m;
    bool ok = true;
    for (const auto& seg : e.segments) {
      if (rest.empty() || rest[0] != '/') {
        ok = false;
        break;
      }
      rest.remove_prefix(1);
      const auto slash = rest.find('/');
      const auto raw = rest.substr(0, slash);
      rest.remove_prefix(raw.size());
      if (!seg.param) {
        ok = raw == seg.text;
      } else if (raw.empty()) {
        ok = false;
      } else if (!m.error) {
        auto value = url_decode(raw);
        if (!value || value->empty() || value->size() > proto::max_topic_length)
          m.error = "invalid path parameter";
        else
          m.params.emplace_back(seg.text, std::move(*value));
      }
      if (!ok) break;
    }
    if (!ok || !rest.empty()) continue;
    m.ep = &e;
    if (!m.error)
      for (const auto& t : e.cfg.topics) m.topics.push_back(fill_template(t, m.params));
    return m;
  }
  return std::nullopt;
}

}  // namespace skyrelay
