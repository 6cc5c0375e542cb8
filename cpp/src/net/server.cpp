#include "skyrelay/net/server.hpp"

#include <unistd.h>

#include <algorithm>
#include <future>
#include <latch>
#include <stdexcept>
#include <utility>

#include <boost/asio/ssl/context.hpp>
#include <nlohmann/json.hpp>

#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/broker/redis_broker.hpp"
#include "skyrelay/broker/redis_limits.hpp"
#include "skyrelay/broker/redis_state.hpp"
#include "skyrelay/core/thread_name.hpp"
#include "skyrelay/net/descriptor_tables.hpp"
#include "skyrelay/net/http_session.hpp"
#include "skyrelay/net/listener.hpp"
#include "skyrelay/net/manager_bridge.hpp"
#include "skyrelay/net/process_metrics.hpp"
#include "skyrelay/net/worker_handoff.hpp"
#include "skyrelay/net/push_session.hpp"
#include "skyrelay/net/sio_socket.hpp"
#include "skyrelay/net/tls_context.hpp"
#include "skyrelay/net/turn_end_wake.hpp"
#include "skyrelay/net/uring_writer.hpp"
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

// The I/O threads: io_threads, else one per core; with per-thread descriptor tables and
// io_threads left at 0, as many tables as max_connections needs (at least one per core, at
// most 256).
unsigned io_thread_count(const server_config& cfg) {
  const unsigned n = thread_count(cfg.io_threads);
  if (cfg.io_threads != 0 || cfg.descriptor_tables != "per_thread" || cfg.max_connections == 0)
    return n;
  std::size_t room = 0;
  try {
    room = net::descriptor_tables::room_per_table();
  } catch (const std::exception&) {
  }
  if (room == 0) return n;  // start() says why
  const std::size_t need = (cfg.max_connections + room - 1) / room;
  return static_cast<unsigned>(std::clamp<std::size_t>(need, n, 256));
}

// Counts an error frame or failed response sent on the application's behalf, when its code is
// one of ours (an application's own RequestError codes are not).
void count_error(metrics& m, std::string_view code) {
  for (std::size_t i = 0; i < static_cast<std::size_t>(error_code::count_); ++i)
    if (to_string(static_cast<error_code>(i)) == code) return m.error(static_cast<error_code>(i));
}

// A Server-Sent Events block, shared by every stream: its `id:` line is each stream's own (its
// cursor, see sse_session), written in front of it by the stream's writer from the positions
// the frame carries. Line breaks cannot appear inside a field, so the event name's are
// replaced by spaces and the data's (JSON allows them as whitespace) start new data lines,
// which the browser joins back with "\n".
frame_ptr encode_sse(const publication& p, const publish_meta& meta) {
  std::string out;
  out.reserve(p.data.size() + p.event.size() + 24);
  out += "event: ";
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
  frame f;  // a data frame (is_data)
  f.bytes = std::move(out);
  f.publish_ns = meta.publish_ns;
  f.positions = meta.positions;
  return std::make_shared<const frame>(std::move(f));
}

frame_ptr encode_json_ws(const publication& p, const publish_meta& meta) {
  std::string payload = proto::event(p.event, meta.topic, meta.seq, meta.ts, p.data);
  std::string bytes;
  bytes.reserve(payload.size() + 10);
  ws::append_header(bytes, ws::opcode::text, payload.size());
  bytes += payload;
  return make_frame(std::move(bytes), meta.publish_ns, true);
}
}  // namespace

