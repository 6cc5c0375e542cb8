// Bindings for server_config: one typed class (skyrelay._core.ServerConfig) that Python fills
// attribute by attribute (skyrelay.Server.start), instead of a dict parsed key by key.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "errors.hpp"
#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/core/config.hpp"
#include "skyrelay/net/client_address.hpp"
#include "skyrelay/proto/envelope.hpp"

namespace py = pybind11;

namespace skyrelay::bindings {

std::shared_ptr<const auth::auth_config> jwt_config(const py::dict& o);
using key_tuple = std::tuple<std::string, std::string, std::string, std::vector<std::string>>;
std::variant<auth::jwt_key, std::string> make_key(const key_tuple& t);  // register_auth.cpp

namespace {

using ms = std::chrono::milliseconds;
using config_class = py::class_<server_config>;

// Role requirements from Server._access_options(): lists of (namespace, roles), (namespace,
// room pattern, roles) and (namespace, event, roles). Raises ValueError for an empty name or
// role list.
std::shared_ptr<const auth::access_policy> access_config(const py::dict& o) {
  using roles = std::vector<std::string>;
  auto policy = std::make_shared<auth::access_policy>();
  for (auto item : o["namespaces"].cast<py::list>()) {
    auto [nsp, r] = item.cast<std::pair<std::string, roles>>();
    policy->require_namespace(std::move(nsp), std::move(r));
  }
  for (auto item : o["rooms"].cast<py::list>()) {
    auto [nsp, pattern, r] = item.cast<std::tuple<std::string, std::string, roles>>();
    policy->require_room(std::move(nsp), std::move(pattern), std::move(r));
  }
  for (auto item : o["events"].cast<py::list>()) {
    auto [nsp, event, r] = item.cast<std::tuple<std::string, std::string, roles>>();
    policy->require_event(std::move(nsp), std::move(event), std::move(r));
  }
  if (policy->empty()) return nullptr;
  return policy;
}

// A duration field as an integer number of milliseconds, under `name` (which ends in _ms).
void def_ms(config_class& c, const char* name, ms server_config::*field) {
  c.def_property(
      name, [field](const server_config& cfg) { return (cfg.*field).count(); },
      [field](server_config& cfg, long long value) { cfg.*field = ms(value); });
}

// A rate_spec field as a (rate, burst) tuple.
void def_rate(config_class& c, const char* name, rate_spec server_config::*field) {
  c.def_property(
      name,
      [field](const server_config& cfg) {
        return std::make_pair((cfg.*field).rate, (cfg.*field).burst);
      },
      [field](server_config& cfg, std::pair<double, double> value) {
        cfg.*field = rate_spec{value.first, value.second};
      });
}

void def_plain_fields(config_class& c) {
  c.def_readwrite("host", &server_config::host)
      .def_readwrite("port", &server_config::port)
      .def_readwrite("io_threads", &server_config::io_threads)
      .def_readwrite("static_dir", &server_config::static_dir)
      .def_readwrite("client_dir", &server_config::client_dir)
      .def_readwrite("tls_cert_file", &server_config::tls_cert_file)
      .def_readwrite("tls_key_file", &server_config::tls_key_file)
      .def_readwrite("broker", &server_config::broker)
      .def_readwrite("redis_manager_channels", &server_config::redis_manager_channels)
      .def_readwrite("cluster_rooms_max", &server_config::cluster_rooms_max)
      .def_readwrite("reuse_port", &server_config::reuse_port)
      .def_readwrite("worker_index", &server_config::worker_index)
      .def_readwrite("worker_handoff_fds", &server_config::worker_handoff_fds)
      .def_readwrite("worker_inbox_fd", &server_config::worker_inbox_fd)
      .def_readwrite("publish_token", &server_config::publish_token)
      .def_readwrite("max_connections", &server_config::max_connections)
      .def_readwrite("max_connections_per_ip", &server_config::max_connections_per_ip)
      .def_readwrite("max_rooms_per_connection", &server_config::max_rooms_per_connection)
      .def_readwrite("limit_loopback", &server_config::limit_loopback)
      .def_readwrite("max_attachments", &server_config::max_attachments)
      .def_readwrite("max_attachment_bytes", &server_config::max_attachment_bytes)
      .def_readwrite("max_message_size", &server_config::max_message_size)
      .def_readwrite("max_header_size", &server_config::max_header_size)
      .def_readwrite("max_body_size", &server_config::max_body_size)
      .def_readwrite("outbox_max_bytes", &server_config::outbox_max_bytes)
      .def_readwrite("outbox_max_frames", &server_config::outbox_max_frames)
      .def_readwrite("dispatch_queue_max", &server_config::dispatch_queue_max)
      .def_readwrite("socketio_path", &server_config::socketio_path)
      .def_readwrite("sio_namespaces", &server_config::sio_namespaces)
      .def_readwrite("cors_allowed_origins", &server_config::cors_allowed_origins)
      .def_readwrite("cors_credentials", &server_config::cors_credentials)
      .def_readwrite("eio_cookie", &server_config::eio_cookie)
      .def_readwrite("eio_allow_upgrades", &server_config::eio_allow_upgrades)
      .def_readwrite("engineio_echo_path", &server_config::engineio_echo_path)
      .def_readwrite("history_max_events", &server_config::history_max_events)
      .def_readwrite("roles_from_connect", &server_config::roles_from_connect)
      .def_readwrite("json_protocol", &server_config::json_protocol)
      .def_readwrite("sse", &server_config::sse)
      .def_readwrite("socketio", &server_config::socketio)
      .def_readwrite("json_ws_path", &server_config::json_ws_path)
      .def_readwrite("sse_path", &server_config::sse_path)
      .def_readwrite("health_path", &server_config::health_path)
      .def_readwrite("metrics_path", &server_config::metrics_path)
      .def_readwrite("publish_path", &server_config::publish_path)
      .def_readwrite("client_js_path", &server_config::client_js_path)
      .def_readwrite("compress_json_ws", &server_config::compress_json_ws)
      .def_readwrite("compress_socketio", &server_config::compress_socketio)
      .def_readwrite("compression_threshold", &server_config::compression_threshold)
      .def_readwrite("version", &server_config::version)
      .def_readwrite("liveness_path", &server_config::liveness_path)
      .def_readwrite("readiness_path", &server_config::readiness_path)
      .def_readwrite("log_queue_max", &server_config::log_queue_max)
      .def_readwrite("io_uring", &server_config::io_uring)
      .def_readwrite("descriptor_tables", &server_config::descriptor_tables);
}

void def_durations(config_class& c) {
  def_ms(c, "handshake_timeout_ms", &server_config::handshake_timeout);
  def_ms(c, "idle_timeout_ms", &server_config::idle_timeout);
  def_ms(c, "heartbeat_interval_ms", &server_config::heartbeat_interval);
  def_ms(c, "heartbeat_timeout_ms", &server_config::heartbeat_timeout);
  def_ms(c, "drain_timeout_ms", &server_config::drain_timeout);
  def_ms(c, "write_timeout_ms", &server_config::write_timeout);
  def_ms(c, "eio_ping_interval_ms", &server_config::eio_ping_interval);
  def_ms(c, "eio_ping_timeout_ms", &server_config::eio_ping_timeout);
  def_ms(c, "sio_connect_timeout_ms", &server_config::sio_connect_timeout);
  def_ms(c, "sio_recovery_window_ms", &server_config::sio_recovery_window);
  def_ms(c, "sse_keepalive_ms", &server_config::sse_keepalive);
  def_ms(c, "sse_retry_ms", &server_config::sse_retry);
  def_ms(c, "history_max_age_ms", &server_config::history_max_age);
  def_ms(c, "cluster_state_ttl_ms", &server_config::cluster_state_ttl);
  def_ms(c, "io_stall_timeout_ms", &server_config::io_stall_timeout);
  def_ms(c, "dispatcher_stall_timeout_ms", &server_config::dispatcher_stall_timeout);
}

// The fields whose Python form is not the C++ one: rates, and the policies built from the
// options of JWTAuth, require_roles and client_topics (write-only: they hold C++ objects).
void def_converted_fields(config_class& c) {
  def_rate(c, "new_connections_per_ip", &server_config::new_connections_per_ip);
  def_rate(c, "new_sessions_per_ip", &server_config::new_sessions_per_ip);
  def_rate(c, "publish_rate", &server_config::publish_rate);
  c.def_property(
       "inbound_rate", [](const server_config& cfg) { return cfg.inbound_limit.rate; },
       [](server_config& cfg, double v) { cfg.inbound_limit.rate = v; })
      .def_property(
          "inbound_burst", [](const server_config& cfg) { return cfg.inbound_limit.burst; },
          [](server_config& cfg, double v) { cfg.inbound_limit.burst = v; })
      .def_property(
          "event_limits",
          [](const server_config& cfg) {
            py::dict out;
            for (const auto& [event, spec] : cfg.event_limits)
              out[py::str(event)] = py::make_tuple(spec.rate, spec.burst);
            return out;
          },
          [](server_config& cfg, const py::dict& limits) {
            cfg.event_limits.clear();
            for (auto [event, spec] : limits) {
              auto pair = spec.cast<std::pair<double, double>>();
              cfg.event_limits[event.cast<std::string>()] = rate_spec{pair.first, pair.second};
            }
          })
      .def_property(
          "jwt", [](const server_config& cfg) { return cfg.jwt != nullptr; },
          [](server_config& cfg, const py::object& o) {
            cfg.jwt = o.is_none() ? nullptr : jwt_config(o.cast<py::dict>());
          })
      .def_property(
          "access", [](const server_config& cfg) { return cfg.access != nullptr; },
          [](server_config& cfg, const py::object& o) {
            cfg.access = o.is_none() ? nullptr : access_config(o.cast<py::dict>());
          })
      .def_property(
          "client_topics", [](const server_config& cfg) { return cfg.client_topics != nullptr; },
          [](server_config& cfg, const py::object& o) {
            cfg.client_topics =
                o.is_none() ? nullptr
                            : std::make_shared<const auth::client_topic_policy>(
                                  o.cast<std::vector<std::string>>());
          });
}

// The application's endpoints from skyrelay.endpoints.Endpoint.config() dicts (write-only;
// reads back how many there are). The server compiles them and refuses one that does not fit.
void def_endpoints(config_class& c) {
  c.def_property(
      "endpoints", [](const server_config& cfg) { return cfg.endpoints.size(); },
      [](server_config& cfg, const py::list& list) {
        cfg.endpoints.clear();
        for (auto item : list) {
          auto o = item.cast<py::dict>();
          endpoint_config e;
          e.path = o["path"].cast<std::string>();
          e.sse = o["sse"].cast<bool>();
          e.topics = o["topics"].cast<std::vector<std::string>>();
          e.envelope = o["envelope"].cast<std::string>();
          e.welcome_event = o["welcome_event"].cast<std::string>();
          e.welcome_data = o["welcome_data"].cast<std::string>();
          e.heartbeat_event = o["heartbeat_event"].cast<std::string>();
          e.heartbeat_data = o["heartbeat_data"].cast<std::string>();
          e.heartbeat_interval = ms(o["heartbeat_interval_ms"].cast<long long>());
          e.compress = o["compress"].cast<bool>();
          cfg.endpoints.push_back(std::move(e));
        }
      });
}

// The trusted proxies from options.py: (specs, header) with header "x-forwarded-for" or
// "forwarded"; ValueError names a spec that does not parse. An empty list is none (null).
std::shared_ptr<const proxy_set> proxy_config(const std::vector<std::string>& specs,
                                              const std::string& header) {
  if (header != "x-forwarded-for" && header != "forwarded")
    raise_value_error("proxy_header is \"x-forwarded-for\" or \"forwarded\", not \"" + header +
                      "\"");
  auto r = proxy_set::parse(specs, header == "forwarded" ? proxy_header::forwarded
                                                          : proxy_header::x_forwarded_for);
  if (auto* error = std::get_if<std::string>(&r)) raise_value_error(*error);
  if (specs.empty()) return nullptr;
  return std::make_shared<const proxy_set>(std::get<proxy_set>(std::move(r)));
}

// trusted_proxies: written as (specs, header) or None; reads back how many networks are set
// ("*" is two: every IPv4 and every IPv6 address).
void def_proxies(config_class& c) {
  c.def_property(
      "trusted_proxies",
      [](const server_config& cfg) {
        return cfg.trusted_proxies ? cfg.trusted_proxies->size() : std::size_t{0};
      },
      [](server_config& cfg, const py::object& o) {
        if (o.is_none()) {
          cfg.trusted_proxies = nullptr;
          return;
        }
        auto [specs, header] = o.cast<std::pair<std::vector<std::string>, std::string>>();
        cfg.trusted_proxies = proxy_config(specs, header);
      });
}

}  // namespace

// The server's JWT settings from skyrelay.JWTAuth._options(). Raises ValueError for a key
// that does not fit its algorithms. With a key_set (a JWKS URL), the verifier reads that set,
// whose keys skyrelay/_jwks.py installs; the static keys are only checked here.
std::shared_ptr<const auth::auth_config> jwt_config(const py::dict& o) {
  auth::jwt_policy policy;
  policy.issuers = o["issuers"].cast<std::vector<std::string>>();
  policy.audiences = o["audiences"].cast<std::vector<std::string>>();
  policy.leeway_s = o["leeway_s"].cast<long>();
  std::shared_ptr<auth::jwt_key_set> key_set;
  if (o.contains("key_set") && !o["key_set"].is_none())
    key_set = o["key_set"].cast<std::shared_ptr<auth::jwt_key_set>>();
  auto cfg = std::make_shared<auth::auth_config>(
      auth::auth_config{auth::jwt_verifier(policy, key_set)});
  cfg->kind_claim = o["kind_claim"].cast<std::string>();
  cfg->connect_kind = o["connect_kind"].cast<std::string>();
  cfg->publish_kind = o["publish_kind"].cast<std::string>();
  cfg->required = o["required"].cast<bool>();
  cfg->require_kind = o["require_kind"].cast<bool>();
  for (auto item : o["keys"].cast<py::list>()) {
    auto t = item.cast<key_tuple>();
    auto key = make_key(t);
    if (auto* error = std::get_if<std::string>(&key))
      raise_value_error("JWT key \"" + std::get<1>(t) + "\": " + *error);
    if (!key_set) cfg->verifier.add_key(std::get<auth::jwt_key>(std::move(key)));
  }
  return cfg;
}

void register_config(py::module_& m) {
  config_class c(m, "ServerConfig",
                 "The C++ server_config, filled by skyrelay.Server from its keyword arguments. "
                 "Durations are integer milliseconds (the _ms names), rates (rate, burst). jwt, "
                 "access and client_topics take the options dicts (or None) and read back "
                 "whether they are set.");
  c.def(py::init<>());
  def_plain_fields(c);
  def_durations(c);
  def_converted_fields(c);
  def_endpoints(c);
  def_proxies(c);
  // Early checks for skyrelay.Envelope and SSE event templates: "" when it compiles, else why.
  m.def("check_envelope", [](const std::string& spec) {
    auto e = proto::envelope::compile(spec);
    auto* err = std::get_if<std::string>(&e);
    return err ? *err : std::string();
  });
  // Server(trusted_proxies=...) checked when the server is made: ValueError for a bad spec.
  m.def("check_trusted_proxies", [](const std::vector<std::string>& specs,
                                    const std::string& header) { proxy_config(specs, header); });
  m.def("check_stream_template", [](const std::string& text) {
    auto t = proto::json_template::compile(text, proto::template_use::stream);
    auto* err = std::get_if<std::string>(&t);
    return err ? *err : std::string();
  });
}

}  // namespace skyrelay::bindings
