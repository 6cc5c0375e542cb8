// http_session's plain GET routes: /health (and its probes) and /metrics (their text comes from the server),
// the built-in browser client (/skyrelay.js, /skyrelay.d.ts) and the static directory; what
// none of them has goes to the application when there is one, else it is a 404.
#include "http_session_impl.hpp"
#include "skyrelay/net/static_files.hpp"

namespace skyrelay {

void http_session::serve_static(const request& req, std::string_view path) {
  const auto& cfg = ctx_.config();
  std::optional<std::string> file;
  // The browser client, built in: /skyrelay.js and its type declarations.
  const std::string_view js = cfg.client_js_path;
  if (!cfg.client_dir.empty() && !js.empty()) {
    if (path == js) file = resolve_static(cfg.client_dir, "/skyrelay.js");
    else if (js.ends_with(".js") && path.starts_with(js.substr(0, js.size() - 3)) &&
             path.substr(js.size() - 3) == ".d.ts")
      file = resolve_static(cfg.client_dir, "/skyrelay.d.ts");
  }
  if (!file && !cfg.static_dir.empty()) file = resolve_static(cfg.static_dir, path);
  if (!file) {
    if (ctx_.hooks().on_http) return to_application(req);
    return send_error(http::status::not_found, "not_found", "no such resource",
                      req.keep_alive());
  }
  http::file_body::value_type body;
  beast::error_code ec;
  body.open(file->c_str(), beast::file_mode::scan, ec);
  if (ec)
    return send_error(http::status::not_found, "not_found", "no such resource",
                      req.keep_alive());
  const auto size = body.size();
  if (req.method() == http::verb::head) {
    http::response<http::empty_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, mime_type(*file));
    res.content_length(size);
    res.keep_alive(req.keep_alive());
    return write(std::move(res), req.keep_alive());
  }
  http::response<http::file_body> res{std::piecewise_construct, std::make_tuple(std::move(body)),
                                      std::make_tuple(http::status::ok, req.version())};
  res.set(http::field::content_type, mime_type(*file));
  res.set(http::field::cache_control, "no-cache");
  res.content_length(size);
  res.keep_alive(req.keep_alive());
  write(std::move(res), req.keep_alive());
}

void http_session::send_text(const request& req, std::string_view type, std::string body,
                             http::status status) {
  http::response<http::string_body> res{status, req.version()};
  res.set(http::field::content_type, type);
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(req.keep_alive());
  if (req.method() == http::verb::head) {
    res.content_length(body.size());
    return write(std::move(res), req.keep_alive());
  }
  res.body() = std::move(body);
  res.prepare_payload();
  write(std::move(res), req.keep_alive());
}

}  // namespace skyrelay
