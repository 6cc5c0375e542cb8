#include "skyrelay/net/eio_session.hpp"

#include <nlohmann/json.hpp>
#include <boost/beast/core/string.hpp>

#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/core/clock.hpp"
#include "skyrelay/core/random.hpp"
#include "skyrelay/proto/json_protocol.hpp"
#include "skyrelay/net/server.hpp"

namespace skyrelay {

namespace {
constexpr char record_separator = '\x1e';

frame_ptr text_packet(std::string text) { return make_message(std::move(text), 1, 0, false); }

// Appends `f` and the frames that must follow it (a binary event's attachments).
void append_group(std::vector<frame_ptr>& out, const frame_ptr& f) {
  out.push_back(f);
  out.insert(out.end(), f->followers.begin(), f->followers.end());
}
}  // namespace

// ---- sio_socket -------------------------------------------------------------------------

sio_socket::sio_socket(std::string sid, std::string nsp, std::weak_ptr<eio_session> session,
                       std::size_t recovery_frames)
    : subscriber(std::move(sid), wire_format::socketio, std::move(nsp)),
      session_(std::move(session)),
      recovery_frames_(recovery_frames),
      pid_(recovery_frames ? new_sid() : std::string()) {}

void sio_socket::remember_locked(const frame_ptr* first, std::size_t n) {
  if (!recovery_frames_ || n == 0 || !first[0]->offset) return;  // only events carry offsets
  direct_.emplace_back(first, first + n);
  if (direct_.size() > recovery_frames_) {
    evicted_offset_ = direct_.front().front()->offset;
    direct_.pop_front();
  }
}

bool sio_socket::take_token(std::string_view event, std::int64_t& wait_ns) {
  std::lock_guard lock(mu_);
  const std::int64_t now = steady_ns();
  if (!limit_) {
    auto s = session_.lock();
    if (!s) return true;
    const auto& cfg = s->config();
    limit_.emplace(cfg.inbound_limit, &cfg.event_limits, now);
  }
  return limit_->take(event, now, wait_ns);
}

void sio_socket::detach() {
  std::lock_guard lock(mu_);
  detached_ = true;
  session_.reset();
}

bool sio_socket::reattach(std::weak_ptr<eio_session> session, std::uint64_t offset,
                          std::vector<frame_ptr>& missed) {
  std::lock_guard lock(mu_);
  if (!detached_ || closed_ || evicted_offset_ > offset) return false;
  detached_ = false;
  session_ = std::move(session);
  // Merge the two id-ordered lists; a direct group stays together.
  std::vector<frame_ptr> frames;
  frames.reserve(missed.size() + 1);
  frames.push_back(make_message("4" + sio::connect_ok(nsp(), sid(), pid_), 1, 0, false));
  auto next = missed.begin();
  for (const auto& group : direct_) {
    const std::uint64_t id = group.front()->offset;
    if (id <= offset) continue;
    for (; next != missed.end() && (*next)->offset < id; ++next) append_group(frames, *next);
    frames.insert(frames.end(), group.begin(), group.end());
  }
  for (; next != missed.end(); ++next) append_group(frames, *next);
  if (auto s = session_.lock()) s->send_all(frames);
  return true;
}

bool sio_socket::begin_resume(std::weak_ptr<eio_session> session, resume_request r) {
  std::lock_guard lock(mu_);
  if (!detached_ || closed_) return false;
  session_ = std::move(session);  // for sio_refuse's answer; nothing is sent while detached
  resume_ = std::move(r);
  granted_roles_.reset();  // the connect hook grants them anew, or the new token's apply
  return true;
}

std::optional<sio_socket::resume_request> sio_socket::take_resume() {
  std::lock_guard lock(mu_);
  auto r = std::move(resume_);
  resume_.reset();
  return r;
}

void sio_socket::deliver(const frame_ptr& f, overflow_policy policy) { pass_on(f, policy, false); }

void sio_socket::deliver_direct(const frame_ptr& f, overflow_policy policy) {
  pass_on(f, policy, true);
}

void sio_socket::pass_on(const frame_ptr& f, overflow_policy policy, bool direct) {
  std::shared_ptr<eio_session> s;
  std::vector<frame_ptr> group;  // the frame and its attachments
  append_group(group, f);
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    if (!connected_) {
      pending_.push_back(f);
      return;
    }
    // Events to this socket alone are kept for its return; the hub's history has the rest.
    if (direct) remember_locked(group.data(), group.size());
    if (detached_) return;
    s = session_.lock();
  }
  if (!s) return;
  if (group.size() == 1) return s->send(f, policy);
  s->send_all(group);
}

