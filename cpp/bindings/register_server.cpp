// Bindings for the server, the hub operations and the JSON validator.
#include <nlohmann/json.hpp>
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <optional>
#include <tuple>

#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/core/errors.hpp"
#include "skyrelay/hub/keyed_state.hpp"
#include "skyrelay/net/server.hpp"
#include "skyrelay/net/sio_server.hpp"
#include "skyrelay/proto/json_protocol.hpp"
#include "skyrelay/proto/utf8.hpp"
#include "py_json.hpp"

namespace py = pybind11;

namespace skyrelay::bindings {

// register_config.cpp: the JWT settings from skyrelay.JWTAuth._options(); ValueError for a
// key that does not fit its algorithms.
std::shared_ptr<const auth::auth_config> jwt_config(const py::dict& o);

namespace {

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

// Gives the calling thread a Python thread state that lives as long as the thread, then leaves
// the GIL released. Without one, every gil_scoped_acquire on the dispatcher thread made a new
// thread state and deleted it again (an allocation and a clear per batch). The state is left
// behind when the thread ends (a few hundred bytes per server started): deleting it then
// would need the GIL while the interpreter may be finalizing.
void keep_thread_state() {
  thread_local bool kept = false;
  if (kept) return;
  kept = true;
  PyGILState_Ensure();  // a new state, counted once: never dropped to zero by later scopes
  PyEval_SaveThread();
}

// The claims of a connection's token as Python sees them: the payload's JSON text, or None.
py::object claims_of(const auth::identity_ptr& id) {
  if (!id) return py::none();
  return py::str(id->claims_json);
}

class py_server {
 public:
  py_server(server_config cfg, py::object on_connect, py::object on_message,
            py::object on_disconnect, py::object on_sio_connect, py::object on_sio_event,
            py::object on_sio_ack, py::object on_http, py::object on_batch_end) {
    app_hooks hooks;
    if (!on_connect.is_none()) {
      auto fn = std::make_shared<gil_object>(std::move(on_connect));
      hooks.on_connect = [fn](const connect_info& info) {
        py::gil_scoped_acquire gil;
        py::list headers;
        for (const auto& [k, v] : info.headers) headers.append(py::make_tuple(k, v));
        call_hook(fn->obj, info.sid, info.path, info.query, info.remote, headers,
                  claims_of(info.identity), info.scheme);
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
                  headers, claims_of(info.identity), info.recovered, info.scheme);
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
        call_hook(fn->obj, r.id, r.method, r.target, r.remote, headers, py::bytes(r.body),
                  r.scheme);
      };
    }
    server_ = std::make_unique<server>(std::move(cfg), std::move(hooks));
    // One GIL acquisition per batch of dispatcher jobs (the hooks above then find it held),
    // and `on_batch_end()` after each batch: where the batch's async handlers are handed to
    // their event loop at once.
    std::shared_ptr<gil_object> end;
    if (!on_batch_end.is_none()) end = std::make_shared<gil_object>(std::move(on_batch_end));
    server_->get_dispatcher().set_batch_scope([end](const std::function<void()>& run_jobs) {
      keep_thread_state();
      py::gil_scoped_acquire gil;
      run_jobs();
      if (end) call_hook(end->obj);
    });
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

using server_class = py::class_<py_server>;

// Start, stop, and the answers to parked HTTP requests.
void def_lifecycle(server_class& cls) {
  cls.def("http_reply",
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
      .def_property_readonly("port", [](py_server& s) { return s.get().port(); });
}

// Publishing: every publication goes through server::publish (the broker).
void def_emit(server_class& cls) {
  cls.def("emit",
           [](py_server& s, std::string event, std::string data, std::vector<std::string> to,
              std::vector<std::string> skip, int policy, std::string nsp,
              std::optional<std::string> args, std::vector<std::string> binary,
              std::vector<std::string> to_conns) {
             publication p{std::move(event), std::move(data), std::move(args), nullptr,
                           std::move(to), std::move(to_conns), std::move(skip),
                           to_policy(policy), std::move(nsp)};
             if (!binary.empty())
               p.binary = std::make_shared<const std::vector<std::string>>(std::move(binary));
             py::gil_scoped_release release;
             return s.get().publish(p);
           },
           py::arg("event"), py::arg("data"), py::arg("to"), py::arg("skip"), py::arg("policy"),
           py::arg("nsp") = "/", py::arg("args") = py::none(),
           py::arg("binary") = std::vector<std::string>{},
           py::arg("to_conns") = std::vector<std::string>{});
}

// The Socket.IO server's control: accept or refuse a CONNECT, emit, ack, disconnect.
void def_socketio(server_class& cls) {
  cls.def("sio_accept",
           [](py_server& s, const std::string& sid, std::optional<std::vector<std::string>> roles) {
             return s.get().sio().accept(sid, std::move(roles));
           },
           py::arg("sid"), py::arg("roles") = py::none(), py::call_guard<py::gil_scoped_release>())
      .def("sio_refuse",
           [](py_server& s, const std::string& sid, const std::string& message,
              const std::string& data) { return s.get().sio().refuse(sid, message, data); },
           py::call_guard<py::gil_scoped_release>())
      .def("sio_emit",
           [](py_server& s, const std::string& sid, const std::string& event,
              const std::string& args, std::vector<std::string> attachments, std::int64_t id) {
             return s.get().sio().emit(sid, event, args, std::move(attachments), id);
           },
           py::call_guard<py::gil_scoped_release>())
      .def("sio_ack",
           [](py_server& s, const std::string& sid, std::uint64_t id, const std::string& args,
              std::vector<std::string> attachments) {
             return s.get().sio().ack(sid, id, args, std::move(attachments));
           },
           py::call_guard<py::gil_scoped_release>())
      // The ack of a handler's return value, encoded here when `values` (a list) is plain
      // (py_json.hpp): 1 sent, 0 not (the socket is gone), -1 not plain (encode in Python).
      .def("sio_ack_plain",
           [](py_server& s, const std::string& sid, std::uint64_t id, py::handle values) {
             std::string text;
             if (!append_plain_json(text, values)) return -1;
             py::gil_scoped_release release;
             return s.get().sio().ack(sid, id, text, {}) ? 1 : 0;
           })
      .def("sio_disconnect",
           [](py_server& s, const std::string& sid) { return s.get().sio().disconnect(sid); },
           py::call_guard<py::gil_scoped_release>());
}

// The JSON-protocol connections' control: accept, refuse, respond, errors, disconnect.
void def_connections(server_class& cls) {
  cls.def("accept",
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
      // A request's successful answer, encoded here when `value` is plain (py_json.hpp):
      // 1 sent, 0 not (the connection is gone), -1 not plain (encode in Python).
      .def("respond_plain",
           [](py_server& s, const std::string& sid, const std::string& id, py::handle value) {
             std::string text;
             if (!append_plain_json(text, value)) return -1;
             py::gil_scoped_release release;
             return s.get().respond(sid, id, true, text, "") ? 1 : 0;
           })
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
           py::call_guard<py::gil_scoped_release>());
}

// Room membership and sizes, by (namespace, room).
void def_rooms(server_class& cls) {
  cls.def("join", [](py_server& s, const std::string& sid, std::string nsp, std::string room) {
             return s.get().get_hub().join(sid, channel{std::move(nsp), std::move(room)});
           }, py::call_guard<py::gil_scoped_release>())
      // A join the application makes for a connection, held to the role requirement of `room`
      // of namespace `nsp` (server::join_checked): (joined, refusal message).
      .def("join_checked", [](py_server& s, const std::string& sid, std::string nsp,
                              std::string room) {
             auto r = s.get().join_checked(sid, channel{std::move(nsp), std::move(room)});
             return std::make_pair(r.joined, std::move(r.refusal));
           }, py::call_guard<py::gil_scoped_release>())
      .def("leave", [](py_server& s, const std::string& sid, std::string nsp, std::string room) {
             return s.get().leave(sid, channel{std::move(nsp), std::move(room)});
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
      // With a Redis broker, every node's members (one round trip, without the GIL; raises
      // BrokerUnavailable when Redis does not answer).
      .def("room_size", [](py_server& s, std::string nsp, std::string room) {
             return s.get().room_size(channel{std::move(nsp), std::move(room)});
           }, py::call_guard<py::gil_scoped_release>());
}

// Keyed states (docs/api.md "Delta updates"): the fields arrive as JSON text, and the diff,
// the delta and the full updates run in the hub without the GIL. A change answers
// (result, deliveries), result as keyed_state's state_result (0 changed, 1 unchanged,
// 2 too_many_keys, 3 too_large, 4 bad_fields); skyrelay/state.py raises for the refusals.
void def_state(server_class& cls) {
  cls.def("state_define", [](py_server& s, std::string nsp, std::string room, std::string event,
                             std::string key_name, std::string fields_name, std::size_t max_keys,
                             std::size_t max_key_bytes) {
             state_options o{std::move(event), std::move(key_name), std::move(fields_name),
                             max_keys, max_key_bytes};
             return s.get().get_hub().define_state(channel{std::move(nsp), std::move(room)}, o);
           }, py::call_guard<py::gil_scoped_release>())
      .def("state_update", [](py_server& s, std::string nsp, std::string room,
                              const std::string& event, const std::string& key,
                              const std::string& fields_json) {
             auto r = s.get().get_hub().update_state(channel{std::move(nsp), std::move(room)},
                                                      event, key, fields_json);
             return std::make_pair(static_cast<int>(r.result), r.delivered);
           }, py::call_guard<py::gil_scoped_release>())
      .def("state_remove", [](py_server& s, std::string nsp, std::string room,
                              const std::string& event, const std::string& key) {
             auto r = s.get().get_hub().remove_state_key(channel{std::move(nsp), std::move(room)},
                                                         event, key);
             return std::make_pair(static_cast<int>(r.result), r.delivered);
           }, py::call_guard<py::gil_scoped_release>())
      // A key's fields, or every key's when `key` is None, as JSON text (None: not held).
      .def("state_get", [](py_server& s, std::string nsp, std::string room,
                           const std::string& event, std::optional<std::string> key) {
             return s.get().get_hub().state_fields(channel{std::move(nsp), std::move(room)}, event,
                                                   key ? &*key : nullptr);
           }, py::call_guard<py::gil_scoped_release>())
      // The payloads queued, or None when `sid` is not a member of the room.
      .def("state_send_full", [](py_server& s, std::string nsp, std::string room,
                                 const std::string& event, const std::string& sid) {
             return s.get().get_hub().send_full_state(channel{std::move(nsp), std::move(room)},
                                                      event, sid);
           }, py::call_guard<py::gil_scoped_release>());
}

// What the application may read of connections and of the server.
void def_introspection(server_class& cls) {
  cls.def("claims", [](py_server& s, const std::string& sid) {
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
      .def("metrics_text", [](py_server& s) { return s.get().metrics_text(); })
      // The probes (net/health.hpp): (ok, JSON text), as /health/ready and /health/live.
      .def("readiness", [](py_server& s) {
        auto r = s.get().readiness();
        return py::make_tuple(r.ok, r.json);
      })
      .def("liveness", [](py_server& s) {
        auto r = s.get().liveness();
        return py::make_tuple(r.ok, r.json);
      })
      .def_property_readonly("log_queue", [](py_server& s) -> log_queue& {
        return s.get().get_log();
      }, py::return_value_policy::reference_internal);
}

void register_server(py::module_& m) {
  m.def("is_valid_json", [](const std::string& s) {
    return proto::is_valid_utf8(s) && nlohmann::json::accept(s);
  }, "True when the bytes are one valid UTF-8 JSON text.");

  m.def("check_jwt", [](const py::dict& options) { jwt_config(options); },
        "Raises ValueError when a key of the JWT options does not fit its algorithms.");

  server_class cls(m, "Server");
  cls.def(py::init<server_config, py::object, py::object, py::object, py::object, py::object,
                   py::object, py::object, py::object>(),
          py::arg("config"), py::arg("on_connect"), py::arg("on_message"),
          py::arg("on_disconnect"), py::arg("on_sio_connect") = py::none(),
          py::arg("on_sio_event") = py::none(), py::arg("on_sio_ack") = py::none(),
          py::arg("on_http") = py::none(), py::arg("on_batch_end") = py::none());
  def_lifecycle(cls);
  def_emit(cls);
  def_socketio(cls);
  def_connections(cls);
  def_rooms(cls);
  def_state(cls);
  def_introspection(cls);
}

}  // namespace skyrelay::bindings
