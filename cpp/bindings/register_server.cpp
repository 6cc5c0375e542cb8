// Bindings for the server, the hub operations and the JSON validator.
#include <nlohmann/json.hpp>
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <optional>
#include <tuple>

#include <boost/system/system_error.hpp>

#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/core/errors.hpp"
#include "skyrelay/net/server.hpp"
#include "skyrelay/proto/json_protocol.hpp"
#include "skyrelay/proto/utf8.hpp"

namespace py = pybind11;

namespace skyrelay::bindings {

namespace {

using ms = std::chrono::milliseconds;

// Calls a Python hook from a dispatcher thread: takes the GIL, and reports (never propagates)
// an exception, since there is no Python caller to hand it to.
template <class... Args>
void call_hook(const py::object& fn, Args&&... args) {
  py::gil_scoped_acquire gil;
  try {
    fn(std::forward<Args>(args)...);
  } catch (py::error_already_set& e) {
    e.discard_as_unraisable("skyrelay hook");
  }
}

// Python callables must be released with the GIL held, whatever thread drops the last copy.
struct gil_object {
  py::object obj;
  explicit gil_object(py::object o) : obj(std::move(o)) {}
  ~gil_object() {
    py::gil_scoped_acquire gil;
    obj = py::object();
  }
};

// The claims of a connection's token as Python sees them: the payload's JSON text, or None.
py::object claims_of(const auth::identity_ptr& id) {
  if (!id) return py::none();
  return py::str(id->claims_json);
}

// Role requirements from the options' "access" dict (Server._access_options()): lists of
// (namespace, roles), (namespace, room pattern, roles) and (namespace, event, roles). Raises
// ValueError for an empty name or role list.
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

// The server's JWT settings from the options' "jwt" dict (skyrelay.JWTAuth._options()).
// Raises ValueError for a key that does not fit its algorithms.
std::shared_ptr<const auth::auth_config> jwt_config(const py::dict& o) {
  auth::jwt_policy policy;
  policy.issuers = o["issuers"].cast<std::vector<std::string>>();
  policy.audiences = o["audiences"].cast<std::vector<std::string>>();
  policy.leeway_s = o["leeway_s"].cast<long>();
  auto cfg = std::make_shared<auth::auth_config>(auth::auth_config{auth::jwt_verifier(policy)});
  cfg->kind_claim = o["kind_claim"].cast<std::string>();
  cfg->connect_kind = o["connect_kind"].cast<std::string>();
  cfg->publish_kind = o["publish_kind"].cast<std::string>();
  cfg->required = o["required"].cast<bool>();
  cfg->require_kind = o["require_kind"].cast<bool>();
  for (auto item : o["keys"].cast<py::list>()) {
    auto [type, id, material, algorithms] =
        item.cast<std::tuple<std::string, std::string, std::string, std::vector<std::string>>>();
    auto key = type == "hmac" ? auth::jwt_key::hmac(id, material, algorithms)
                              : auth::jwt_key::public_pem(id, material, algorithms);
    if (auto* error = std::get_if<std::string>(&key))
      throw py::value_error("JWT key \"" + id + "\": " + *error);
    cfg->verifier.add_key(std::get<auth::jwt_key>(std::move(key)));
  }
  return cfg;
}

class py_server {
 public:
  py_server(const py::dict& options, py::object on_connect, py::object on_message,
            py::object on_disconnect, py::object on_sio_connect, py::object on_sio_event,
            py::object on_sio_ack, py::object on_http) {
    server_config cfg;
    auto get = [&](const char* key, auto& field) {
      if (options.contains(key)) field = options[key].cast<std::decay_t<decltype(field)>>();
    };
    auto get_ms = [&](const char* key, ms& field) {
      if (options.contains(key)) field = ms(options[key].cast<long long>());
    };
    get("host", cfg.host);
    get("port", cfg.port);
    get("io_threads", cfg.io_threads);
    get("static_dir", cfg.static_dir);
    get("client_dir", cfg.client_dir);
    get("tls_cert_file", cfg.tls_cert_file);
    get("tls_key_file", cfg.tls_key_file);
    get("publish_token", cfg.publish_token);
    get("max_connections", cfg.max_connections);
    get("max_connections_per_ip", cfg.max_connections_per_ip);
    get("max_rooms_per_connection", cfg.max_rooms_per_connection);
    get("limit_loopback", cfg.limit_loopback);
    if (options.contains("new_connections_per_ip")) {
      auto pair = options["new_connections_per_ip"].cast<std::pair<double, double>>();
      cfg.new_connections_per_ip = rate_spec{pair.first, pair.second};
    }
    if (options.contains("new_sessions_per_ip")) {
      auto pair = options["new_sessions_per_ip"].cast<std::pair<double, double>>();
      cfg.new_sessions_per_ip = rate_spec{pair.first, pair.second};
    }
    get("max_attachments", cfg.max_attachments);
    get("max_attachment_bytes", cfg.max_attachment_bytes);
    if (options.contains("inbound_rate")) cfg.inbound_limit.rate = options["inbound_rate"].cast<double>();
    if (options.contains("inbound_burst")) cfg.inbound_limit.burst = options["inbound_burst"].cast<double>();
    if (options.contains("event_limits"))
      for (auto [event, spec] : options["event_limits"].cast<py::dict>()) {
        auto pair = spec.cast<std::pair<double, double>>();
        cfg.event_limits[event.cast<std::string>()] = rate_spec{pair.first, pair.second};
      }
    get("max_message_size", cfg.max_message_size);
    get("max_header_size", cfg.max_header_size);
    get("max_body_size", cfg.max_body_size);
    get_ms("handshake_timeout_ms", cfg.handshake_timeout);
    get_ms("idle_timeout_ms", cfg.idle_timeout);
    get_ms("heartbeat_interval_ms", cfg.heartbeat_interval);
    get_ms("heartbeat_timeout_ms", cfg.heartbeat_timeout);
    get_ms("drain_timeout_ms", cfg.drain_timeout);
    get_ms("write_timeout_ms", cfg.write_timeout);
    get("outbox_max_bytes", cfg.outbox_max_bytes);
    get("outbox_max_frames", cfg.outbox_max_frames);
    get("dispatch_queue_max", cfg.dispatch_queue_max);
    get("socketio_path", cfg.socketio_path);
    get_ms("eio_ping_interval_ms", cfg.eio_ping_interval);
    get_ms("eio_ping_timeout_ms", cfg.eio_ping_timeout);
    get_ms("sio_connect_timeout_ms", cfg.sio_connect_timeout);
    get("sio_namespaces", cfg.sio_namespaces);
    get("cors_allowed_origins", cfg.cors_allowed_origins);
    get("cors_credentials", cfg.cors_credentials);
    get("eio_cookie", cfg.eio_cookie);
    get("engineio_echo_path", cfg.engineio_echo_path);
    get_ms("sio_recovery_window_ms", cfg.sio_recovery_window);
    get("history_max_events", cfg.history_max_events);
    get_ms("sse_keepalive_ms", cfg.sse_keepalive);
    get_ms("sse_retry_ms", cfg.sse_retry);
    get_ms("history_max_age_ms", cfg.history_max_age);
    if (options.contains("jwt") && !options["jwt"].is_none())
      cfg.jwt = jwt_config(options["jwt"].cast<py::dict>());
    if (options.contains("access") && !options["access"].is_none())
      cfg.access = access_config(options["access"].cast<py::dict>());
    get("roles_from_connect", cfg.roles_from_connect);
    // A list of patterns (Server._options()["client_topics"]); None: no topic open.
    if (options.contains("client_topics") && !options["client_topics"].is_none())
      cfg.client_topics = std::make_shared<const auth::client_topic_policy>(
          options["client_topics"].cast<std::vector<std::string>>());
    get("json_protocol", cfg.json_protocol);
    get("sse", cfg.sse);
    get("socketio", cfg.socketio);

    app_hooks hooks;
    if (!on_connect.is_none()) {
      auto fn = std::make_shared<gil_object>(std::move(on_connect));
      hooks.on_connect = [fn](const connect_info& info) {
        py::gil_scoped_acquire gil;
        py::list headers;
        for (const auto& [k, v] : info.headers) headers.append(py::make_tuple(k, v));
        call_hook(fn->obj, info.sid, info.path, info.query, info.remote, headers,
                  claims_of(info.identity));
      };
    }
    if (!on_message.is_none()) {
      auto fn = std::make_shared<gil_object>(std::move(on_message));
      hooks.on_message = [fn](const std::string& sid, const std::string& event,
                              const std::string& data, const std::string& id) {
        call_hook(fn->obj, sid, event, data, id);
      };
    }
    if (!on_disconnect.is_none()) {
      auto fn = std::make_shared<gil_object>(std::move(on_disconnect));
      hooks.on_disconnect = [fn](const std::string& sid, disconnect_reason why,
                                 const auth::identity_ptr& id) {
        py::gil_scoped_acquire gil;
        call_hook(fn->obj, sid, std::string(to_string(why)), claims_of(id));
      };
    }
    if (!on_sio_connect.is_none()) {
      auto fn = std::make_shared<gil_object>(std::move(on_sio_connect));
      hooks.on_sio_connect = [fn](const sio_connect_info& info) {
        py::gil_scoped_acquire gil;
        py::list headers;
        for (const auto& [k, v] : info.headers) headers.append(py::make_tuple(k, v));
        call_hook(fn->obj, info.sid, info.nsp, info.auth, info.eio_sid, info.remote, info.query,
                  headers, claims_of(info.identity), info.recovered);
      };
    }
    auto as_bytes = [](const std::vector<std::string>& parts) {
      py::list out;
      for (const auto& p : parts) out.append(py::bytes(p));
      return out;
    };
    if (!on_sio_event.is_none()) {
      auto fn = std::make_shared<gil_object>(std::move(on_sio_event));
      hooks.on_sio_event = [fn, as_bytes](const std::string& sid, const std::string& event,
                                          const std::string& args, std::int64_t id,
                                          const std::vector<std::string>& attachments) {
        py::gil_scoped_acquire gil;
        call_hook(fn->obj, sid, event, args, id, as_bytes(attachments));
      };
    }
    if (!on_sio_ack.is_none()) {
      auto fn = std::make_shared<gil_object>(std::move(on_sio_ack));
      hooks.on_sio_ack = [fn, as_bytes](const std::string& sid, std::uint64_t id,
                                        const std::string& args,
                                        const std::vector<std::string>& attachments) {
        py::gil_scoped_acquire gil;
        call_hook(fn->obj, sid, id, args, as_bytes(attachments));
      };
    }
    if (!on_http.is_none()) {
      auto fn = std::make_shared<gil_object>(std::move(on_http));
      hooks.on_http = [fn](const http_request_info& r) {
        py::gil_scoped_acquire gil;
        py::list headers;
        for (const auto& [k, v] : r.headers) headers.append(py::make_tuple(k, v));
        call_hook(fn->obj, r.id, r.method, r.target, r.remote, headers, py::bytes(r.body));
      };
    }
    server_ = std::make_unique<server>(std::move(cfg), std::move(hooks));
  }

