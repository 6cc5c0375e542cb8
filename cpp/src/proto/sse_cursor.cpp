#include "skyrelay/proto/sse_cursor.hpp"

namespace skyrelay::proto {

namespace {
// A decimal of 1 to 19 digits (so it fits 64 bits), or nothing.
std::optional<std::uint64_t> number(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}
}  // namespace

std::string format_sse_cursor(std::string_view prefix, const std::vector<stream_point>& points) {
  std::string out(prefix);
  out.reserve(prefix.size() + points.size() * 8);
  for (const auto& p : points) {
    out += '~';
    out.append(std::string_view(p.epoch).substr(prefix.size() + 1));
    out += '.';
    out += std::to_string(p.pos);
  }
  return out;
}

sse_cursor_read parse_sse_cursor(std::string_view id) {
  sse_cursor_read out;
  const auto first = id.find('~');
  if (first == std::string_view::npos) {
    const auto dash = id.rfind('-');
    const bool old = dash != std::string_view::npos && dash > 0 && number(id.substr(dash + 1));
    out.error = old ? "epoch_changed" : "bad_id";
    return out;
  }
  const std::string_view prefix = id.substr(0, first);
  if (prefix.empty() || prefix.find('.') != std::string_view::npos ||
      id.size() > max_sse_cursor_length) {
    out.error = "bad_id";
    return out;
  }
  std::vector<stream_point> points;
  for (std::string_view rest = id.substr(first + 1);;) {
    const auto tilde = rest.find('~');
    const std::string_view part = rest.substr(0, tilde);
    const auto dot = part.find('.');
    auto n = dot == std::string_view::npos ? std::nullopt : number(part.substr(0, dot));
    auto pos = dot == std::string_view::npos ? std::nullopt : number(part.substr(dot + 1));
    if (!n || !pos) {
      out.error = "bad_id";
      return out;
    }
    points.push_back({std::string(prefix) + "." + std::to_string(*n), *pos});
    if (tilde == std::string_view::npos) break;
    rest.remove_prefix(tilde + 1);
  }
  out.points = std::move(points);
  return out;
}

}  // namespace skyrelay::proto
