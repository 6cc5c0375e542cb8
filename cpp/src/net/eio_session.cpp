// eio_session, first part: the Engine.IO transport (polling, WebSocket and the upgrade,
// heartbeats, Engine.IO packets, sending, close). The Socket.IO layer on top of it (packets,
// CONNECT checks, namespace sockets, dispatch) is in eio_session_sio.cpp.
#include "skyrelay/net/eio_session.hpp"

#include <cassert>

#include "skyrelay/net/heartbeat_grid.hpp"
#include "skyrelay/net/session_context.hpp"
#include "skyrelay/net/sio_server.hpp"

namespace skyrelay {

namespace {
constexpr char record_separator = '\x1e';

frame_ptr text_packet(std::string text) { return make_message(std::move(text), 1, 0, false); }

// Header names and values never hold a NUL (Beast's parser refuses one), nor do an address
// and a query string (the request target's parser stops at one), so it can end each.
std::string pack(std::string_view remote, std::string_view query,
                 const std::vector<std::pair<std::string, std::string>>& headers) {
  std::size_t n = remote.size() + query.size() + 2;
  for (const auto& [name, value] : headers) n += name.size() + value.size() + 2;
  std::string out;
  out.reserve(n);
  out.append(remote).push_back('\0');
  out.append(query).push_back('\0');
  for (const auto& [name, value] : headers) {
    out.append(name).push_back('\0');
    out.append(value).push_back('\0');
  }
  return out;
}
}  // namespace

eio_session::eio_session(session_context& context, asio::io_context& ioc, std::string sid,
                         transport t, std::string remote, std::string_view scheme,
                         std::vector<std::pair<std::string, std::string>> headers,
                         std::string query, bool echo)
    : context_(context),
      sid_(std::move(sid)),
      // Only the Socket.IO connect hook reads the query (sio_connect_info::query).
      handshake_(pack(remote, context.hooks().on_sio_connect ? query : std::string_view(),
                      headers)),
      echo_(echo),
      https_(scheme == "https"),
      ex_(ioc.get_executor()),
      transport_(t),
      polling_(t == transport::polling ? std::make_unique<polling_state>() : nullptr),
      next_ping_(std::chrono::steady_clock::now() + context.config().eio_ping_interval) {}

eio_session::~eio_session() = default;

std::string_view eio_session::remote() const {
  const std::string_view all = handshake_;
  return all.substr(0, all.find('\0'));
}

std::string_view eio_session::query() const {
  const std::string_view all = handshake_;
  const auto start = all.find('\0') + 1;
  return all.substr(start, all.find('\0', start) - start);
}

std::vector<std::pair<std::string, std::string>> eio_session::headers() const {
  std::vector<std::pair<std::string, std::string>> out;
  std::string_view rest = handshake_;
  for (int i = 0; i < 2 && !rest.empty(); ++i) rest.remove_prefix(rest.find('\0') + 1);
  while (!rest.empty()) {
    const auto name_end = rest.find('\0');
    const auto value_end = name_end == rest.npos ? rest.npos : rest.find('\0', name_end + 1);
    if (value_end == rest.npos) break;  // not as pack() wrote it
    out.emplace_back(std::string(rest.substr(0, name_end)),
                     std::string(rest.substr(name_end + 1, value_end - name_end - 1)));
    rest.remove_prefix(value_end + 1);
  }
  return out;
}

void eio_session::hold(std::shared_ptr<void> slot) {
  auto& m = context_.get_metrics();
  m.add(m.local().of(transport_kind::polling).connections_opened);
  std::lock_guard lock(mu_);
  slot_ = std::move(slot);
}

// Only a polling session holds a slot of its own, and it gives it back once: when it upgrades
// or when it ends, whichever comes first. That is when its polling connection closes.
void eio_session::polling_ended() {
  auto& m = context_.get_metrics();
  m.add(m.local().of(transport_kind::polling).connections_closed);
}

const server_config& eio_session::config() const noexcept { return context_.config(); }

std::string eio_session::open_packet() const {
  const auto& cfg = context_.config();
  return "0" + eio::open_packet(sid_, transport_ == transport::polling && cfg.eio_allow_upgrades,
                                cfg.eio_ping_interval.count(), cfg.eio_ping_timeout.count(),
                                cfg.max_body_size);
}

void eio_session::start() {
  // Over WebSocket the transport's timer times the pings (ws_heartbeat_due).
  if (transport_ == transport::polling) arm_ping();
  log_event(context_.log(), log_source::conn, log_level::info, "connection_open", [&] {
    return std::vector<log_field>{
        {"sid", sid_},
        {"transport", std::string(echo_ ? "engineio" : "socketio")},
        {"remote", std::string(remote())},
        {"via", std::string(transport_ == transport::polling ? "polling" : "websocket")}};
  });
  if (echo_) return;  // no Socket.IO CONNECT is expected
  connect_timer_ = std::make_unique<net::context_timer>(ex_);
  connect_timer_->expires_after(context_.config().sio_connect_timeout);
  connect_timer_->async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec) return;
    bool any;
    {
      std::lock_guard lock(self->mu_);
      any = !self->sockets_.empty();
    }
    if (!any) self->close(disconnect_reason::heartbeat_timeout);
  });
}

