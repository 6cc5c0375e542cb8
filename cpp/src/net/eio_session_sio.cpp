// eio_session, second part: the Socket.IO layer on top of the Engine.IO session. It holds
// the decoding of Socket.IO packets (with binary attachments), the CONNECT checks
// (on_connect_packet, admit_connect, verify_connect, try_resume), the opening, forgetting and
// disconnecting of namespace sockets, and the dispatch of the other packets. The Engine.IO
// transport (polling, WebSocket, heartbeats, sending, close) is in eio_session.cpp.
#include "skyrelay/net/eio_session.hpp"

#include <cassert>

#include <nlohmann/json.hpp>
#include <boost/beast/core/string.hpp>

#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/broker/redis_sio_recovery.hpp"
#include "skyrelay/core/clock.hpp"
#include "skyrelay/core/random.hpp"
#include "skyrelay/proto/json_protocol.hpp"
#include "skyrelay/net/session_context.hpp"
#include "skyrelay/net/sio_server.hpp"

namespace skyrelay {

bool eio_session::namespace_allowed(const std::string& nsp) const {
  for (const auto& n : context_.config().sio_namespaces)
    if (n == "*" || n == nsp) return true;
  return false;
}

void eio_session::on_sio_text(std::string_view text) {
  bool interrupted = false;
  {
    std::lock_guard lock(mu_);
    interrupted = partial_ != nullptr;  // a text packet while attachments were expected
  }
  auto decoded = sio::decode(text);
  if (interrupted || std::holds_alternative<std::string>(decoded)) {
    close(disconnect_reason::protocol_error);
    return;
  }
  auto& p = std::get<sio::packet>(decoded);
  if (p.attachments) {
    if (p.attachments > context_.config().max_attachments) {
      context_.get_metrics().limit_hit(limit_kind::attachments);
      close(disconnect_reason::message_too_big);
      return;
    }
    std::lock_guard lock(mu_);
    partial_ = std::make_unique<partial_packet>();
    partial_->packet = std::move(p);
    return;
  }
  dispatch(p, {});
}

void eio_session::on_sio_binary(std::string_view bytes) {
  std::unique_ptr<partial_packet> complete;
  bool unexpected = false, too_big = false;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    if (!partial_) {
      unexpected = true;
    } else if (partial_->bytes + bytes.size() > context_.config().max_attachment_bytes) {
      too_big = true;  // refused before it is copied
    } else {
      partial_->bytes += bytes.size();
      partial_->attachments.emplace_back(bytes);
      if (partial_->attachments.size() == partial_->packet.attachments)
        complete = std::move(partial_);
    }
  }
  if (unexpected) return close(disconnect_reason::protocol_error);
  if (too_big) {
    context_.get_metrics().limit_hit(limit_kind::attachment_bytes);
    return close(disconnect_reason::message_too_big);
  }
  if (complete) dispatch(complete->packet, std::move(complete->attachments));
}

void eio_session::on_connect_packet(const sio::packet& p) {
  if (!admit_connect(p.nsp)) return;
  auth::identity_ptr identity;
  if (!verify_connect(p, identity)) return;
  // The namespace's role requirement, checked against the token just verified (or, when the
  // connect hook may grant roles, in sio_accept after it).
  if (const auto& policy = context_.config().access;
      policy && !(context_.config().roles_from_connect && context_.hooks().on_sio_connect)) {
    if (auto refusal = policy->check_namespace(p.nsp, auth::connection_roles(identity.get()))) {
      auto& m = context_.get_metrics();
      m.add(m.local().forbidden_namespace);
      m.add(m.local().handshakes_rejected);
      send_packet_text("4" + sio::connect_error(p.nsp, refusal->message, R"({"code":"forbidden"})"));
      return;
    }
  }
  if (context_.config().sio_recovery_window.count() > 0 && try_resume(p, identity)) return;
  open_socket(p.nsp, p.data.empty() ? std::string("{}") : p.data, std::move(identity));
}