server::server(server_config cfg, app_hooks hooks)
    : cfg_(std::move(cfg)),
      hooks_(std::move(hooks)),
      log_(cfg_.log_queue_max),
      metrics_(io_thread_count(cfg_)),
      dispatcher_(cfg_.dispatch_queue_max),
      admission_(cfg_),
      sio_(cfg_, hooks_, hub_, metrics_, dispatcher_, [this]() -> asio::io_context& {
        return next_context();
      }) {
  if (cfg_.sio_recovery_window.count() > 0 &&
      (cfg_.history_max_events == 0 || cfg_.sio_recovery_window > cfg_.history_max_age))
    throw std::invalid_argument(
        "the Socket.IO recovery window needs history that lasts at least as long "
        "(history_max_events > 0 and history_max_age >= the recovery window)");
  tls_ = make_tls_context(cfg_);
  broker_ = redis::make_any_broker(cfg_.broker, hub_, cfg_.history_max_events,
                                  cfg_.history_max_age);
  // A network broker keeps a registry of which node holds each connection (direct emits).
  hub_.set_connection_listener(
      [this](const std::string& sid, bool added) { broker_->connection_changed(sid, added); });
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
  health_ = std::make_unique<health_monitor>(cfg_, dispatcher_, *broker_, log_);
  make_shared_state();
  hub_.set_history(cfg_.history_max_events, cfg_.history_max_age);
  hub_.set_max_rooms(cfg_.max_rooms_per_connection);
  if (!cfg_.endpoints.empty()) endpoints_ = std::make_unique<endpoint_table>(cfg_.endpoints);
  register_encoders();
  // python-socketio / Flask-SocketIO producers on the same Redis (null on other brokers).
  manager_bridge_ = make_manager_bridge(*this);
  ctx_ = std::make_unique<session_context>(cfg_, hooks_, metrics_, hub_, dispatcher_, admission_,
                                           sio_, tls_.get(), [this]() -> asio::io_context& {
                                             return next_context();
                                           }, encoders_);
  ctx_->set_sessions({[this](const std::shared_ptr<push_session>& s) { register_session(s); },
                      [this](const std::string& sid) { unregister_session(sid); }});
  ctx_->set_http_faces({[this](const publication& p, publish_meta* meta) {
                          return publish(p, meta);
                        },
                        [this](const publication& p, std::function<void(publish_outcome)> done) {
                          publish_async(p, std::move(done));
                        },
                        &idem_,
                        [this](const std::vector<channel>& rooms,
                               std::function<void(bool)> done) {
                          broker_->warm(rooms, std::move(done));
                        },
                        publish_limit_ ? [this](const std::string& publisher, std::size_t n,
                                                publisher::budget_fn done) {
                          take_publish_budget(publisher, n, std::move(done));
                        } : decltype(publisher::limit)()},
                       parking_,
                       {[this] { return health_json(); }, [this] { return metrics_text(); },
                        [this] { return health_->readiness(); },
                        [this] { return health_->liveness(); }});
  ctx_->set_log(log_);
  ctx_->set_endpoints(endpoints_.get());
}

server::~server() {
  if (manager_bridge_) manager_bridge_->stop();  // it acts on the server, also when never started
  stop();
}

// The hub knows no wire format: each transport's encoder is registered here, and its
// connections name it by the id they find in encoders().
void server::register_encoders() {
  // The JSON protocol and SSE carry `data`; Socket.IO carries `args` (else `data` as the one
  // argument) and the binary parts.
  encoders_.json_ws = hub_.add_encoder(encode_json_ws);
  encoders_.sse = hub_.add_encoder(encode_sse);
  register_envelope_encoders();
  // The Engine.IO message carrying a Socket.IO EVENT with the publication's arguments, built
  // in one copy; binary parts follow it. A socket with recovery on writes its own frame around
  // it, with its offset (frame::numbered). The addresses matter only to a socket that resumes
  // after the role checks took a room from it (sio_server::recheck_rooms, which needs room
  // rules), and only for an event to rooms: the frame keeps a copy of them then alone.
  // Cross-node recovery (a Redis broker's, sio_server::set_recovery_store) needs both too:
  // the positions to advance each socket's offset, the addresses to count emits by sid.
  const bool tracked = sio_recovery_ != nullptr;
  const bool keep_addresses = tracked || (cfg_.sio_recovery_window.count() > 0 && cfg_.access &&
                                          cfg_.access->has_room_rules());
  encoders_.socketio = hub_.add_encoder([keep_addresses, tracked](const publication& p,
                                                         const publish_meta& meta) {
    const std::string_view args = p.args ? std::string_view(*p.args) : std::string_view(p.data);
    const std::size_t n = p.binary ? p.binary->size() : 0;
    frame f;
    f.bytes = sio::event_frame_bytes(p.nsp, p.event, args, n, std::nullopt, f.payload_at);
    f.publish_ns = meta.publish_ns;
    f.ws_opcode = 1;
    f.numbered = true;
    if (tracked) f.positions = meta.positions;
    if (keep_addresses && (!p.to.empty() || (tracked && !p.to_conns.empty()))) {
      f.to = p.to;
      f.to_conns = p.to_conns;
    }
    if (n) {
      f.followers.reserve(n);
      for (const auto& a : *p.binary) f.followers.push_back(make_message(a, 2, 0, true));
    }
    return std::make_shared<const frame>(std::move(f));
  });
}