void sio_socket::deliver_all(std::vector<frame_ptr> frames) {
  std::lock_guard lock(mu_);  // keeps the group together against concurrent deliveries
  if (closed_) return;
  if (!connected_) {
    pending_.insert(pending_.end(), frames.begin(), frames.end());
    return;
  }
  remember_locked(frames.data(), frames.size());
  if (detached_) return;
  if (auto s = session_.lock()) s->send_all(frames);
}

bool sio_socket::accept() {
  std::lock_guard lock(mu_);
  if (connected_ || closed_) return false;
  connected_ = true;
  std::vector<frame_ptr> frames;
  frames.reserve(pending_.size() + 1);
  frames.push_back(text_packet("4" + sio::connect_ok(nsp(), sid(), pid_)));
  for (const auto& f : pending_) append_group(frames, f);
  pending_.clear();
  if (auto s = session_.lock()) s->send_all(frames);
  return true;
}

bool sio_socket::accepted() const {
  std::lock_guard lock(mu_);
  return connected_ && !closed_;
}

bool sio_socket::connected() const {
  std::lock_guard lock(mu_);
  return connected_ && !closed_ && !detached_;
}

void sio_socket::mark_closed() {
  std::shared_ptr<asio::steady_timer> expiry;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    pending_.clear();
    expiry = std::move(expiry_);
  }
  if (expiry) asio::post(expiry->get_executor(), [expiry] { expiry->cancel(); });
}

void sio_socket::set_identity(auth::identity_ptr id) {
  std::lock_guard lock(mu_);
  identity_ = std::move(id);
}

auth::identity_ptr sio_socket::identity() const {
  std::lock_guard lock(mu_);
  return identity_;
}

void sio_socket::grant_roles(std::vector<std::string> roles) {
  auto granted = std::make_shared<const std::vector<std::string>>(std::move(roles));
  std::lock_guard lock(mu_);
  granted_roles_ = std::move(granted);
}

std::shared_ptr<const std::vector<std::string>> sio_socket::roles() const {
  static const std::vector<std::string> none;
  std::lock_guard lock(mu_);
  if (granted_roles_) return granted_roles_;
  if (!identity_) return {std::shared_ptr<void>(), &none};
  return {identity_, &identity_->roles};
}

void sio_socket::arm_expiry(asio::any_io_executor ex, server& srv) {
  if (!identity()) return;
  // Made and started on its executor, where its cancellation runs too.
  asio::post(ex, [weak = weak_from_this(), ex, srv = &srv] {
    auto self = weak.lock();
    if (!self) return;
    std::shared_ptr<asio::steady_timer> timer, old;
    {
      std::lock_guard lock(self->mu_);
      if (self->closed_ || !self->identity_) return;
      old = std::move(self->expiry_);
      timer = std::make_shared<asio::steady_timer>(ex, auth::time_left(*self->identity_));
      self->expiry_ = timer;
    }
    if (old) asio::post(old->get_executor(), [old] { old->cancel(); });
    timer->async_wait([timer, weak, srv](boost::system::error_code ec) {
      if (ec) return;
      auto s = weak.lock();
      if (!s) return;
      {
        std::lock_guard lock(s->mu_);
        if (s->expiry_ != timer) return;  // replaced by a later token
      }
      srv->expire_socket(s);
    });
  });
}

// ---- eio_session ------------------------------------------------------------------------

eio_session::eio_session(server& srv, asio::io_context& ctx, std::string sid, transport t,
                         std::string remote,
                         std::vector<std::pair<std::string, std::string>> headers,
                         std::string query, bool echo)
    : server_(srv),
      sid_(std::move(sid)),
      remote_(std::move(remote)),
      headers_(std::move(headers)),
      query_(std::move(query)),
      echo_(echo),
      ping_timer_(ctx),
      connect_timer_(ctx),
      upgrade_timer_(ctx),
      transport_(t) {}

eio_session::~eio_session() = default;

