#include "skyrelay/net/static_files.hpp"

#include <filesystem>

namespace skyrelay {

namespace fs = std::filesystem;

std::optional<std::string> url_decode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0') return std::nullopt;
    out.push_back(c);
  }
  return out;
}

bool hidden_path(std::string_view path) {
  for (std::size_t at = 0; at < path.size();) {
    const auto slash = path.find('/', at);
    if (path[at] == '.') return true;  // "." and ".." included
    if (slash == std::string_view::npos) break;
    at = slash + 1;
  }
  return false;
}

std::optional<std::string> resolve_static(const std::string& root, std::string_view target) {
  auto decoded = url_decode(target);
  if (!decoded || decoded->empty() || (*decoded)[0] != '/') return std::nullopt;
  // Dotfiles and dot-folders (.env, .git/, ..) are never served: checked on the decoded path
  // before normalisation could remove a segment, and again on the file it resolves to.
  if (hidden_path(*decoded)) return std::nullopt;
  fs::path rel = fs::path(decoded->substr(1)).lexically_normal();
  std::error_code ec;
  fs::path base = fs::canonical(root, ec);
  if (ec) return std::nullopt;
  fs::path full = base / rel;
  if (fs::is_directory(full, ec)) full /= "index.html";
  fs::path real = fs::canonical(full, ec);
  if (ec || !fs::is_regular_file(real, ec)) return std::nullopt;
  // Symlinks must not lead out of the root either.
  auto [b, r] = std::mismatch(base.begin(), base.end(), real.begin(), real.end());
  if (b != base.end()) return std::nullopt;
  for (; r != real.end(); ++r)  // nor may they lead to a hidden file inside it
    if (r->native().starts_with('.')) return std::nullopt;
  return real.string();
}

std::string_view mime_type(std::string_view path) {
  auto dot = path.rfind('.');
  std::string_view ext = dot == std::string_view::npos ? "" : path.substr(dot + 1);
  if (ext == "html" || ext == "htm") return "text/html; charset=utf-8";
  if (ext == "js" || ext == "mjs") return "text/javascript; charset=utf-8";
  if (ext == "css") return "text/css; charset=utf-8";
  if (ext == "json") return "application/json";
  if (ext == "svg") return "image/svg+xml";
  if (ext == "png") return "image/png";
  if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
  if (ext == "ico") return "image/x-icon";
  if (ext == "txt" || ext == "ts") return "text/plain; charset=utf-8";
  if (ext == "wasm") return "application/wasm";
  return "application/octet-stream";
}

}  // namespace skyrelay
