#include "skyrelay/net/server.hpp"

#include <stdexcept>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>

#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/core/clock.hpp"
#include "skyrelay/net/eio_session.hpp"
#include "skyrelay/net/listener.hpp"
#include "skyrelay/net/sio_socket.hpp"
#include "skyrelay/net/ws_session.hpp"
#include "skyrelay/proto/json_protocol.hpp"
#include "skyrelay/proto/socketio.hpp"
#include "skyrelay/proto/ws_frame.hpp"

namespace skyrelay {

namespace {
unsigned thread_count(unsigned configured) {
  if (configured) return configured;
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

// Counts an error frame or failed response sent on the application's behalf, when its code is
// one of ours (an application's own RequestError codes are not).
void count_error(metrics& m, std::string_view code) {
  for (std::size_t i = 0; i < static_cast<std::size_t>(error_code::count_); ++i)
    if (to_string(static_cast<error_code>(i)) == code) return m.error(static_cast<error_code>(i));
}


// A Server-Sent Events block. Line breaks cannot appear inside a field, so the event name's are
// replaced by spaces and the data's (JSON allows them as whitespace) start new data lines,
// which the browser joins back with "\n".
frame_ptr encode_sse(const std::string& id, const publication& p, const publish_meta& meta) {
  std::string out;
  out.reserve(p.data.size() + p.event.size() + id.size() + 24);
  out += "id: ";
  out += id;
  out += "\nevent: ";
  for (char c : p.event) out += (c == '\n' || c == '\r') ? ' ' : c;
  out += "\ndata: ";
  for (std::size_t i = 0; i < p.data.size(); ++i) {
    const char c = p.data[i];
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < p.data.size() && p.data[i + 1] == '\n') ++i;
      out += "\ndata: ";
    } else {
      out += c;
    }
  }
  out += "\n\n";
  return make_frame(std::move(out), meta.publish_ns, true);
}

frame_ptr encode_json_ws(const publication& p, const publish_meta& meta) {
  std::string payload = proto::event(p.event, meta.topic, meta.seq, meta.ts, p.data);
  std::string bytes;
  bytes.reserve(payload.size() + 10);
  ws::append_header(bytes, ws::opcode::text, payload.size());
  bytes += payload;
  return make_frame(std::move(bytes), meta.publish_ns, true);
}
// The most recent OpenSSL error as text, or `fallback`; clears the error queue.
std::string openssl_reason(const boost::system::error_code& ec) {
  std::string out = ec ? ec.message() : std::string();
  if (unsigned long e = ERR_peek_last_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out = buf;
  }
  ERR_clear_error();
  return out;
}

// ALPN: this port speaks HTTP/1.1 (WebSocket upgrades included) and nothing else.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  static const unsigned char ours[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, outlen, ours, sizeof ours, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;  // no ALPN answer: the client may still speak HTTP/1.1
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

// The server's TLS context: TLS 1.2 or later, no compression, OpenSSL's default ciphers.
// Throws std::invalid_argument naming the file and OpenSSL's reason when a file will not load
// or the key does not belong to the certificate.
std::unique_ptr<boost::asio::ssl::context> make_tls_context(const server_config& cfg) {
  namespace ssl = boost::asio::ssl;
  if (cfg.tls_cert_file.empty() != cfg.tls_key_file.empty())
    throw std::invalid_argument("TLS needs both a certificate file and a key file");
  if (cfg.tls_cert_file.empty()) return nullptr;
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::no_compression | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ERR_clear_error();
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(cfg.tls_cert_file, ec);
  if (ec)
    throw std::invalid_argument("TLS: cannot load the certificate chain from '" +
                                cfg.tls_cert_file + "': " + openssl_reason(ec));
  ctx->use_private_key_file(cfg.tls_key_file, ssl::context::pem, ec);
  if (ec)
    throw std::invalid_argument("TLS: cannot load the private key from '" + cfg.tls_key_file +
                                "' (or it does not match the certificate): " +
                                openssl_reason(ec));
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
    throw std::invalid_argument("TLS: the private key in '" + cfg.tls_key_file +
                                "' does not match the certificate in '" + cfg.tls_cert_file +
                                "': " + openssl_reason({}));
  SSL_CTX_set_alpn_select_cb(ctx->native_handle(), select_alpn, nullptr);
  return ctx;
}
}  // namespace