bool eio_session::admit_connect(const std::string& nsp) {
  const std::int64_t now = steady_ns();
  std::int64_t wait_ns = 0;
  bool limited = false, duplicate = false;
  {
    std::lock_guard lock(mu_);
    if (closed_) return false;
    if (!connect_limit_) connect_limit_.emplace(context_.config().inbound_limit, now);
    limited = !connect_limit_->take(now, wait_ns);
    duplicate = sockets_.count(nsp) > 0;
  }
  if (limited) {
    // CONNECTs count against the inbound rate like events: a flood costs no verification.
    context_.get_metrics().drop(drop_reason::rate_limited);
    send_packet_text("4" + sio::connect_error(nsp, "rate limited",
                                              "{\"code\":\"rate_limited\",\"retry_after_ms\":" +
                                                  std::to_string(wait_ns / 1'000'000 + 1) + "}"));
    return false;
  }
  if (!namespace_allowed(nsp)) {
    send_packet_text("4" + sio::connect_error(nsp, "Invalid namespace"));
    return false;
  }
  if (duplicate) {
    // As python-socketio does: CONNECT_ERROR "Unable to connect", the socket already there
    // stays connected. Its token is not looked at.
    send_packet_text("4" + sio::connect_error(nsp, "Unable to connect",
                                              R"({"code":"already_connected"})"));
    return false;
  }
  return true;
}

bool eio_session::verify_connect(const sio::packet& p, auth::identity_ptr& identity) {
  const auto& jwt = context_.config().jwt;
  if (!jwt) return true;
  // The token, before anything else: {"token": "..."} in the CONNECT payload.
  auto payload = nlohmann::json::parse(p.data.empty() ? std::string_view("{}") : p.data,
                                       nullptr, false);
  std::string token;
  std::optional<auth::auth_refusal> refusal;
  if (payload.is_object()) {
    if (auto it = payload.find("token"); it != payload.end()) {
      if (it->is_string())
        token = it->get<std::string>();
      else
        refusal = auth::auth_refusal{"malformed", "\"token\" must be a string"};
    }
  }
  // Non-browser clients may send the token as a header of the Engine.IO handshake instead
  // (python-socketio's headers=, socket.io-client's extraHeaders); the payload's wins.
  if (token.empty() && !refusal) {
    for (const auto& [name, value] : headers()) {
      if (!boost::beast::iequals(name, "authorization")) continue;
      if (auto bearer = auth::bearer_token(value)) token = std::string(*bearer);
      break;
    }
  }
  if (!refusal && (!token.empty() || jwt->required)) {
    auto r = auth::authenticate(*jwt, token, auth::token_use::connect, auth::unix_now());
    if (auto* f = std::get_if<auth::auth_refusal>(&r))
      refusal = std::move(*f);
    else
      identity = std::get<auth::identity_ptr>(r);
  }
  if (!refusal) return true;
  auto& m = context_.get_metrics();
  m.add(m.local().auth_refused);
  m.add(m.local().handshakes_rejected);
  log_event(context_.log(), log_source::auth, log_level::info, "auth_refused", [&] {
    return std::vector<log_field>{{"sid", sid_},
                                  {"remote", std::string(remote())},
                                  {"namespace", p.nsp},
                                  {"code", refusal->code},
                                  {"message", refusal->message}};
  });
  std::string data = "{\"code\":";
  proto::append_json_string(data, refusal->code);
  data += '}';
  send_packet_text("4" + sio::connect_error(p.nsp, refusal->message, data));
  return false;
}

bool eio_session::try_resume(const sio::packet& p, const auth::identity_ptr& identity) {
  if (p.data.empty()) return false;
  // A returning client presents {"pid": ..., "offset": ...} in its CONNECT payload.
  auto auth = nlohmann::json::parse(p.data, nullptr, false);
  if (!auth.is_object() || !auth.contains("pid") || !auth["pid"].is_string() ||
      !auth.contains("offset") || !auth["offset"].is_string())
    return false;
  const auto& full = auth["offset"].get_ref<const std::string&>();
  // With cross-node recovery an offset is "<n>.<version>...": this node reads its n.
  auto* store = context_.sio().recovery_store();
  const std::string text = store ? full.substr(0, full.find('.')) : full;
  bool numeric = !text.empty() && text.size() < 20;
  for (char c : text) numeric = numeric && c >= '0' && c <= '9';
  if (!numeric) return false;
  const auto& pid = auth["pid"].get_ref<const std::string&>();
  auto sock = context_.sio().take_detached(pid, p.nsp);
  if (!sock && store && redis::parse_pid(pid)) {
    // Perhaps another node's socket: the claim waits for Redis, so it runs on the dispatcher.
    asio::post(ex_, [self = shared_from_this()] { self->connect_timer_.reset(); });
    context_.sio().resume_elsewhere(shared_from_this(), p.nsp, pid, full, p.data, identity);
    return true;
  }
  if (!sock) return false;
  if (context_.config().jwt) {
    // Only the same user takes a socket back; its new token replaces the old one.
    const auto old = sock->identity();
    const bool same = old && identity ? old->subject == identity->subject : old == identity;
    if (!same) {
      context_.sio().end_socket(sock, disconnect_reason::transport_error);
      return false;
    }
  }
  bool placed = false;
  {
    std::lock_guard lock(mu_);
    if (!closed_ && !sockets_.count(p.nsp)) {
      place_socket_locked(p.nsp, sock);
      placed = true;
    }
  }
  if (!placed || !sock->begin_resume(weak_from_this(), {std::stoull(text), p.data})) {
    if (placed) forget_socket(p.nsp);
    context_.sio().end_socket(sock, disconnect_reason::transport_error);
    return false;  // a new socket, then (unless the session is gone)
  }
  sock->set_identity(identity);
  asio::post(ex_, [self = shared_from_this()] { self->connect_timer_.reset(); });
  // Like a new connection (and as the reference server re-runs its middleware), a recovery
  // goes through the connect hook and the role checks; only their acceptance resumes it.
  run_connect_hook(sock, p.data, identity, true);
  return true;
}