void eio_session::hold(std::shared_ptr<void> slot) {
  std::lock_guard lock(mu_);
  slot_ = std::move(slot);
}

const server_config& eio_session::config() const noexcept { return server_.config(); }

std::string eio_session::open_packet() const {
  const auto& cfg = server_.config();
  return "0" + eio::open_packet(sid_, transport_ == transport::polling,
                                cfg.eio_ping_interval.count(), cfg.eio_ping_timeout.count(),
                                cfg.max_body_size);
}

void eio_session::start() {
  arm_ping(server_.config().eio_ping_interval);
  if (echo_) return;  // no Socket.IO CONNECT is expected
  connect_timer_.expires_after(server_.config().sio_connect_timeout);
  connect_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec) return;
    bool any;
    {
      std::lock_guard lock(self->mu_);
      any = !self->sockets_.empty();
    }
    if (!any) self->close(disconnect_reason::heartbeat_timeout);
  });
}

void eio_session::arm_ping(std::chrono::milliseconds after) {
  ping_timer_.expires_after(after);
  ping_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->on_ping_timer();
  });
}

void eio_session::on_ping_timer() {
  bool timed_out = false;
  {
    std::lock_guard lock(mu_);
    if (closed_ || lingering_) return;
    if (awaiting_pong_) {
      timed_out = true;
    } else {
      awaiting_pong_ = true;
    }
  }
  if (timed_out) {
    close(disconnect_reason::heartbeat_timeout);
    return;
  }
  {
    std::lock_guard lock(mu_);
    pong_deadline_ = std::chrono::steady_clock::now() + server_.config().eio_ping_timeout;
  }
  send(text_packet("2"));
  arm_ping(server_.config().eio_ping_timeout);
}

// Polling --------------------------------------------------------------------------------

std::optional<std::string> eio_session::take_polling_body_locked() {
  if (queue_.empty()) return std::nullopt;
  std::string body;
  for (std::size_t i = 0; i < queue_.size(); ++i) {
    if (i) body += record_separator;
    const auto& f = queue_[i];
    if (f->ws_opcode == 2) {
      body += 'b';  // binary goes over polling as base64
      body += eio::base64_encode(f->bytes);
    } else {
      body += f->bytes;  // a text packet, type character included
    }
  }
  queue_.clear();
  queue_bytes_ = 0;
  return body;
}

void eio_session::poll(reply_fn reply) {
  reply_fn previous;
  std::optional<std::string> body;
  bool duplicate = false, dead = false, expired = false, hold = false;
  {
    std::lock_guard lock(mu_);
    // A poll that comes after the pong deadline finds the session dead, even when the timer
    // that closes it has not run yet.
    expired = !closed_ && awaiting_pong_ && std::chrono::steady_clock::now() >= pong_deadline_;
    if (expired || closed_ || transport_ != transport::polling) {
      dead = true;
    } else if (lingering_) {
      body = "6";  // the session is closing: release this poll, then end it
    } else if (parked_) {
      duplicate = true;
      previous = std::move(parked_);
      parked_ = nullptr;
    } else if (upgrading_ || probe_) {
      // Mid-upgrade: the client's "2probe" and "5" may be in flight on the WebSocket (another
      // connection, maybe another thread, so this poll can overtake them). Hold the poll
      // briefly: if the upgrade completes it gets 400 like any poll after an upgrade, else a
      // noop.
      parked_ = std::move(reply);
      held_ = true;
      hold = true;
    } else {
      body = take_polling_body_locked();
      if (!body) parked_ = std::move(reply);
    }
  }
  if (dead) {
    reply(400, eio::error_body(eio::error_code::unknown_sid));
    if (expired) close(disconnect_reason::heartbeat_timeout);
    return;
  }
  if (duplicate) {
    // Two GETs at once break the protocol: end the session.
    previous(200, "1");
    reply(400, eio::error_body(eio::error_code::bad_request));
    close(disconnect_reason::protocol_error);
    return;
  }
  if (hold) {
    asio::post(upgrade_timer_.get_executor(), [self = shared_from_this()] {
      self->upgrade_timer_.expires_after(std::chrono::milliseconds(50));
      self->upgrade_timer_.async_wait([self](boost::system::error_code ec) {
        if (!ec) self->release_parked("6");
      });
    });
    return;
  }
  if (body) reply(200, std::move(*body));
  bool linger_done;
  {
    std::lock_guard lock(mu_);
    linger_done = lingering_;
  }
  if (linger_done) close(disconnect_reason::client_close);
}