std::chrono::steady_clock::time_point eio_session::heartbeat_due_locked() const {
  if (closed_ || lingering_) return std::chrono::steady_clock::time_point::max();
  // On the shared grid (heartbeat_grid.hpp): sessions due in one tick are pinged together.
  return net::heartbeat_due(awaiting_pong_ ? pong_deadline_ : next_ping_,
                            context_.config().eio_ping_interval);
}

void eio_session::heartbeat() {
  const auto& cfg = context_.config();
  bool ping = false;
  {
    std::lock_guard lock(mu_);
    if (closed_ || lingering_) return;
    const auto now = std::chrono::steady_clock::now();
    if (awaiting_pong_) {
      if (now < pong_deadline_) return;
    } else {
      if (now < next_ping_) return;
      ping = true;
      awaiting_pong_ = true;
      pong_deadline_ = now + cfg.eio_ping_timeout;
      // Every ping_interval from the first, whatever the grid's lateness; a ping that came
      // later than one interval (its pong was late) starts the count again.
      next_ping_ += cfg.eio_ping_interval;
      if (next_ping_ <= now) next_ping_ = now + cfg.eio_ping_interval;
    }
  }
  if (!ping) return close(disconnect_reason::heartbeat_timeout);
  // One immutable ping packet for every session, made once (see ws_session.cpp's ping).
  static const frame_ptr ping_packet = text_packet("2");
  send(ping_packet);
}

void eio_session::arm_ping() {
  std::chrono::steady_clock::time_point due;
  {
    std::lock_guard lock(mu_);
    // Once upgraded, the WebSocket's timer times the pings (on_upgrade told it).
    if (transport_ != transport::polling) return;
    due = heartbeat_due_locked();
  }
  if (due == std::chrono::steady_clock::time_point::max()) return;
  if (!ping_timer_) ping_timer_ = std::make_unique<net::context_timer>(ex_);
  ping_timer_->expires_at(due);
  ping_timer_->async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec) return;
    bool polling;
    {
      std::lock_guard lock(self->mu_);
      polling = self->transport_ == transport::polling;
    }
    if (!polling) return;
    self->heartbeat();
    self->arm_ping();
  });
}

std::chrono::steady_clock::time_point eio_session::ws_heartbeat_due(const ws_session& from) {
  std::lock_guard lock(mu_);
  if (ws_.get() != &from) return std::chrono::steady_clock::time_point::max();
  return heartbeat_due_locked();
}

void eio_session::on_ws_heartbeat(ws_session& from) {
  {
    std::lock_guard lock(mu_);
    if (ws_.get() != &from) return;
  }
  heartbeat();
}

// Polling --------------------------------------------------------------------------------

