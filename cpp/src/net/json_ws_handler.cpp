#include "skyrelay/net/json_ws_handler.hpp"

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>
#include <utility>
#include <variant>

#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/core/clock.hpp"
#include "skyrelay/net/session_context.hpp"

namespace skyrelay {

namespace {

// Ids of an envelope's replies ($id): unique in the process, increasing.
std::string fresh_reply_id() {
  static std::atomic<std::uint64_t> next{static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count())};
  return std::to_string(next.fetch_add(1, std::memory_order_relaxed));
}

}  // namespace

json_ws_handler::json_ws_handler(session_context& context, std::vector<std::string> topics,
                                 const endpoint* ep, path_params params)
    : ctx_(context),
      limit_(context.config().inbound_limit, &context.config().event_limits, steady_ns()),
      topics_(std::move(topics)),
      ep_(ep),
      env_(ep && ep->env ? ep->env.get() : nullptr),
      params_(std::move(params)) {}

std::vector<std::string> json_ws_handler::handshake_topics() const { return topics_; }

void json_ws_handler::on_ws_open(ws_session& s) {
  if (env_) {
    // The envelope's own welcome, if it has one; the endpoint's topics are joined quietly.
    std::string ts, id;
    auto v = envelope_values(ts, id);
    v.sid = s.sid();
    if (auto w = env_->welcome(v)) s.send_first(*w);
    if (!topics_.empty())
      ctx_.get_hub().subscribe(s.sid(), topics_, std::nullopt, {}, [](subscribe_outcome&) {});
    return;
  }
  s.send_first(proto::welcome(s.sid(), ctx_.config().heartbeat_interval.count()));
  if (!topics_.empty()) {
    proto::client_message m2;
    m2.topics = topics_;
    m2.topics_as_list = topics_.size() > 1;
    ctx_.get_hub().subscribe(s.sid(), m2.topics, std::nullopt, {}, [&](subscribe_outcome& o) {
      std::vector<proto::topic_state> states;
      for (const auto& p : o.positions) states.push_back({p.seq, p.epoch});
      s.send_first(proto::subscribed(m2, states));
    });
  }
}

proto::reply_values json_ws_handler::envelope_values(std::string& ts, std::string& id) const {
  ts = utc_now_iso8601();
  id = fresh_reply_id();
  proto::reply_values v;
  v.ts = ts;
  v.ts_ms = proto::iso8601_ms(ts);
  v.fresh_id = id;
  v.params = &params_;
  return v;
}

void json_ws_handler::send_reply(ws_session& s, std::optional<std::string> text) {
  if (text) s.send_text(*text);
}

std::optional<std::optional<std::string>> json_ws_handler::answer_text(
    std::string_view request_id, bool ok, std::string_view data_or_code,
    std::string_view message) const {
  if (!env_) return std::nullopt;
  std::string ref;
  std::vector<std::string> in;
  if (!proto::envelope::from_token(request_id, ref, in)) ref = std::string(request_id);
  std::string ts, id;
  auto v = envelope_values(ts, id);
  v.ref = ref;
  v.captured = &in;
  if (ok) {
    v.result = data_or_code;
    return env_->response(v);
  }
  v.code = data_or_code;
  v.message = message;
  return env_->error(v);
}

std::optional<std::optional<std::string>> json_ws_handler::error_text(
    std::string_view code, std::string_view message) const {
  if (!env_) return std::nullopt;
  std::string ts, id;
  auto v = envelope_values(ts, id);
  v.code = code;
  v.message = message;
  return env_->error(v);
}

void json_ws_handler::on_ws_binary(ws_session& s, std::string_view) {
  reply_error(s, error_code::binary_not_supported, "the JSON protocol carries text frames only",
              "");
}

void json_ws_handler::on_ws_text(ws_session& s, std::string_view text) {
  if (env_) {
    auto decoded = env_->decode(text);
    if (auto* err = std::get_if<proto::decode_error>(&decoded)) {
      reply_error(s, err->code, err->message, err->ref);
      return;
    }
    auto& m = std::get<proto::envelope_message>(decoded);
    on_message(s, m.msg, m.captured);
    return;
  }
  auto decoded = proto::decode(text);
  if (auto* err = std::get_if<proto::decode_error>(&decoded)) {
    reply_error(s, err->code, err->message, err->ref);
    return;
  }
  on_message(s, std::get<proto::client_message>(decoded), {});
}