void eio_session::run_connect_hook(const std::shared_ptr<sio_socket>& sock, std::string auth,
                                   auth::identity_ptr identity, bool recovered) {
  if (!context_.hooks().on_sio_connect) {
    context_.sio().accept(sock->sid());
    return;
  }
  sio_connect_info info{sock->sid(),          sock->nsp(),
                        std::move(auth),        sid_,
                        std::string(remote()),  https_ ? "https" : "http",
                        std::string(query()),   headers(),
                        std::move(identity),    recovered};
  const app_hooks* app = &context_.hooks();
  if (!context_.get_dispatcher().post(
          [app, info = std::move(info)] { app->on_sio_connect(info); }))
    context_.sio().refuse(sock->sid(), "server busy", "");
}

std::shared_ptr<sio_socket> eio_session::place_new_socket(const std::string& nsp,
                                                          std::string sid) {
  const auto& cfg = context_.config();
  const sio_socket::keep_limits keep{cfg.outbox_max_frames + cfg.history_max_events,
                                     4 * cfg.outbox_max_bytes};
  std::lock_guard lock(mu_);
  if (closed_ || sockets_.count(nsp)) return nullptr;
  auto sock = std::make_shared<sio_socket>(std::move(sid), nsp, shared_from_this(),
                                           context_.encoders().socketio, keep);
  place_socket_locked(nsp, sock);
  return sock;
}

void eio_session::open_socket(const std::string& nsp, std::string auth,
                              auth::identity_ptr identity) {
  const auto& cfg = context_.config();
  // With recovery, a socket keeps what may still be in flight (its outbox and the kernel's
  // send buffer) and, detached, as much as a room's history would (docs/architecture.md).
  sio_socket::keep_limits keep;
  if (cfg.sio_recovery_window.count() > 0)
    keep = {cfg.outbox_max_frames + cfg.history_max_events, 4 * cfg.outbox_max_bytes};
  std::shared_ptr<sio_socket> sock;
  {
    std::lock_guard lock(mu_);
    if (closed_ || sockets_.count(nsp)) return;  // already connected to that namespace
    sock = std::make_shared<sio_socket>(new_sid(), nsp, shared_from_this(),
                                        context_.encoders().socketio, keep);
    place_socket_locked(nsp, sock);
  }
  asio::post(ex_, [self = shared_from_this()] { self->connect_timer_.reset(); });
  sock->set_identity(identity);
  context_.sio().register_socket(sock);
  // With cross-node recovery on, the socket's place in its namespace's broadcasts is read
  // around its add (sio_server::track_new).
  context_.sio().track_new(sock, [&] { return context_.get_hub().add(sock); });
  sock->arm_expiry(executor(), context_.sio());
  run_connect_hook(sock, std::move(auth), std::move(identity), false);
}