std::optional<std::string> eio_session::take_polling_body_locked() {
  auto& queue = polling_->queue;
  if (queue.empty()) return std::nullopt;
  std::string body;
  for (std::size_t i = 0; i < queue.size(); ++i) {
    if (i) body += record_separator;
    const auto& f = queue[i];
    if (f->ws_opcode == 2) {
      body += 'b';  // binary goes over polling as base64
      body += eio::base64_encode(f->payload());
    } else {
      f->append_payload(body);  // a text packet, type character included
    }
  }
  queue.clear();
  polling_->queue_bytes = 0;
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
    } else if (polling_->parked) {
      duplicate = true;
      previous = std::move(polling_->parked);
      polling_->parked = nullptr;
    } else if (upgrading_ || probe_) {
      // Mid-upgrade: the client's "2probe" and "5" may be in flight on the WebSocket (another
      // connection, maybe another thread, so this poll can overtake them). Hold the poll
      // briefly: if the upgrade completes it gets 400 like any poll after an upgrade, else a
      // noop.
      polling_->parked = std::move(reply);
      held_ = true;
      hold = true;
    } else {
      body = take_polling_body_locked();
      if (!body) polling_->parked = std::move(reply);
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
    asio::post(ex_, [self = shared_from_this()] {
      if (!self->upgrade_timer_)
        self->upgrade_timer_ = std::make_unique<net::context_timer>(self->ex_);
      self->upgrade_timer_->expires_after(std::chrono::milliseconds(50));
      self->upgrade_timer_->async_wait([self](boost::system::error_code ec) {
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
    if (polling_) {
      r = std::move(polling_->parked);
      polling_->parked = nullptr;
    }
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
  auto& traffic = context_.get_metrics().local().of(transport_kind::polling);
  metrics::add(traffic.bytes_in, body.size());
  if (packets) metrics::add(traffic.messages_in, packets->size());
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
  set_wire_locked(ws_);
}

void eio_session::set_wire_locked(const std::shared_ptr<ws_session>& ws) {
  // Once only: a sender may still hold the pointer it read, so the first stays alive.
  if (closed_ || wire_keep_ || !ws) return;
  wire_keep_ = ws;
  wire_.store(ws.get(), std::memory_order_release);
  // Its sockets deliver into it from now on without this session (sio_socket::set_wire).
  for (auto& [nsp, sock] : sockets_) sock->set_wire(ws.get());
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
    case eio::packet_type::ping:
      return on_ping(p);
    case eio::packet_type::upgrade:
      return on_upgrade();
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
    case eio::packet_type::close:
      return on_close_packet();
    case eio::packet_type::noop:
      return;
    case eio::packet_type::open:
      close(disconnect_reason::protocol_error);
      return;
  }
}

void eio_session::on_ping(const eio::packet& p) {
  // "2probe" on an upgrade candidate: answer on that socket and release the poll.
  std::shared_ptr<ws_session> probe;
  reply_fn waiting;  // a poll parked before the upgrade began; a held one waits for "5"
  {
    std::lock_guard lock(mu_);
    if (p.data == "probe" && probe_) {
      probe = probe_;
      upgrading_ = true;
      if (!held_) {
        waiting = std::move(polling_->parked);
        polling_->parked = nullptr;
      }
    }
  }
  if (probe) {
    probe->deliver(text_packet("3probe"), overflow_policy::disconnect);
    if (waiting) waiting(200, "6");
  } else {
    send(text_packet("3" + p.data));
  }
}

void eio_session::on_upgrade() {
  std::shared_ptr<ws_session> ws;
  std::shared_ptr<void> slot;
  reply_fn held;
  {
    std::lock_guard lock(mu_);
    if (!probe_) return;
    ws_ = std::move(probe_);
    probe_.reset();
    transport_ = transport::websocket;
    upgrading_ = false;
    ws = ws_;
    // What polling had not sent yet goes first: pushed (no I/O) before any sender can reach
    // the WebSocket.
    for (auto& f : polling_->queue) ws->deliver(f, overflow_policy::disconnect);
    polling_->queue.clear();
    polling_->queue_bytes = 0;
    set_wire_locked(ws_);
    slot = std::move(slot_);  // the WebSocket's connection slot counts the session now
    held = std::move(polling_->parked);
    polling_->parked = nullptr;
    held_ = false;
  }
  if (slot) polling_ended();
  slot.reset();
  ws->heartbeat_changed();  // its timer times the pings from now on
  // A poll held during the upgrade is now a poll after it. Answer it after the WebSocket's
  // pending flush, so the client has "3probe" before this answer.
  if (held)
    ws->post([held = std::move(held)] { held(400, eio::error_body(eio::error_code::unknown_sid)); });
}

void eio_session::on_close_packet() {
  // Over polling, a client closes with a POST while its GET is (or is about to be) pending.
  // That GET must be answered with a noop, so when it has not arrived yet, the session
  // lingers briefly for it instead of vanishing under it.
  bool linger = false;
  {
    std::lock_guard lock(mu_);
    if (transport_ == transport::polling && !polling_->parked && !closed_) {
      lingering_ = true;
      linger = true;
    }
  }
  if (!linger) {
    close(disconnect_reason::client_close);
    return;
  }
  // Timers are touched only on their own executor (requests arrive on any I/O thread).
  asio::post(ex_, [self = shared_from_this()] {
    if (!self->ping_timer_) self->ping_timer_ = std::make_unique<net::context_timer>(self->ex_);
    self->ping_timer_->expires_after(std::chrono::milliseconds(100));
    self->ping_timer_->async_wait([self](boost::system::error_code ec) {
      if (!ec) self->close(disconnect_reason::client_close);
    });
  });
}

// Sending --------------------------------------------------------------------------------

void eio_session::send_packet_text(std::string text) { send(text_packet(std::move(text))); }

void eio_session::send(const frame_ptr& f, overflow_policy policy) {
  // Over WebSocket: straight into its outbox, which keeps the order and the bounds.
  if (auto* ws = wire_.load(std::memory_order_acquire)) return ws->deliver(f, policy);
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
  // One push: a binary event's attachments must follow it with nothing between them (a
  // reply or another event sent by another thread meanwhile breaks the client's decoder).
  if (auto* w = wire_.load(std::memory_order_acquire))
    return w->deliver_group(frames, overflow_policy::disconnect);
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
      const auto& cfg = context_.config();
      auto& pl = *polling_;
      for (const auto& f : frames) {
        pl.queue.push_back(f);
        pl.queue_bytes += f->wire_size();
      }
      overflow = pl.queue.size() > cfg.outbox_max_frames || pl.queue_bytes > cfg.outbox_max_bytes;
      overflowed_ = overflow;
      if (!overflow && pl.parked && !upgrading_) {
        parked = std::move(pl.parked);
        pl.parked = nullptr;
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
    context_.get_metrics().limit_hit(limit_kind::outbox);
    context_.get_metrics().drop(drop_reason::slow_consumer);
    asio::post(ex_, [self = shared_from_this()] {
      self->close(disconnect_reason::slow_consumer);
    });
    return;
  }
  if (parked) parked(200, std::move(body));
}

void eio_session::close(disconnect_reason why) {
  socket_list sockets;
  std::shared_ptr<ws_session> ws, probe;
  std::shared_ptr<void> slot;
  reply_fn parked;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    wire_.store(nullptr, std::memory_order_release);
    for (auto& [nsp, sock] : sockets_) sock->set_wire(nullptr);
    sockets.swap(sockets_);
    ws = std::move(ws_);
    probe = std::move(probe_);
    if (polling_) {
      parked = std::move(polling_->parked);
      polling_->parked = nullptr;
      polling_->queue.clear();
    }
    partial_.reset();
    slot = std::move(slot_);
  }
  if (slot) polling_ended();
  slot.reset();  // the admission slot is free from now on
  log_event(context_.log(), log_source::conn, log_level::info, "connection_close", [&] {
    return std::vector<log_field>{{"sid", sid_},
                                  {"transport", std::string(echo_ ? "engineio" : "socketio")},
                                  {"reason", std::string(to_string(why))}};
  });
  if (why == disconnect_reason::slow_consumer)
    log_event(context_.log(), log_source::limits, log_level::warning, "slow_consumer", [&] {
      return std::vector<log_field>{{"sid", sid_}, {"limit", std::string("outbox_full")}};
    });
  asio::post(ex_, [self = shared_from_this()] {
    if (self->ping_timer_) self->ping_timer_->cancel();
    self->connect_timer_.reset();  // a pending wait completes with operation_aborted
    self->upgrade_timer_.reset();
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
      context_.sio().detach_socket(sock, why);
    else
      context_.sio().end_socket(sock, why);
  }
  context_.sio().unregister_eio(sid_);
}

}  // namespace skyrelay