void eio_session::release_parked(std::string body) {
  reply_fn r;
  {
    std::lock_guard lock(mu_);
    r = std::move(parked_);
    parked_ = nullptr;
    held_ = false;
  }
  if (r) r(200, std::move(body));
}

void eio_session::post(std::string_view body, reply_fn reply) {
  {
    std::lock_guard lock(mu_);
    if (closed_ || transport_ != transport::polling)
      return reply(400, eio::error_body(eio::error_code::unknown_sid));
  }
  auto packets = eio::decode_payload(body);
  if (!packets) {
    reply(400, eio::error_body(eio::error_code::bad_request));
    close(disconnect_reason::protocol_error);
    return;
  }
  reply(200, "ok");
  for (const auto& p : *packets) {
    on_packet(p, nullptr);
    std::lock_guard lock(mu_);
    if (closed_) break;  // e.g. over an attachment limit: the rest is not looked at
  }
}

// WebSocket ------------------------------------------------------------------------------

void eio_session::attach_websocket(std::shared_ptr<ws_session> ws) {
  std::lock_guard lock(mu_);
  ws_ = std::move(ws);
}

void eio_session::attach_probe(std::shared_ptr<ws_session> ws) {
  bool refuse = false;
  {
    std::lock_guard lock(mu_);
    refuse = closed_ || transport_ != transport::polling || probe_;
    if (!refuse) probe_ = ws;
  }
  // A second WebSocket for an upgraded (or dead) session is closed at once.
  if (refuse) ws->close(close_code::policy_violation, "session already upgraded",
                        disconnect_reason::protocol_error);
}

bool eio_session::ours(const ws_session& ws) const {
  std::lock_guard lock(mu_);
  return ws_.get() == &ws || probe_.get() == &ws;
}

void eio_session::on_ws_text(ws_session& from, std::string_view text) {
  if (!ours(from)) return;
  auto p = eio::decode_text(text);
  if (!p) {
    close(disconnect_reason::protocol_error);
    return;
  }
  on_packet(*p, &from);
}

void eio_session::on_ws_binary(ws_session& from, std::string_view bytes) {
  if (!ours(from)) return;
  on_packet(eio::packet{eio::packet_type::message, true, std::string(bytes)}, &from);
}

void eio_session::on_ws_closed(ws_session& from, disconnect_reason why) {
  {
    std::lock_guard lock(mu_);
    if (probe_.get() == &from) {  // a failed upgrade leaves the polling transport in place
      probe_.reset();
      upgrading_ = false;
      return;
    }
    if (ws_.get() != &from) return;  // a refused duplicate
  }
  close(why);
}

// Packets --------------------------------------------------------------------------------