server::server(server_config cfg, app_hooks hooks)
    : cfg_(std::move(cfg)),
      hooks_(std::move(hooks)),
      metrics_(thread_count(cfg_.io_threads)),
      dispatcher_(cfg_.dispatch_queue_max) {
  if (cfg_.sio_recovery_window.count() > 0 &&
      (cfg_.history_max_events == 0 || cfg_.sio_recovery_window > cfg_.history_max_age))
    throw std::invalid_argument(
        "the Socket.IO recovery window needs history that lasts at least as long "
        "(history_max_events > 0 and history_max_age >= the recovery window)");
  tls_ = make_tls_context(cfg_);
  broker_ = make_broker(cfg_.broker, hub_);
  // Under the hub's room lock: count and pass on, nothing else (see broker.hpp).
  hub_.set_channel_listener([this](const channel& room, bool has_members) {
    auto& shard = metrics_.local();
    if (has_members) {
      metrics_.add(shard.broker_subscribes);
      broker_->subscribe(room);
    } else {
      metrics_.add(shard.broker_unsubscribes);
      broker_->unsubscribe(room);
    }
  });
  hub_.set_history(cfg_.history_max_events, cfg_.history_max_age);
  hub_.set_max_rooms(cfg_.max_rooms_per_connection);
  // The hub knows no wire format: each transport's encoder is registered here, and its
  // connections name it by the id they find in encoders(). The JSON protocol and SSE carry
  // `data`; Socket.IO carries `args` (else `data` as the one argument) and the binary parts.
  encoders_.json_ws = hub_.add_encoder(encode_json_ws);
  encoders_.sse = hub_.add_encoder([this](const publication& p, const publish_meta& meta) {
    return encode_sse(hub_.event_id(meta.id), p, meta);
  });
  // The Engine.IO message carrying a Socket.IO EVENT with the publication's arguments (and,
  // with recovery on, the publication id as the offset argument); binary parts follow it.
  encoders_.socketio = hub_.add_encoder([this](const publication& p, const publish_meta& meta) {
    std::string args = p.args ? *p.args : p.data;
    const bool recovery = cfg_.sio_recovery_window.count() > 0;
    if (recovery) args += (args.empty() ? "\"" : ",\"") + std::to_string(meta.id) + "\"";
    const std::size_t n = p.binary ? p.binary->size() : 0;
    frame f{"4" + sio::event(p.nsp, p.event, args, n), meta.publish_ns, true, 1,
            recovery ? meta.id : 0, {}};
    if (n) {
      f.followers.reserve(n);
      for (const auto& a : *p.binary) f.followers.push_back(make_message(a, 2, 0, true));
    }
    return std::make_shared<const frame>(std::move(f));
  });
}

server::~server() { stop(); }

void server::start() {
  if (running_) return;
  const unsigned n = thread_count(cfg_.io_threads);
  contexts_.clear();
  guards_.clear();
  for (unsigned i = 0; i < n; ++i) {
    contexts_.push_back(std::make_unique<asio::io_context>(1));
    guards_.push_back(asio::make_work_guard(*contexts_.back()));
  }
  // An IP literal, else a host name such as "localhost" (its first address).
  boost::system::error_code ec;
  tcp::endpoint endpoint(asio::ip::make_address(cfg_.host, ec), cfg_.port);
  if (ec) {
    tcp::resolver resolver(*contexts_[0]);
    auto results = resolver.resolve(cfg_.host, std::to_string(cfg_.port));
    endpoint = results.begin()->endpoint();
  }
  listener_ = std::make_shared<listener>(*contexts_[0], endpoint, *this);
  port_ = listener_->port();
  dispatcher_.start();
  started_at_ = std::chrono::steady_clock::now();
  for (unsigned i = 0; i < n; ++i) {
    threads_.emplace_back([this, i] {
      metrics::bind_thread(i);
      contexts_[i]->run();
    });
  }
  listener_->run();
  sweep_timer_ = std::make_unique<asio::steady_timer>(*contexts_[0]);
  sweep_later();
  running_ = true;
}

void server::sweep_later() {
  sweep_timer_->expires_after(std::chrono::seconds(1));
  sweep_timer_->async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    hub_.sweep();
    sweep_later();
  });
}