void eio_session::dispatch(const sio::packet& p, std::vector<std::string> attachments) {
  if (p.type == sio::packet_type::connect) return on_connect_packet(p);
  std::shared_ptr<sio_socket> sock;
  {
    std::lock_guard lock(mu_);
    auto it = sockets_.find(p.nsp);
    if (it != sockets_.end()) sock = it->second;
  }
  if (!sock || !sock->connected()) return;  // not connected to that namespace: ignored
  const auto& hooks = context_.hooks();
  const app_hooks* app = &hooks;
  switch (p.type) {
    case sio::packet_type::disconnect: {
      {
        std::lock_guard lock(mu_);
        if (auto it = sockets_.find(p.nsp); it != sockets_.end()) erase_socket_locked(it);
      }
      context_.sio().end_socket(sock, disconnect_reason::client_close);
      return;
    }
    case sio::packet_type::event:
    case sio::packet_type::binary_event: {
      if (!hooks.on_sio_event) return;
      // Split ["name", args...] into the name and the JSON text of the args array.
      std::string name, args;
      if (!sio::split_event(p.data, name, args)) return;  // decode() accepted only this shape
      std::int64_t wait_ns = 0;
      if (!sock->take_token(name, wait_ns)) {
        // Over the socket's inbound rate: the event is dropped (its ack never comes) and the
        // client is told with a "rate_limited" event.
        context_.get_metrics().drop(drop_reason::rate_limited);
        // One record per run of refused events (take_token counts the run), not per event.
        if (sock->rate_streak() == 1)
          log_event(context_.log(), log_source::limits, log_level::warning, "rate_limited", [&] {
            return std::vector<log_field>{{"sid", sock->sid()},
                                          {"transport", std::string("socketio")},
                                          {"event", name},
                                          {"retry_after_ms", std::int64_t(wait_ns / 1'000'000 + 1)}};
          });
        std::string info = "{\"event\":";
        proto::append_json_string(info, name);
        info += ",\"retry_after_ms\":" + std::to_string(wait_ns / 1'000'000 + 1) + "}";
        context_.sio().emit(sock->sid(), "rate_limited", info, {}, -1);
        return;
      }
      std::int64_t id = p.id ? static_cast<std::int64_t>(*p.id) : -1;
      if (const auto& policy = context_.config().access) {
        if (auto refusal = policy->check_event(p.nsp, name, *sock->roles())) {
          // Not handled. The client learns why: in the ack it asked for, else in a "forbidden"
          // event; both carry {"error": {"code": "forbidden", "message": ..., "event": ...}}.
          context_.get_metrics().add(context_.get_metrics().local().forbidden_event);
          context_.get_metrics().error(error_code::forbidden);
          std::string info = R"({"error":{"code":"forbidden","message":)";
          proto::append_json_string(info, refusal->message);
          info += ",\"event\":";
          proto::append_json_string(info, name);
          info += "}}";
          if (id >= 0)
            context_.sio().ack(sock->sid(), static_cast<std::uint64_t>(id), "[" + info + "]", {});
          else
            context_.sio().emit(sock->sid(), "forbidden", info, {}, -1);
          return;
        }
      }
      bool queued = context_.get_dispatcher().post(
          [app, sid = sock->sid(), name = std::move(name), args = std::move(args), id,
           attachments = std::move(attachments)] {
            app->on_sio_event(sid, name, args, id, attachments);
          });
      if (!queued) context_.get_metrics().drop(drop_reason::dispatch_overflow);
      return;
    }
    case sio::packet_type::ack:
    case sio::packet_type::binary_ack: {
      if (!hooks.on_sio_ack) return;
      context_.get_dispatcher().post([app, sid = sock->sid(), id = *p.id, args = p.data,
                                     attachments = std::move(attachments)] {
        app->on_sio_ack(sid, id, args, attachments);
      });
      return;
    }
    default:
      return;
  }
}

std::shared_ptr<sio_socket> eio_session::forget_socket(const std::string& nsp) {
  std::lock_guard lock(mu_);
  auto it = sockets_.find(nsp);
  if (it == sockets_.end()) return nullptr;
  return erase_socket_locked(it);
}

void eio_session::disconnect_socket(const std::string& nsp, disconnect_reason why,
                                    const sio_socket* only) {
  std::shared_ptr<sio_socket> sock;
  {
    std::lock_guard lock(mu_);
    auto it = sockets_.find(nsp);
    if (it == sockets_.end() || (only && it->second.get() != only)) return;
    sock = erase_socket_locked(it);
  }
  send_packet_text("4" + sio::encode(sio::packet{sio::packet_type::disconnect, nsp, 0, {}, {}}));
  context_.sio().end_socket(sock, why);
}

// The session's sockets (its mutex held) ------------------------------------------------

void eio_session::place_socket_locked(const std::string& nsp,
                                      const std::shared_ptr<sio_socket>& sock) {
  assert(!closed_ && !sockets_.count(nsp));
  sockets_.emplace(nsp, sock);
  sock->set_wire(wire_.load(std::memory_order_relaxed));  // written only under mu_
}

std::shared_ptr<sio_socket> eio_session::erase_socket_locked(socket_list::iterator it) {
  auto sock = std::move(it->second);
  sockets_.erase(it);
  sock->set_wire(nullptr);  // a socket out of the session sends only through it, if at all
  return sock;
}

}  // namespace skyrelay