  ~py_server() {
    py::gil_scoped_release release;
    server_.reset();
  }

  server& get() { return *server_; }

 private:
  std::unique_ptr<server> server_;
};

std::optional<overflow_policy> to_policy(int p) {
  if (p < 0) return std::nullopt;
  return p == 1 ? overflow_policy::drop_oldest : overflow_policy::disconnect;
}

}  // namespace

void register_server(py::module_& m) {
  // Socket errors (an address in use, a bad host) surface as OSError with the errno set.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const boost::system::system_error& e) {
      py::object err = py::module_::import("builtins").attr("OSError")(e.code().value(),
                                                                      e.code().message());
      PyErr_SetObject(PyExc_OSError, err.ptr());
    }
  });

  m.def("is_valid_json", [](const std::string& s) {
    return proto::is_valid_utf8(s) && nlohmann::json::accept(s);
  }, "True when the bytes are one valid UTF-8 JSON text.");

  m.def("check_jwt", [](const py::dict& options) { jwt_config(options); },
        "Raises ValueError when a key of the JWT options does not fit its algorithms.");

  py::class_<py_server>(m, "Server")
      .def(py::init<const py::dict&, py::object, py::object, py::object, py::object, py::object,
                    py::object, py::object>(),
           py::arg("options"), py::arg("on_connect"), py::arg("on_message"),
           py::arg("on_disconnect"), py::arg("on_sio_connect") = py::none(),
           py::arg("on_sio_event") = py::none(), py::arg("on_sio_ack") = py::none(),
           py::arg("on_http") = py::none())
      .def("http_reply",
           [](py_server& s, std::uint64_t id, unsigned status,
              std::vector<std::pair<std::string, std::string>> headers, std::string body) {
             return s.get().http_reply(id, status, std::move(headers), std::move(body));
           },
           py::call_guard<py::gil_scoped_release>())
      .def("start", [](py_server& s) {
        py::gil_scoped_release release;
        s.get().start();
      })
      .def("stop", [](py_server& s) {
        py::gil_scoped_release release;
        s.get().stop();
      })
      .def_property_readonly("running", [](py_server& s) { return s.get().running(); })
      .def_property_readonly("port", [](py_server& s) { return s.get().port(); })
      .def("emit",
           [](py_server& s, std::string event, std::string data, std::vector<std::string> to,
              std::vector<std::string> skip, int policy, std::string nsp,
              std::optional<std::string> sio_args, std::vector<std::string> attachments,
              std::vector<std::string> to_conns) {
             publication p{std::move(event), std::move(data), std::move(to),
                           std::move(to_conns), std::move(skip), to_policy(policy),
                           std::move(nsp), std::move(sio_args), nullptr};
             if (!attachments.empty())
               p.attachments =
                   std::make_shared<const std::vector<std::string>>(std::move(attachments));
             py::gil_scoped_release release;
             return s.get().publish(p);
           },
           py::arg("event"), py::arg("data"), py::arg("to"), py::arg("skip"), py::arg("policy"),
           py::arg("nsp") = "/", py::arg("sio_args") = py::none(),
           py::arg("attachments") = std::vector<std::string>{},
           py::arg("to_conns") = std::vector<std::string>{})
      .def("sio_accept",
           [](py_server& s, const std::string& sid, std::optional<std::vector<std::string>> roles) {
             return s.get().sio_accept(sid, std::move(roles));
           },
           py::arg("sid"), py::arg("roles") = py::none(), py::call_guard<py::gil_scoped_release>())
      .def("sio_refuse",
           [](py_server& s, const std::string& sid, const std::string& message,
              const std::string& data) { return s.get().sio_refuse(sid, message, data); },
           py::call_guard<py::gil_scoped_release>())
      .def("sio_emit",
           [](py_server& s, const std::string& sid, const std::string& event,
              const std::string& args, std::vector<std::string> attachments, std::int64_t id) {
             return s.get().sio_emit(sid, event, args, std::move(attachments), id);
           },
           py::call_guard<py::gil_scoped_release>())
      .def("sio_ack",
           [](py_server& s, const std::string& sid, std::uint64_t id, const std::string& args,
              std::vector<std::string> attachments) {
             return s.get().sio_ack(sid, id, args, std::move(attachments));
           },
           py::call_guard<py::gil_scoped_release>())
      .def("sio_disconnect",
           [](py_server& s, const std::string& sid) { return s.get().sio_disconnect(sid); },
           py::call_guard<py::gil_scoped_release>())
      .def("accept",
           [](py_server& s, const std::string& sid, std::optional<std::vector<std::string>> roles) {
             return s.get().accept(sid, std::move(roles));
           },
           py::arg("sid"), py::arg("roles") = py::none(), py::call_guard<py::gil_scoped_release>())
      .def("refuse",
           [](py_server& s, const std::string& sid, unsigned status, std::string message) {
             return s.get().refuse(sid, status, std::move(message));
           },
           py::call_guard<py::gil_scoped_release>())
      .def("respond",
           [](py_server& s, const std::string& sid, const std::string& id, bool ok,
              const std::string& data_or_code, const std::string& message) {
             return s.get().respond(sid, id, ok, data_or_code, message);
           },
           py::call_guard<py::gil_scoped_release>())
      .def("send_error",
           [](py_server& s, const std::string& sid, const std::string& code,
              const std::string& message) {
             return s.get().send_error(sid, code, message);
           },
           py::call_guard<py::gil_scoped_release>())
      .def("disconnect",
           [](py_server& s, const std::string& sid, std::uint16_t code, std::string reason) {
             return s.get().disconnect(sid, code, std::move(reason));
           },
           py::call_guard<py::gil_scoped_release>())
      .def("join", [](py_server& s, const std::string& sid, std::string nsp, std::string room) {
             return s.get().get_hub().join(sid, channel{std::move(nsp), std::move(room)});
           }, py::call_guard<py::gil_scoped_release>())
      // A join the application makes for a connection, held to the role requirement of `room`
      // of namespace `nsp`: (joined, refusal message).
      .def("join_checked", [](py_server& s, const std::string& sid, const std::string& nsp,
                              const std::string& room) {
             server& srv = s.get();
             if (const auto& policy = srv.config().access; policy && policy->has_room_rules()) {
               if (auto refusal = policy->check_room(nsp, room, srv.roles_of(sid))) {
                 auto& m = srv.get_metrics();
                 m.add(m.local().forbidden_room);
                 return std::pair<bool, std::optional<std::string>>(false, std::move(refusal->message));
               }
             }
             return std::pair<bool, std::optional<std::string>>(
                 srv.get_hub().join(sid, channel{nsp, room}), std::nullopt);
           }, py::call_guard<py::gil_scoped_release>())
      .def("leave", [](py_server& s, const std::string& sid, std::string nsp, std::string room) {
             return s.get().get_hub().leave(sid, channel{std::move(nsp), std::move(room)});
           }, py::call_guard<py::gil_scoped_release>())
      // The rooms of namespace `nsp` that the connection is in, sorted.
      .def("rooms", [](py_server& s, const std::string& sid, const std::string& nsp) {
             std::vector<std::string> out;
             for (auto& c : s.get().get_hub().rooms_of(sid))
               if (c.nsp == nsp) out.push_back(std::move(c.room));
             return out;
           })
      .def("set_room_policy", [](py_server& s, std::string nsp, std::string room, int policy) {
             s.get().get_hub().set_room_policy(channel{std::move(nsp), std::move(room)},
                                               to_policy(policy));
           })
      .def("room_members", [](py_server& s, std::string nsp, std::string room) {
             return s.get().get_hub().room_members(channel{std::move(nsp), std::move(room)});
           })
      .def("room_size", [](py_server& s, std::string nsp, std::string room) {
             return s.get().get_hub().room_size(channel{std::move(nsp), std::move(room)});
           })
      .def("claims", [](py_server& s, const std::string& sid) {
             auth::identity_ptr id;
             {
               py::gil_scoped_release release;
               id = s.get().identity_of(sid);
             }
             return claims_of(id);
           })
      .def("has_connection", [](py_server& s, const std::string& sid) {
             return s.get().get_hub().find(sid) != nullptr;
           })
      .def_property_readonly("connection_count",
                             [](py_server& s) { return s.get().get_hub().connection_count(); })
      .def_property_readonly("room_count",
                             [](py_server& s) { return s.get().get_hub().room_count(); })
      .def("health_json", [](py_server& s) { return s.get().health_json(); })
      .def("metrics_text", [](py_server& s) { return s.get().metrics_text(); });
}

}  // namespace skyrelay::bindings