// One encoder per distinct envelope: endpoints that share an envelope (the same spec) share its
// frame, so a publication is encoded once per envelope, whatever the number of its clients.
void server::register_envelope_encoders() {
  if (!endpoints_) return;
  std::vector<std::pair<std::string, encoder_id>> known;
  for (auto& e : endpoints_->entries()) {
    if (!e.env) continue;
    auto same = std::find_if(known.begin(), known.end(),
                             [&](const auto& k) { return k.first == e.cfg.envelope; });
    if (same != known.end()) {
      e.encoder = same->second;
      continue;
    }
    if (hub_.encoder_count() == hub::max_encoders)
      throw std::invalid_argument("at most " + std::to_string(hub::max_encoders - 3) +
                                  " distinct envelopes per server");
    e.encoder = hub_.add_encoder([env = e.env](const publication& p, const publish_meta& meta) {
      std::string payload = env->encode(p.event, p.data, meta.topic, meta.seq, meta.id, meta.ts);
      std::string bytes;
      bytes.reserve(payload.size() + 10);
      ws::append_header(bytes, ws::opcode::text, payload.size());
      bytes += payload;
      return make_frame(std::move(bytes), meta.publish_ns, true);
    });
    known.emplace_back(e.cfg.envelope, e.encoder);
  }
}