void eio_session::on_packet(const eio::packet& p, ws_session*) {
  switch (p.type) {
    case eio::packet_type::pong: {
      std::lock_guard lock(mu_);
      awaiting_pong_ = false;
      return;
    }
    case eio::packet_type::ping: {
      // "2probe" on an upgrade candidate: answer on that socket and release the poll.
      std::shared_ptr<ws_session> probe;
      reply_fn waiting;  // a poll parked before the upgrade began; a held one waits for "5"
      {
        std::lock_guard lock(mu_);
        if (p.data == "probe" && probe_) {
          probe = probe_;
          upgrading_ = true;
          if (!held_) {
            waiting = std::move(parked_);
            parked_ = nullptr;
          }
        }
      }
      if (probe) {
        probe->deliver(text_packet("3probe"), overflow_policy::disconnect);
        if (waiting) waiting(200, "6");
      } else {
        send(text_packet("3" + p.data));
      }
      return;
    }
    case eio::packet_type::upgrade: {
      std::vector<frame_ptr> rest;
      std::shared_ptr<ws_session> ws;
      std::shared_ptr<void> slot;
      {
        std::lock_guard lock(mu_);
        if (!probe_) return;
        ws_ = std::move(probe_);
        probe_.reset();
        transport_ = transport::websocket;
        upgrading_ = false;
        rest.assign(queue_.begin(), queue_.end());
        queue_.clear();
        queue_bytes_ = 0;
        ws = ws_;
        slot = std::move(slot_);  // the WebSocket's connection slot counts the session now
      }
      slot.reset();
      {
        // A poll held during the upgrade is now a poll after it. Answer it after the
        // WebSocket's pending flush, so the client has "3probe" before this answer.
        reply_fn held;
        {
          std::lock_guard lock(mu_);
          held = std::move(parked_);
          parked_ = nullptr;
          held_ = false;
        }
        if (held)
          ws->post([held = std::move(held)] { held(400, eio::error_body(eio::error_code::unknown_sid)); });
      }
      for (auto& f : rest) ws->deliver(f, overflow_policy::disconnect);
      return;
    }
    case eio::packet_type::message:
      if (echo_) {
        send(p.binary ? make_message(p.data, 2) : text_packet("4" + p.data));
        return;
      }
      if (p.binary) {
        on_sio_binary(p.data);
      } else {
        on_sio_text(p.data);
      }
      return;
    case eio::packet_type::close: {
      // Over polling, a client closes with a POST while its GET is (or is about to be)
      // pending. That GET must be answered with a noop, so when it has not arrived yet, the
      // session lingers briefly for it instead of vanishing under it.
      bool linger = false;
      {
        std::lock_guard lock(mu_);
        if (transport_ == transport::polling && !parked_ && !closed_) {
          lingering_ = true;
          linger = true;
        }
      }
      if (!linger) {
        close(disconnect_reason::client_close);
        return;
      }
      // Timers are touched only on their own executor (requests arrive on any I/O thread).
      asio::post(ping_timer_.get_executor(), [self = shared_from_this()] {
        self->ping_timer_.expires_after(std::chrono::milliseconds(100));
        self->ping_timer_.async_wait([self](boost::system::error_code ec) {
          if (!ec) self->close(disconnect_reason::client_close);
        });
      });
      return;
    }
    case eio::packet_type::noop:
      return;
    case eio::packet_type::open:
      close(disconnect_reason::protocol_error);
      return;
  }
}

bool eio_session::namespace_allowed(const std::string& nsp) const {
  for (const auto& n : server_.config().sio_namespaces)
    if (n == "*" || n == nsp) return true;
  return false;
}

void eio_session::on_sio_text(std::string_view text) {
  bool interrupted = false;
  {
    std::lock_guard lock(mu_);
    interrupted = partial_.has_value();  // a text packet while attachments were expected
  }
  auto decoded = sio::decode(text);
  if (interrupted || std::holds_alternative<std::string>(decoded)) {
    close(disconnect_reason::protocol_error);
    return;
  }
  auto& p = std::get<sio::packet>(decoded);
  if (p.attachments) {
    if (p.attachments > server_.config().max_attachments) {
      server_.get_metrics().limit_hit(limit_kind::attachments);
      close(disconnect_reason::message_too_big);
      return;
    }
    std::lock_guard lock(mu_);
    partial_ = std::move(p);
    attachments_.clear();
    attachment_bytes_ = 0;
    return;
  }
  dispatch(p, {});
}

void eio_session::on_sio_binary(std::string_view bytes) {
  std::optional<sio::packet> complete;
  std::vector<std::string> parts;
  bool unexpected = false, too_big = false;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    if (!partial_) {
      unexpected = true;
    } else if (attachment_bytes_ + bytes.size() > server_.config().max_attachment_bytes) {
      too_big = true;  // refused before it is copied
    } else {
      attachment_bytes_ += bytes.size();
      attachments_.emplace_back(bytes);
      if (attachments_.size() == partial_->attachments) {
        complete = std::move(partial_);
        partial_.reset();
        parts = std::move(attachments_);
        attachments_.clear();
      }
    }
  }
  if (unexpected) return close(disconnect_reason::protocol_error);
  if (too_big) {
    server_.get_metrics().limit_hit(limit_kind::attachment_bytes);
    return close(disconnect_reason::message_too_big);
  }
  if (complete) dispatch(*complete, std::move(parts));
}