void server::stop() {
  if (!running_.exchange(false)) return;
  listener_->close();
  asio::post(*contexts_[0], [this] { sweep_timer_->cancel(); });
  std::vector<std::shared_ptr<ws_session>> open;
  {
    std::lock_guard lock(sessions_mu_);
    for (auto& [sid, weak] : sessions_)
      if (auto s = weak.lock()) open.push_back(std::move(s));
  }
  std::vector<std::shared_ptr<eio_session>> eio_open;
  {
    std::lock_guard lock(sessions_mu_);
    for (auto& [sid, s] : eio_sessions_) eio_open.push_back(s);
  }
  for (auto& s : eio_open) s->close(disconnect_reason::server_shutdown);
  eio_open.clear();
  std::unordered_map<std::string, std::shared_ptr<sio_socket>> waiting;
  {
    std::lock_guard lock(sessions_mu_);
    waiting.swap(detached_);
  }
  for (auto& [pid, s] : waiting) end_socket(s, disconnect_reason::server_shutdown);
  for (auto& s : open) s->close(close_code::going_away, "server shutdown",
                                disconnect_reason::server_shutdown);
  open.clear();
  const auto deadline = std::chrono::steady_clock::now() + cfg_.drain_timeout;
  while (session_count() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // Whatever did not finish its close handshake in time is cut when its context stops.
  guards_.clear();
  for (auto& c : contexts_) c->stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  {
    // No I/O thread runs now, so sessions can be ended from here. They must be gone (out of the
    // hub, sockets closed) before their contexts are destroyed.
    std::vector<std::shared_ptr<ws_session>> left;
    {
      std::lock_guard lock(sessions_mu_);
      for (auto& [sid, weak] : sessions_)
        if (auto s = weak.lock()) left.push_back(std::move(s));
    }
    for (auto& s : left) s->terminate();
    // Engine.IO sessions hold timers of these contexts: drop them before the contexts go.
    std::lock_guard lock(sessions_mu_);
    eio_sessions_.clear();
    sockets_.clear();
    http_waiting_.clear();
  }
  listener_.reset();
  sweep_timer_.reset();
  contexts_.clear();  // destroys pending handlers, and with them the remaining sessions
  dispatcher_.stop();
  std::lock_guard lock(sessions_mu_);
  sessions_.clear();
  eio_sessions_.clear();
  sockets_.clear();
}

asio::io_context& server::next_context() noexcept {
  return *contexts_[next_context_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()];
}

std::size_t server::publish(const publication& p, publish_meta* meta) {
  // The memory broker hands publications straight to the hub; a cluster broker (Redis, issue
  // 15) carries them to every node and delivers what comes back through hub_.publish.
  const std::size_t n = broker_->publish(p, meta);
  auto& shard = metrics_.local();
  metrics_.add(shard.broker_publications);
  metrics_.add(shard.publications);
  metrics_.add(shard.deliveries, n);
  return n;
}

server::connection_slot server::admit(const std::string& ip, connection_refusal& why,
                                      bool session) {
  why = connection_refusal::none;
  if (cfg_.max_connections && tcp_total_.load() >= cfg_.max_connections) {
    why = connection_refusal::total;
    return nullptr;
  }
  const bool loopback = ip.starts_with("127.") || ip == "::1" || ip.starts_with("::ffff:127.");
  if (loopback && !cfg_.limit_loopback) {
    ++tcp_total_;
    return connection_slot(static_cast<void*>(this), [this](void*) { --tcp_total_; });
  }
  {
    std::lock_guard lock(ip_mu_);
    const rate_spec& rate = session ? cfg_.new_sessions_per_ip : cfg_.new_connections_per_ip;
    auto& buckets = session ? new_sessions_per_ip_ : new_per_ip_;
    if (rate.rate > 0) {
      const std::int64_t now = steady_ns();
      auto [b, fresh] = buckets.try_emplace(ip, rate, now);
      std::int64_t wait_ns = 0;
      if (!b->second.take(now, wait_ns)) {
        why = connection_refusal::rate;
        return nullptr;
      }
      // Forget buckets that have filled up again, a few at a time, so the map stays small.
      if (buckets.size() > 1024) {
        std::size_t checked = 0;
        for (auto it = buckets.begin(); it != buckets.end() && checked < 64; ++checked)
          it = it->second.full(now) ? buckets.erase(it) : std::next(it);
      }
    }
    auto& n = per_ip_[ip];
    if (cfg_.max_connections_per_ip && n >= cfg_.max_connections_per_ip) {
      why = connection_refusal::per_ip;
      return nullptr;
    }
    ++n;
  }
  ++tcp_total_;
  // The deleter gives the slot back; the server outlives every connection (stop() ends them).
  return connection_slot(static_cast<void*>(this), [this, ip](void*) {
    --tcp_total_;
    std::lock_guard lock(ip_mu_);
    auto it = per_ip_.find(ip);
    if (it != per_ip_.end() && --it->second == 0) per_ip_.erase(it);
  });
}

bool server::accept(const std::string& sid, std::optional<std::vector<std::string>> roles) {
  auto s = find_session(sid);
  if (!s) return false;
  if (roles && cfg_.roles_from_connect) s->grant_roles(std::move(*roles));
  // The namespace's and the handshake topics' requirements, on the roles the hook left (when
  // it may not grant any, the handshake met them already before the hook).
  if (cfg_.roles_from_connect) {
    if (auto refusal = s->role_refusal()) {
      s->refuse_forbidden(std::move(refusal->message));
      return false;
    }
  }
  s->accept();
  return true;
}

bool server::refuse(const std::string& sid, unsigned status, std::string message) {
  auto s = find_session(sid);
  if (!s) return false;
  s->refuse(status, std::move(message));
  return true;
}

bool server::respond(const std::string& sid, const std::string& request_id, bool ok,
                     const std::string& data_or_code, const std::string& message) {
  auto s = find_session(sid);
  if (!s) return false;
  if (ok) {
    s->send_text(proto::response_ok(request_id, data_or_code));
  } else {
    count_error(metrics_, data_or_code);
    s->send_text(proto::response_error(request_id, data_or_code, message));
  }
  return true;
}

bool server::disconnect(const std::string& sid, std::uint16_t code, std::string reason) {
  auto s = find_session(sid);
  if (!s) return false;
  s->close(code, std::move(reason), disconnect_reason::server_disconnect);
  return true;
}

bool server::send_error(const std::string& sid, const std::string& code,
                        const std::string& message) {
  auto s = find_session(sid);
  if (!s) return false;
  count_error(metrics_, code);
  s->send_text(proto::error(code, message, ""));
  return true;
}

bool server::sio_accept(const std::string& sid, std::optional<std::vector<std::string>> roles) {
  auto s = find_socket(sid);
  if (!s) return false;
  if (roles && cfg_.roles_from_connect) s->grant_roles(std::move(*roles));
  if (cfg_.access) {
    if (auto refusal = cfg_.access->check_namespace(s->nsp(), *s->roles())) {
      auto& m = metrics_;
      m.add(m.local().forbidden_namespace);
      m.add(m.local().handshakes_rejected);
      sio_refuse(sid, refusal->message, R"({"code":"forbidden"})");
      return false;
    }
  }
  if (auto r = s->take_resume()) return resume_socket(s, r->offset, std::move(r->auth));
  return s->accept();
}

bool server::resume_socket(const std::shared_ptr<sio_socket>& s, std::uint64_t offset,
                           std::string auth) {
  auto session = s->session();
  if (!session) {
    end_socket(s, disconnect_reason::transport_error);
    return false;
  }
  recheck_rooms(*s);  // before the replay, so that nothing of a room it left is replayed
  const bool resumed = hub_.resume(s->sid(), offset, [&](std::vector<frame_ptr>& missed) {
    return s->reattach(session, offset, missed);
  });
  if (resumed) {
    s->arm_expiry(session->executor(), *this);
    return true;
  }
  // Too late: history lost some of what it missed. It ends, and the client gets a new socket
  // for the same CONNECT (the hook runs again, for that one).
  session->forget_socket(s->nsp());
  end_socket(s, disconnect_reason::transport_error);
  session->open_socket(s->nsp(), std::move(auth), s->identity());
  return false;
}

void server::recheck_rooms(const sio_socket& s) {
  if (!cfg_.access || !cfg_.access->has_room_rules()) return;
  const auto roles = s.roles();
  for (const auto& room : hub_.rooms_of(s.sid())) {
    if (!cfg_.access->check_room(room.nsp, room.room, *roles)) continue;
    hub_.leave(s.sid(), room);
    metrics_.add(metrics_.local().forbidden_room);
  }
}

bool server::sio_refuse(const std::string& sid, const std::string& message,
                        const std::string& data_json) {
  auto s = find_socket(sid);
  if (!s) return false;
  auto session = s->session();
  end_socket(s, disconnect_reason::server_disconnect);  // never accepted: no on_disconnect
  if (session) {
    session->forget_socket(s->nsp());
    session->send(make_message("4" + sio::connect_error(s->nsp(), message, data_json), 1, 0,
                               false));
  }
  return true;
}

bool server::sio_send(const std::string& sid, std::string packet,
                      std::vector<std::string> attachments) {
  auto s = find_socket(sid);
  if (!s) return false;
  std::vector<frame_ptr> frames;
  frames.reserve(attachments.size() + 1);
  frames.push_back(make_message("4" + packet, 1, steady_ns(), true));
  for (auto& a : attachments) frames.push_back(make_message(std::move(a), 2, 0, true));
  s->deliver_all(std::move(frames));
  return true;
}

bool server::sio_emit(const std::string& sid, const std::string& event, const std::string& args,
                      std::vector<std::string> attachments, std::int64_t ack_id) {
  auto s = find_socket(sid);
  if (!s) return false;
  std::optional<std::uint64_t> id;
  if (ack_id >= 0) id = static_cast<std::uint64_t>(ack_id);
  auto send = [&](std::uint64_t offset) {
    std::string full = args;
    if (offset) full += (full.empty() ? "\"" : ",\"") + std::to_string(offset) + "\"";
    std::string packet = sio::event(s->nsp(), event, full, attachments.size(), id);
    std::vector<frame_ptr> frames;
    frames.reserve(attachments.size() + 1);
    frames.push_back(make_message("4" + packet, 1, steady_ns(), true, offset));
    for (auto& a : attachments) frames.push_back(make_message(std::move(a), 2, 0, true));
    s->deliver_all(std::move(frames));
  };
  // With recovery, the event carries a publication id as its offset, taken in order with
  // publications so that the client's last offset tells exactly what it has seen.
  if (cfg_.sio_recovery_window.count() > 0 && !s->pid().empty())
    hub_.ordered(send);
  else
    send(0);
  return true;
}

bool server::sio_ack(const std::string& sid, std::uint64_t id, const std::string& args,
                     std::vector<std::string> attachments) {
  auto s = find_socket(sid);
  if (!s) return false;
  sio::packet p{attachments.empty() ? sio::packet_type::ack : sio::packet_type::binary_ack,
                s->nsp(), attachments.size(), id, args};
  std::string packet = sio::encode(p);
  return sio_send(sid, std::move(packet), std::move(attachments));
}

bool server::sio_disconnect(const std::string& sid) {
  auto s = find_socket(sid);
  if (!s) return false;
  if (auto session = s->session()) session->disconnect_socket(s->nsp());
  return true;
}

auth::identity_ptr server::identity_of(const std::string& sid) const {
  if (auto s = find_session(sid)) return s->identity();
  if (auto s = find_socket(sid)) return s->identity();
  return nullptr;
}

std::vector<std::string> server::roles_of(const std::string& sid) const {
  if (auto s = find_session(sid)) return *s->roles();
  if (auto s = find_socket(sid)) return *s->roles();
  return {};
}

void server::expire_socket(const std::shared_ptr<sio_socket>& s) {
  auto session = s->session();
  if (!session) {
    // Detached, waiting for its client to come back: it will not.
    bool waiting = false;
    {
      std::lock_guard lock(sessions_mu_);
      auto it = detached_.find(s->pid());
      if (it != detached_.end() && it->second == s) {
        detached_.erase(it);
        waiting = true;
      }
    }
    if (waiting) end_socket(s, disconnect_reason::token_expired);
    return;
  }
  if (!s->accepted()) {
    // Still waiting for the connect hook: refused, as a CONNECT with this token would be now.
    sio_refuse(s->sid(), "token expired", R"({"code":"expired"})");
    return;
  }
  // The client learns why (a "token_expired" event), then gets DISCONNECT.
  std::vector<frame_ptr> frames;
  frames.push_back(make_message(
      "4" + sio::event(s->nsp(), "token_expired",
                       R"({"code":"token_expired","message":"token expired"})"),
      1, steady_ns(), false));
  s->deliver_all(std::move(frames));
  session->disconnect_socket(s->nsp(), disconnect_reason::token_expired, s.get());
}

void server::end_socket(const std::shared_ptr<sio_socket>& s, disconnect_reason why) {
  const bool was_connected = s->accepted();
  s->mark_closed();
  hub_.remove(s->sid());
  {
    std::lock_guard lock(sessions_mu_);
    sockets_.erase(s->sid());
  }
  if (!was_connected) return;
  metrics_.disconnect(why);
  if (hooks_.on_disconnect) {
    dispatcher_.post_always([this, sid = s->sid(), why, id = s->identity()] {
      hooks_.on_disconnect(sid, why, id);
    });
  }
}

std::uint64_t server::park_http(http_reply_fn reply) {
  std::lock_guard lock(sessions_mu_);
  const std::uint64_t id = next_http_id_++;
  http_waiting_.emplace(id, std::move(reply));
  return id;
}

bool server::http_reply(std::uint64_t id, unsigned status,
                        std::vector<std::pair<std::string, std::string>> headers,
                        std::string body) {
  http_reply_fn reply;
  {
    std::lock_guard lock(sessions_mu_);
    auto it = http_waiting_.find(id);
    if (it == http_waiting_.end()) return false;
    reply = std::move(it->second);
    http_waiting_.erase(it);
  }
  reply(status, std::move(headers), std::move(body));
  return true;
}

void server::detach_socket(const std::shared_ptr<sio_socket>& s, disconnect_reason why) {
  s->detach();
  {
    std::lock_guard lock(sessions_mu_);
    detached_[s->pid()] = s;
  }
  auto timer = std::make_shared<asio::steady_timer>(next_context(), cfg_.sio_recovery_window);
  timer->async_wait([this, timer, s, why](boost::system::error_code ec) {
    if (ec) return;
    bool expired = false;
    {
      std::lock_guard lock(sessions_mu_);
      auto it = detached_.find(s->pid());
      if (it != detached_.end() && it->second == s) {
        detached_.erase(it);
        expired = true;
      }
    }
    if (expired) end_socket(s, why);
  });
}

std::shared_ptr<sio_socket> server::take_detached(const std::string& pid, const std::string& nsp) {
  std::lock_guard lock(sessions_mu_);
  auto it = detached_.find(pid);
  if (it == detached_.end() || it->second->nsp() != nsp) return nullptr;
  auto s = it->second;
  detached_.erase(it);
  return s;
}

void server::register_eio(const std::shared_ptr<eio_session>& s) {
  std::lock_guard lock(sessions_mu_);
  eio_sessions_[s->sid()] = s;
}

void server::unregister_eio(const std::string& sid) {
  std::lock_guard lock(sessions_mu_);
  eio_sessions_.erase(sid);
}

std::shared_ptr<eio_session> server::find_eio(const std::string& sid) const {
  std::lock_guard lock(sessions_mu_);
  auto it = eio_sessions_.find(sid);
  return it == eio_sessions_.end() ? nullptr : it->second;
}

void server::register_socket(const std::shared_ptr<sio_socket>& s) {
  std::lock_guard lock(sessions_mu_);
  sockets_[s->sid()] = s;
}

std::shared_ptr<sio_socket> server::find_socket(const std::string& sid) const {
  std::lock_guard lock(sessions_mu_);
  auto it = sockets_.find(sid);
  return it == sockets_.end() ? nullptr : it->second.lock();
}

double server::uptime_seconds() const {
  if (!running_) return 0.0;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
}

std::string server::health_json() const {
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "{\"status\":\"ok\",\"uptime_s\":%.3f,\"connections\":%zu,\"rooms\":%zu",
                uptime_seconds(), hub_.connection_count(), hub_.room_count());
  // The transports whose endpoints are on, by their option names.
  std::string out = buf;
  out += ",\"transports\":[";
  const char* sep = "";
  for (auto [on, name] : {std::pair{cfg_.json_protocol, "\"json_protocol\""},
                          std::pair{cfg_.sse, "\"sse\""},
                          std::pair{cfg_.socketio, "\"socketio\""}}) {
    if (!on) continue;
    out += sep;
    out += name;
    sep = ",";
  }
  out += "]}";
  return out;
}

std::string server::metrics_text() const {
  return metrics_.prometheus(hub_.connection_count(), hub_.room_count(), dispatcher_.queued(),
                             uptime_seconds(), hub_.history_entries(), hub_.closed_sid_count());
}

void server::register_session(const std::shared_ptr<ws_session>& s) {
  std::lock_guard lock(sessions_mu_);
  sessions_[s->sid()] = s;
}

void server::unregister_session(const std::string& sid) {
  std::lock_guard lock(sessions_mu_);
  sessions_.erase(sid);
}

std::shared_ptr<ws_session> server::find_session(const std::string& sid) const {
  std::lock_guard lock(sessions_mu_);
  auto it = sessions_.find(sid);
  return it == sessions_.end() ? nullptr : it->second.lock();
}

std::size_t server::session_count() const {
  std::lock_guard lock(sessions_mu_);
  return sessions_.size();
}

}  // namespace skyrelay