void server::start() {
  if (running_) return;
  const unsigned n = io_thread_count(cfg_);
  const bool own_tables = cfg_.descriptor_tables == "per_thread";
  if (!own_tables && cfg_.descriptor_tables != "shared")
    throw std::invalid_argument("descriptor_tables must be \"shared\" or \"per_thread\"");
  if (own_tables && cfg_.worker_index >= 0 && !cfg_.worker_handoff_fds.empty())
    throw std::invalid_argument("per-thread descriptor tables do not go with worker hand-off");
  // Read before the server opens anything: what is open now is the application's.
  net::descriptor_tables::plan tables;
  if (own_tables) tables = net::descriptor_tables::prepare();
  contexts_.clear();
  guards_.clear();
  for (unsigned i = 0; i < n; ++i) {
    contexts_.push_back(std::make_unique<asio::io_context>(1));
    guards_.push_back(asio::make_work_guard(*contexts_.back()));
    asio::use_service<net::uring_writer>(*contexts_.back()).enable(cfg_.io_uring != "off");
  }
  // An IP literal, else a host name such as "localhost" (its first address).
  boost::system::error_code ec;
  tcp::endpoint endpoint(asio::ip::make_address(cfg_.host, ec), cfg_.port);
  if (ec) {
    tcp::resolver resolver(*contexts_[0]);
    auto results = resolver.resolve(cfg_.host, std::to_string(cfg_.port));
    endpoint = results.begin()->endpoint();
  }
  auto handoff = [this](tcp::socket socket, admission::slot slot) {
    start_http_session(std::move(socket), *ctx_, std::move(slot));
  };
  listener_ = std::make_shared<listener>(*contexts_[0], endpoint, *ctx_, handoff);
  port_ = listener_->port();
  if (cfg_.worker_index >= 0 && !cfg_.worker_handoff_fds.empty()) {
    workers_ = std::make_unique<worker_handoff>(*contexts_[0], *ctx_, cfg_.worker_index,
                                                cfg_.worker_handoff_fds, cfg_.worker_inbox_fd);
    ctx_->set_workers(workers_.get());
    workers_->start();
  }
  dispatcher_.start();
  health_->start(contexts_);
  started_at_ = std::chrono::steady_clock::now();
  wake_deferrals_.clear();
  for (unsigned i = 0; i < n; ++i)
    wake_deferrals_.push_back(std::make_unique<net::turn_end_wake>(*contexts_[i]));
  // With tables of their own, each I/O thread unshares its table and starts its own acceptor
  // before it runs; start() waits for all of them, and fails as a whole if one could not.
  thread_listeners_.assign(own_tables ? n : 0, nullptr);
  std::vector<std::string> table_errors(n);
  std::latch tables_ready(own_tables ? n : 0);
  const int listening = listener_->native_handle();
  for (unsigned i = 0; i < n; ++i) {
    threads_.emplace_back([this, i, own_tables, &tables, &table_errors, &tables_ready, listening,
                           handoff] {
      metrics::bind_thread(i);
      if (own_tables) {
        const int own =
            net::descriptor_tables::enter_own_table(tables, *contexts_[i], listening, table_errors[i]);
        if (own >= 0) {
          try {
            thread_listeners_[i] = std::make_shared<listener>(*contexts_[i], own, *ctx_, handoff);
            thread_listeners_[i]->run();
          } catch (const std::exception& e) {
            table_errors[i] = e.what();
          }
        }
        tables_ready.count_down();  // `tables` and the rest are not touched after this
      }
      dispatcher::defer_wakes_on_this_thread(wake_deferrals_[i].get());
      contexts_[i]->run();
      dispatcher::defer_wakes_on_this_thread(nullptr);
    });
    name_thread(threads_.back(), "skyrelay-io-" + std::to_string(i));
  }
  if (own_tables) {
    tables_ready.wait();
    std::string failed;
    for (const auto& e : table_errors)
      if (!e.empty()) failed = e;
    if (!failed.empty()) {
      running_ = true;
      stop();
      throw std::runtime_error("per-thread descriptor tables: " + failed);
    }
    if (cfg_.max_connections > 0 && tables.per_table * n < cfg_.max_connections)
      log_event(log_, log_source::core, log_level::warning, "descriptor_tables_short", [&] {
        return std::vector<log_field>{
            {"io_threads", std::to_string(n)},
            {"per_thread", std::to_string(tables.per_table)},
            {"max_connections", std::to_string(cfg_.max_connections)}};
      });
  } else {
    listener_->run();
  }
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
  health_->set_draining(true);  // readiness fails from here on
  if (manager_bridge_) manager_bridge_->stop();  // no manager message acts from here on
  if (thread_listeners_.empty()) {
    listener_->close();
  } else {
    // The process's copy here (the I/O threads dropped theirs), each thread's on its thread.
    listener_->close_here();
    for (auto& l : thread_listeners_)
      if (l) l->close();
  }
  if (workers_) workers_->stop();
  asio::post(*contexts_[0], [this] { sweep_timer_->cancel(); });
  std::vector<std::shared_ptr<push_session>> open;
  {
    std::lock_guard lock(sessions_mu_);
    for (auto& [sid, weak] : sessions_)
      if (auto s = weak.lock()) open.push_back(std::move(s));
  }
  sio_.shut_down();
  for (auto& s : open) s->close(close_code::going_away, "server shutdown",
                                disconnect_reason::server_shutdown);
  open.clear();
  const auto deadline = std::chrono::steady_clock::now() + cfg_.drain_timeout;
  while (session_count() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // No warm answer may post to the contexts from here on (a network broker's thread).
  broker_->quiesce();
  // Whatever did not finish its close handshake in time is cut when its context stops.
  guards_.clear();
  for (auto& c : contexts_) c->stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  health_->stop();
  {
    // No I/O thread runs now, so sessions can be ended from here. They must be gone (out of the
    // hub, sockets closed) before their contexts are destroyed.
    std::vector<std::shared_ptr<push_session>> left;
    {
      std::lock_guard lock(sessions_mu_);
      for (auto& [sid, weak] : sessions_)
        if (auto s = weak.lock()) left.push_back(std::move(s));
    }
    for (auto& s : left) s->terminate();
    // Engine.IO sessions hold timers of these contexts: drop them before the contexts go.
    sio_.clear();
    parking_.clear();
  }
  listener_.reset();
  thread_listeners_.clear();
  ctx_->set_workers(nullptr);
  workers_.reset();  // before its io_context goes
  sweep_timer_.reset();
  // The dispatcher may hold the last reference to a session (an application's reply to a
  // parked request, a handler's closure): it stops before the contexts those sessions' timers
  // live in are destroyed.
  dispatcher_.stop();
  contexts_.clear();  // destroys pending handlers, and with them the remaining sessions
  sio_.clear();
  std::lock_guard lock(sessions_mu_);
  sessions_.clear();
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

void server::publish_async(const publication& p, std::function<void(publish_outcome)> done) {
  broker_->publish_async(p, [this, done = std::move(done)](publish_outcome r) {
    if (!r.error) {
      auto& shard = metrics_.local();
      metrics_.add(shard.broker_publications);
      metrics_.add(shard.publications);
      metrics_.add(shard.deliveries, r.delivered);
    }
    done(std::move(r));
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
  if (!s || !s->takes_answers()) return false;
  if (!ok) count_error(metrics_, data_or_code);
  if (auto text = s->answer_text(request_id, ok, data_or_code, message)) s->send_text(*text);
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
  if (!s || !s->takes_answers()) return false;
  count_error(metrics_, code);
  if (auto text = s->error_text(code, message)) s->send_text(*text);
  return true;
}

auth::identity_ptr server::identity_of(const std::string& sid) const {
  if (auto s = find_session(sid)) return s->identity();
  if (auto s = sio_.find_socket(sid)) return s->identity();
  return nullptr;
}

std::vector<std::string> server::roles_of(const std::string& sid) const {
  if (auto s = find_session(sid)) return *s->roles();
  if (auto s = sio_.find_socket(sid)) return *s->roles();
  return {};
}

server::join_result server::join_checked(const std::string& sid, const channel& room) {
  if (const auto& policy = cfg_.access; policy && policy->has_room_rules()) {
    if (auto refusal = policy->check_room(room.nsp, room.room, roles_of(sid))) {
      metrics_.add(metrics_.local().forbidden_room);
      return {false, std::move(refusal->message)};
    }
  }
  // Warmed or not (a timeout, Redis down), the join goes on: a room the broker could not
  // load yet is loaded when it follows it, and its members then get an explicit reset.
  auto warmed = std::make_shared<std::promise<void>>();
  auto done = warmed->get_future();
  broker_->warm({room}, [warmed](bool) { warmed->set_value(); });
  done.wait_for(std::chrono::seconds(5));  // warm() may never answer once quiesced
  if (auto s = sio_.find_socket(sid); s && s->tracked())
    return {sio_.join_tracked(s, room, [&] { return hub_.join(sid, room); }), std::nullopt};
  return {hub_.join(sid, room), std::nullopt};
}

bool server::leave(const std::string& sid, const channel& room) {
  if (!hub_.leave(sid, room)) return false;
  if (auto s = sio_.find_socket(sid); s && s->tracked()) sio_.left_tracked(s, room.room);
  return true;
}

double server::uptime_seconds() const {
  if (!running_) return 0.0;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
}

std::string server::health_json() const {
  // `degraded` while the broker cannot carry publications (a Redis broker without Redis).
  // Also `degraded` while not ready or not alive (net/health.hpp), which "ready" and "live"
  // say apart; the probes' own routes answer 503 for those, /health stays 200.
  const broker_status bs = broker_->status();
  const bool ready = health_->readiness().ok, live = health_->liveness().ok;
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "{\"status\":\"%s\",\"uptime_s\":%.3f,\"connections\":%zu,\"rooms\":%zu,"
                "\"ready\":%s,\"live\":%s",
                bs.ok && ready && live ? "ok" : "degraded", uptime_seconds(),
                hub_.connection_count(), hub_.room_count(), ready ? "true" : "false",
                live ? "true" : "false");
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
  out += "],\"broker\":{\"kind\":";
  out += cfg_.broker.empty() || cfg_.broker == "memory" ? "\"memory\"" : "\"redis\"";
  out += bs.ok ? ",\"status\":\"ok\"" : ",\"status\":\"degraded\"";
  if (!bs.ok) out += ",\"reason\":" + nlohmann::json(bs.reason).dump();
  out += "}";
  // Which process answered: several workers share one port (skyrelay run --workers).
  out += ",\"pid\":" + std::to_string(::getpid());
  if (cfg_.worker_index >= 0) out += ",\"worker\":" + std::to_string(cfg_.worker_index);
  append_cluster_health(out);
  out += "}";
  return out;
}

std::string server::metrics_text() const {
  std::string out =
      metrics_.prometheus(hub_.room_count(), dispatcher_.queued(),
                          uptime_seconds(), hub_.history_entries(), hub_.closed_sid_count());
  // The broker's own counters (a network broker's; the memory broker's stay 0).
  const broker_counters c = broker_->counters();
  auto add = [&out](const char* name, const char* help, const char* type, std::uint64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + std::to_string(v) + "\n";
  };
  add("skyrelay_broker_up", "1 while the broker carries publications, 0 while degraded.",
      "gauge", broker_->status().ok ? 1 : 0);
  add("skyrelay_broker_redis_publishes_total", "Publications the Redis broker carried.",
      "counter", c.publishes);
  add("skyrelay_broker_redis_received_messages_total", "Messages received from Redis.", "counter",
      c.received);
  add("skyrelay_broker_redis_gaps_caught_up_total",
      "Gaps in a channel's sequence filled from its Redis stream.", "counter", c.gaps_caught_up);
  add("skyrelay_broker_redis_resets_total",
      "Gaps the stream could no longer fill: the channel's log was reset (resumes get "
      "history_gap).", "counter", c.resets);
  add("skyrelay_broker_redis_reconnects_total", "Connections to Redis made again after a loss.",
      "counter", c.reconnects);
  add("skyrelay_broker_redis_pending_publications",
      "Publications sent to Redis (or waiting to be) and not answered yet.", "gauge",
      c.publish_queued);
  add("skyrelay_broker_redis_publish_refused_total",
      "Publications refused because that queue was full (broker_busy).", "counter",
      c.publish_refused);
  add("skyrelay_broker_redis_publish_failed_total",
      "Publications queued that then failed (connection lost, script refused).", "counter",
      c.publish_failed);
  // Keyed states (docs/api.md "Delta updates").
  const hub::state_counters st = hub_.state_stats();
  add("skyrelay_state_keys", "Keys held by the rooms' keyed states.", "gauge", st.keys);
  add("skyrelay_state_deltas_total", "Delta updates published (a change to a keyed state).",
      "counter", st.deltas);
  add("skyrelay_state_unchanged_total", "State updates that changed nothing (nothing sent).",
      "counter", st.unchanged);
  add("skyrelay_state_full_payloads_total",
      "Full-update payloads (one per key) queued to members.", "counter", st.full_payloads);
  out += "# HELP skyrelay_state_refused_total State updates refused by a bound, by limit.\n"
         "# TYPE skyrelay_state_refused_total counter\n"
         "skyrelay_state_refused_total{limit=\"max_keys\"} " + std::to_string(st.refused_keys) +
         "\nskyrelay_state_refused_total{limit=\"max_key_bytes\"} " +
         std::to_string(st.refused_bytes) + "\n";
  append_log_metrics(out, log_);  // core/log_queue.cpp
  append_manager_metrics(out, manager_bridge_.get());
  append_cluster_metrics(out);
  sio_.append_recovery_metrics(out);
  if (cfg_.jwt) cfg_.jwt->verifier.key_set().write_metrics(out);  // with a JWKS URL only
  append_build_info(out, cfg_.version);
  append_process_metrics(out);
  append_uring_metrics(out);
  // Per-thread descriptor tables (net/descriptor_tables.hpp): the I/O threads' tables (0 when
  // they share the process's; process_open_fds counts the process's table alone then), and
  // sockets an I/O thread found in another's table at close (a bug if ever above 0).
  out += "# HELP skyrelay_descriptor_tables I/O threads with a file descriptor table of their "
         "own.\n# TYPE skyrelay_descriptor_tables gauge\nskyrelay_descriptor_tables " +
         std::to_string(thread_listeners_.size()) +
         "\n# HELP skyrelay_descriptor_table_misses_total Sockets an I/O thread was asked to "
         "close that another thread's table holds (closed there instead).\n"
         "# TYPE skyrelay_descriptor_table_misses_total counter\n"
         "skyrelay_descriptor_table_misses_total " +
         std::to_string(net::descriptor_tables::misses()) + "\n";
  return out;
}

// Which write path the I/O threads use (docs/api.md `io_uring`): rings set up, and the
// submissions and sends they made in this process.
void server::append_uring_metrics(std::string& out) const {
  std::uint64_t rings = 0;
  for (const auto& ctx : contexts_)
    if (asio::has_service<net::uring_writer>(*ctx) &&
        asio::use_service<net::uring_writer>(*ctx).active())
      ++rings;
  auto add = [&out](const char* name, const char* help, const char* type, std::uint64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + std::to_string(v) + "\n";
  };
  add("skyrelay_io_uring_threads", "I/O threads writing plain TCP through io_uring (0: epoll).",
      "gauge", rings);
  add("skyrelay_io_uring_submissions_total",
      "io_uring_enter calls of flushed writes (one per 64 sends of a flush at most).", "counter",
      net::uring_stats::submissions.load(std::memory_order_relaxed));
  add("skyrelay_io_uring_sends_total", "Sends those submissions carried.", "counter",
      net::uring_stats::sends.load(std::memory_order_relaxed));
}

void server::register_session(const std::shared_ptr<push_session>& s) {
  std::lock_guard lock(sessions_mu_);
  sessions_[s->sid()] = s;
}

void server::unregister_session(const std::string& sid) {
  std::lock_guard lock(sessions_mu_);
  sessions_.erase(sid);
}

std::shared_ptr<push_session> server::find_session(const std::string& sid) const {
  std::lock_guard lock(sessions_mu_);
  auto it = sessions_.find(sid);
  return it == sessions_.end() ? nullptr : it->second.lock();
}

std::size_t server::session_count() const {
  std::lock_guard lock(sessions_mu_);
  return sessions_.size();
}

}  // namespace skyrelay