void eio_session::on_connect_packet(const sio::packet& p) {
  if (!admit_connect(p.nsp)) return;
  auth::identity_ptr identity;
  if (!verify_connect(p, identity)) return;
  // The namespace's role requirement, checked against the token just verified (or, when the
  // connect hook may grant roles, in sio_accept after it).
  if (const auto& policy = server_.config().access;
      policy && !(server_.config().roles_from_connect && server_.hooks().on_sio_connect)) {
    if (auto refusal = policy->check_namespace(p.nsp, auth::connection_roles(identity.get()))) {
      auto& m = server_.get_metrics();
      m.add(m.local().forbidden_namespace);
      m.add(m.local().handshakes_rejected);
      send_packet_text("4" + sio::connect_error(p.nsp, refusal->message, R"({"code":"forbidden"})"));
      return;
    }
  }
  if (server_.config().sio_recovery_window.count() > 0 && try_resume(p, identity)) return;
  open_socket(p.nsp, p.data.empty() ? std::string("{}") : p.data, std::move(identity));
}

bool eio_session::admit_connect(const std::string& nsp) {
  const std::int64_t now = steady_ns();
  std::int64_t wait_ns = 0;
  bool limited = false, duplicate = false;
  {
    std::lock_guard lock(mu_);
    if (closed_) return false;
    if (!connect_limit_) connect_limit_.emplace(server_.config().inbound_limit, now);
    limited = !connect_limit_->take(now, wait_ns);
    duplicate = sockets_.count(nsp) > 0;
  }
  if (limited) {
    // CONNECTs count against the inbound rate like events: a flood costs no verification.
    server_.get_metrics().drop(drop_reason::rate_limited);
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
  const auto& jwt = server_.config().jwt;
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
    for (const auto& [name, value] : headers_) {
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
  auto& m = server_.get_metrics();
  m.add(m.local().auth_refused);
  m.add(m.local().handshakes_rejected);
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
  const auto& text = auth["offset"].get_ref<const std::string&>();
  bool numeric = !text.empty() && text.size() < 20;
  for (char c : text) numeric = numeric && c >= '0' && c <= '9';
  if (!numeric) return false;
  auto sock = server_.take_detached(auth["pid"].get<std::string>(), p.nsp);
  if (!sock) return false;
  if (server_.config().jwt) {
    // Only the same user takes a socket back; its new token replaces the old one.
    const auto old = sock->identity();
    const bool same = old && identity ? old->subject == identity->subject : old == identity;
    if (!same) {
      server_.end_socket(sock, disconnect_reason::transport_error);
      return false;
    }
  }
  bool placed = false;
  {
    std::lock_guard lock(mu_);
    if (!closed_ && !sockets_.count(p.nsp)) {
      sockets_[p.nsp] = sock;
      placed = true;
    }
  }
  if (!placed || !sock->begin_resume(weak_from_this(), {std::stoull(text), p.data})) {
    if (placed) forget_socket(p.nsp);
    server_.end_socket(sock, disconnect_reason::transport_error);
    return false;  // a new socket, then (unless the session is gone)
  }
  sock->set_identity(identity);
  asio::post(connect_timer_.get_executor(), [self = shared_from_this()] {
    self->connect_timer_.cancel();
  });
  // Like a new connection (and as the reference server re-runs its middleware), a recovery
  // goes through the connect hook and the role checks; only their acceptance resumes it.
  if (!server_.hooks().on_sio_connect) {
    server_.sio_accept(sock->sid());
    return true;
  }
  sio_connect_info info{sock->sid(), p.nsp, p.data, sid_, remote_, query_, headers_, identity,
                        true};
  server* srv = &server_;
  if (!server_.get_dispatcher().post([srv, info = std::move(info)] { srv->hooks().on_sio_connect(info); }))
    server_.sio_refuse(sock->sid(), "server busy", "");
  return true;
}

void eio_session::open_socket(const std::string& nsp, std::string auth,
                              auth::identity_ptr identity) {
  const bool recovery = server_.config().sio_recovery_window.count() > 0;
  std::shared_ptr<sio_socket> sock;
  {
    std::lock_guard lock(mu_);
    if (closed_ || sockets_.count(nsp)) return;  // already connected to that namespace
    sock = std::make_shared<sio_socket>(new_sid(), nsp, weak_from_this(),
                                        recovery ? server_.config().outbox_max_frames : 0);
    sockets_[nsp] = sock;
  }
  asio::post(connect_timer_.get_executor(), [self = shared_from_this()] {
    self->connect_timer_.cancel();
  });
  sock->set_identity(identity);
  server_.register_socket(sock);
  server_.get_hub().add(sock);
  sock->arm_expiry(connect_timer_.get_executor(), server_);
  const auto& hooks = server_.hooks();
  if (!hooks.on_sio_connect) {
    server_.sio_accept(sock->sid());
    return;
  }
  sio_connect_info info{sock->sid(), nsp, std::move(auth), sid_, remote_, query_, headers_,
                        std::move(identity), false};
  server* srv = &server_;
  if (!server_.get_dispatcher().post([srv, info = std::move(info)] { srv->hooks().on_sio_connect(info); }))
    server_.sio_refuse(sock->sid(), "server busy", "");
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
  const auto& hooks = server_.hooks();
  server* srv = &server_;
  switch (p.type) {
    case sio::packet_type::disconnect: {
      {
        std::lock_guard lock(mu_);
        sockets_.erase(p.nsp);
      }
      server_.end_socket(sock, disconnect_reason::client_close);
      return;
    }
    case sio::packet_type::event:
    case sio::packet_type::binary_event: {
      if (!hooks.on_sio_event) return;
      // Split ["name", args...] into the name and the JSON text of the args array.
      auto j = nlohmann::json::parse(p.data, nullptr, false);
      std::string name = j[0].get<std::string>();
      std::int64_t wait_ns = 0;
      if (!sock->take_token(name, wait_ns)) {
        // Over the socket's inbound rate: the event is dropped (its ack never comes) and the
        // client is told with a "rate_limited" event.
        server_.get_metrics().drop(drop_reason::rate_limited);
        std::string info = "{\"event\":";
        proto::append_json_string(info, name);
        info += ",\"retry_after_ms\":" + std::to_string(wait_ns / 1'000'000 + 1) + "}";
        server_.sio_emit(sock->sid(), "rate_limited", info, {}, -1);
        return;
      }
      std::int64_t id = p.id ? static_cast<std::int64_t>(*p.id) : -1;
      if (const auto& policy = server_.config().access) {
        if (auto refusal = policy->check_event(p.nsp, name, *sock->roles())) {
          // Not handled. The client learns why: in the ack it asked for, else in a "forbidden"
          // event; both carry {"error": {"code": "forbidden", "message": ..., "event": ...}}.
          server_.get_metrics().add(server_.get_metrics().local().forbidden_event);
          server_.get_metrics().error(error_code::forbidden);
          std::string info = R"({"error":{"code":"forbidden","message":)";
          proto::append_json_string(info, refusal->message);
          info += ",\"event\":";
          proto::append_json_string(info, name);
          info += "}}";
          if (id >= 0)
            server_.sio_ack(sock->sid(), static_cast<std::uint64_t>(id), "[" + info + "]", {});
          else
            server_.sio_emit(sock->sid(), "forbidden", info, {}, -1);
          return;
        }
      }
      j.erase(j.begin());
      bool queued = server_.get_dispatcher().post(
          [srv, sid = sock->sid(), name = std::move(name), args = j.dump(), id,
           attachments = std::move(attachments)] {
            srv->hooks().on_sio_event(sid, name, args, id, attachments);
          });
      if (!queued) server_.get_metrics().drop(drop_reason::dispatch_overflow);
      return;
    }
    case sio::packet_type::ack:
    case sio::packet_type::binary_ack: {
      if (!hooks.on_sio_ack) return;
      server_.get_dispatcher().post([srv, sid = sock->sid(), id = *p.id, args = p.data,
                                     attachments = std::move(attachments)] {
        srv->hooks().on_sio_ack(sid, id, args, attachments);
      });
      return;
    }
    default:
      return;
  }
}

// Sending --------------------------------------------------------------------------------

void eio_session::send_packet_text(std::string text) { send(text_packet(std::move(text))); }

void eio_session::send(const frame_ptr& f, overflow_policy policy) {
  if (policy == overflow_policy::drop_oldest) {
    // Volatile frames take the WebSocket outbox's drop_oldest path; polling queues keep the
    // session-level bound.
    std::shared_ptr<ws_session> ws;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      if (transport_ == transport::websocket) ws = ws_;
    }
    if (ws) return ws->deliver(f, policy);
  }
  send_all({f});
}

void eio_session::send_all(const std::vector<frame_ptr>& frames) {
  std::shared_ptr<ws_session> ws;
  reply_fn parked;
  std::string body;
  bool overflow = false;
  {
    std::lock_guard lock(mu_);
    if (closed_ || overflowed_) return;
    if (transport_ == transport::websocket) {
      ws = ws_;
    } else {
      const auto& cfg = server_.config();
      for (const auto& f : frames) {
        queue_.push_back(f);
        queue_bytes_ += f->bytes.size();
      }
      overflow = queue_.size() > cfg.outbox_max_frames || queue_bytes_ > cfg.outbox_max_bytes;
      overflowed_ = overflow;
      if (!overflow && parked_ && !upgrading_) {
        parked = std::move(parked_);
        parked_ = nullptr;
        body = *take_polling_body_locked();
      }
    }
  }
  if (ws) {
    // One push: a binary event's attachments must follow it with nothing between them (a
    // reply or another event sent by another thread meanwhile breaks the client's decoder).
    ws->deliver_group(frames, overflow_policy::disconnect);
    return;
  }
  if (overflow) {
    // Closed from the session's executor, not here: the caller may hold a socket's lock
    // (a Socket.IO socket sends under its own mutex), and closing ends its sockets.
    server_.get_metrics().limit_hit(limit_kind::outbox);
    server_.get_metrics().drop(drop_reason::slow_consumer);
    asio::post(connect_timer_.get_executor(), [self = shared_from_this()] {
      self->close(disconnect_reason::slow_consumer);
    });
    return;
  }
  if (parked) parked(200, std::move(body));
}

std::shared_ptr<sio_socket> eio_session::forget_socket(const std::string& nsp) {
  std::lock_guard lock(mu_);
  auto it = sockets_.find(nsp);
  if (it == sockets_.end()) return nullptr;
  auto sock = it->second;
  sockets_.erase(it);
  return sock;
}

void eio_session::disconnect_socket(const std::string& nsp, disconnect_reason why,
                                    const sio_socket* only) {
  std::shared_ptr<sio_socket> sock;
  {
    std::lock_guard lock(mu_);
    auto it = sockets_.find(nsp);
    if (it == sockets_.end() || (only && it->second.get() != only)) return;
    sock = it->second;
    sockets_.erase(it);
  }
  send_packet_text("4" + sio::encode(sio::packet{sio::packet_type::disconnect, nsp, 0, {}, {}}));
  server_.end_socket(sock, why);
}

void eio_session::close(disconnect_reason why) {
  std::map<std::string, std::shared_ptr<sio_socket>> sockets;
  std::shared_ptr<ws_session> ws, probe;
  std::shared_ptr<void> slot;
  reply_fn parked;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    sockets.swap(sockets_);
    ws = std::move(ws_);
    probe = std::move(probe_);
    parked = std::move(parked_);
    parked_ = nullptr;
    queue_.clear();
    partial_.reset();
    attachments_.clear();
    slot = std::move(slot_);
  }
  slot.reset();  // the admission slot is free from now on
  asio::post(ping_timer_.get_executor(), [self = shared_from_this()] {
    self->ping_timer_.cancel();
    self->connect_timer_.cancel();
    self->upgrade_timer_.cancel();
  });
  if (parked) parked(200, "6");  // release a waiting poll; its next request gets 400
  const bool by_client = why == disconnect_reason::client_close;
  if (ws) {
    const std::uint16_t code = by_client ? close_code::normal
                               : why == disconnect_reason::message_too_big ? close_code::message_too_big
                                                                           : close_code::going_away;
    ws->close(code, "", why);
  }
  if (probe) probe->close(close_code::going_away, "", why);
  // A lost transport (not a goodbye) keeps recoverable sockets for the recovery window.
  const bool lost = why == disconnect_reason::transport_error ||
                    why == disconnect_reason::heartbeat_timeout ||
                    why == disconnect_reason::idle_timeout;
  for (auto& [nsp, sock] : sockets) {
    if (lost && !sock->pid().empty() && sock->connected())
      server_.detach_socket(sock, why);
    else
      server_.end_socket(sock, why);
  }
  server_.unregister_eio(sid_);
}

}  // namespace skyrelay