void json_ws_handler::on_message(ws_session& s, proto::client_message& msg, const captured& in) {
  if (!within_rate(s, msg) || !authorized(s, msg)) return;
  auto& hub = ctx_.get_hub();
  switch (msg.type) {
    case proto::client_type::subscribe:
      subscribe(s, msg, in);
      return;
    case proto::client_type::unsubscribe:
      for (const auto& t : msg.topics) hub.leave(s.sid(), channel{"/", t});  // rooms of "/"
      if (!env_) return s.send_text(proto::unsubscribed(msg));
      return reply_per_topic(s, msg, in, false);
    case proto::client_type::ping: {
      if (!env_) return s.send_text(proto::pong(utc_now_iso8601(), msg.id));
      std::string ts, id;
      auto v = envelope_values(ts, id);
      v.ref = msg.id;
      v.kind = msg.event;
      v.captured = &in;
      send_reply(s, env_->pong(v));
      return;
    }
    case proto::client_type::event:
    case proto::client_type::request:
      dispatch(s, msg, in);
      return;
  }
}

bool json_ws_handler::within_rate(ws_session& s, const proto::client_message& msg) {
  if (msg.type == proto::client_type::ping) return true;
  std::int64_t wait_ns = 0;
  if (limit_.take(msg.event, steady_ns(), wait_ns)) {
    rate_logged_ = false;
    return true;
  }
  ctx_.get_metrics().drop(drop_reason::rate_limited);
  // One record per run of refused messages, not one per message: a flood logs once.
  if (!std::exchange(rate_logged_, true))
    log_event(ctx_.log(), log_source::limits, log_level::warning, "rate_limited", [&] {
      return std::vector<log_field>{{"sid", s.sid()},
                                    {"transport", std::string("websocket")},
                                    {"event", std::string(msg.event)},
                                    {"retry_after_ms", std::int64_t(wait_ns / 1'000'000 + 1)}};
    });
  const std::string text = "over the connection's message rate; retry in " +
                           std::to_string(wait_ns / 1'000'000 + 1) + " ms";
  refuse(s, msg, error_code::rate_limited, text, msg.id);
  return false;
}

bool json_ws_handler::authorized(ws_session& s, const proto::client_message& msg) {
  auto& m = ctx_.get_metrics();
  // A subscribe names topics: each must be open to clients (client_topics) before its role
  // requirements are looked at; a refusal joins none of them.
  if (msg.type == proto::client_type::subscribe) {
    if (auto refusal = auth::check_client_topics(ctx_.config().client_topics.get(),
                                                 msg.topics, s.identity().get())) {
      m.add(m.local().forbidden_client_topic);
      reply_error(s, error_code::forbidden, refusal->message, msg.id, {});
      return false;
    }
  }
  // Role requirements of the topics or the event, before anything else happens.
  const auto& policy = ctx_.config().access;
  if (!policy || msg.type == proto::client_type::ping ||
      msg.type == proto::client_type::unsubscribe)
    return true;
  const auto held = s.roles();
  const auto& roles = *held;
  std::optional<auth::access_denial> refusal;
  if (msg.type == proto::client_type::subscribe) {
    for (const auto& t : msg.topics)
      if ((refusal = policy->check_room("/", t, roles))) break;
  } else {
    refusal = policy->check_event("/", msg.event, roles);
  }
  if (!refusal) return true;
  m.add(refusal->scope == auth::access_scope::room ? m.local().forbidden_room
                                                   : m.local().forbidden_event);
  refuse(s, msg, error_code::forbidden, refusal->message, msg.id);
  return false;
}

void json_ws_handler::subscribe(ws_session& s, const proto::client_message& msg,
                                const captured& in) {
  // The broker warms the topics first (a cluster broker loads where they stand, so `since`
  // from another node resumes exactly); the memory broker answers inline, and the subscribe
  // runs right here as before. A warm that fails (timeout, Redis down) still subscribes: the
  // hub then answers `since` with its replay or an explicit reset.
  const auto& warm = ctx_.get_publisher().warm;
  if (!warm) return subscribe_now(s, msg, in);
  std::vector<channel> rooms;
  rooms.reserve(msg.topics.size());
  for (const auto& t : msg.topics) rooms.push_back({"/", t});
  const auto caller = std::this_thread::get_id();
  auto self = s.shared_from_this();  // keeps the session, and this handler it owns
  warm(rooms, [this, self, &s, msg, in, caller](bool) {
    if (std::this_thread::get_id() == caller) return subscribe_now(s, msg, in);
    self->post([this, self, &s, msg, in] { subscribe_now(s, msg, in); });
  });
}

void json_ws_handler::subscribe_now(ws_session& s, const proto::client_message& msg,
                                    const captured& in) {
  // The reply and any replay are queued under the topics' order locks, so they come before
  // every live event of these topics and nothing falls between the two.
  ctx_.get_hub().subscribe(s.sid(), msg.topics, msg.since, msg.epoch, [&](subscribe_outcome& o) {
    if (o.refused) {
      reply_error(s, error_code::too_many_rooms,
                  "this subscribe would take the connection past " +
                      std::to_string(ctx_.config().max_rooms_per_connection) + " topics",
                  msg.id, in);
      return;
    }
    // One reply per topic, if the envelope has one; no resume (no `since`).
    if (env_) return reply_per_topic(s, msg, in, true);
    std::vector<proto::topic_state> states;
    states.reserve(o.positions.size());
    for (const auto& p : o.positions) states.push_back({p.seq, p.epoch});
    proto::resume_state resume{o.recovered, o.reset};
    if (o.recovered && !s.replay_fits(o.replay)) {
      resume = {false, "history_gap"};  // more than the outbox could hold at once
      o.replay.clear();
      o.recovered = false;  // the hub then sends the topic's states in full
    }
    s.send_text(proto::subscribed(msg, states, o.resumed ? &resume : nullptr));
    for (const auto& f : o.replay) s.deliver(f, overflow_policy::disconnect);
  });
}

void json_ws_handler::dispatch(ws_session& s, proto::client_message& msg, const captured& in) {
  const auto& hooks = ctx_.hooks();
  if (!hooks.on_message) {
    if (msg.type == proto::client_type::request)
      refuse(s, msg, error_code::unknown_event, "no handler for event \"" + msg.event + "\"",
             msg.id, in);
    return;
  }
  const session_context* ctx = &ctx_;
  // An envelope's request goes with its token (the id and the $in fields its replies use):
  // the application hands it back with its answer (answer_text).
  std::string id;
  if (msg.type == proto::client_type::request)
    id = env_ ? proto::envelope::request_token({msg, in}) : msg.id;
  bool queued = ctx_.get_dispatcher().post(
      [ctx, sid = s.sid(), event = std::move(msg.event), data = std::move(msg.data), id] {
        ctx->hooks().on_message(sid, event, data, id);
      });
  if (!queued) {
    ctx_.get_metrics().drop(drop_reason::dispatch_overflow);
    refuse(s, msg, error_code::overloaded,
           id.empty() ? "the server is overloaded; the event was not handled"
                      : "the server is overloaded; the request was not handled",
           "", in);
  }
}

void json_ws_handler::refuse(ws_session& s, const proto::client_message& msg, error_code code,
                             std::string_view message, std::string_view ref, const captured& in) {
  if (msg.type != proto::client_type::request || env_) {
    reply_error(s, code, message, env_ ? std::string_view(msg.id) : ref, in);
    return;
  }
  ctx_.get_metrics().error(code);
  s.send_text(proto::response_error(msg.id, to_string(code), message));
}

void json_ws_handler::reply_error(ws_session& s, error_code code, std::string_view message,
                                  std::string_view ref, const captured& in) {
  ctx_.get_metrics().error(code);
  if (!env_) return s.send_text(proto::error(to_string(code), message, ref));
  std::string ts, id;
  auto v = envelope_values(ts, id);
  v.code = to_string(code);
  v.message = message;
  v.ref = ref;
  v.captured = &in;
  send_reply(s, env_->error(v));
}

void json_ws_handler::reply_per_topic(ws_session& s, const proto::client_message& msg,
                                      const captured& in, bool subscribed) {
  for (const auto& t : msg.topics) {
    std::string ts, id;
    auto v = envelope_values(ts, id);
    v.ref = msg.id;
    v.kind = msg.event;
    v.topic = t;
    v.captured = &in;
    send_reply(s, subscribed ? env_->subscribed(v) : env_->unsubscribed(v));
  }
}

}  // namespace skyrelay
