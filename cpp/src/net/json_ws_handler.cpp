#include "skyrelay/net/json_ws_handler.hpp"

#include <optional>
#include <thread>
#include <variant>

#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/core/clock.hpp"
#include "skyrelay/net/session_context.hpp"

namespace skyrelay {

json_ws_handler::json_ws_handler(session_context& context, std::string topic)
    : ctx_(context),
      limit_(context.config().inbound_limit, &context.config().event_limits, steady_ns()),
      topic_(std::move(topic)) {}

std::vector<std::string> json_ws_handler::handshake_topics() const {
  return topic_.empty() ? std::vector<std::string>{} : std::vector{topic_};
}

void json_ws_handler::on_ws_open(ws_session& s) {
  s.send_first(proto::welcome(s.sid(), ctx_.config().heartbeat_interval.count()));
  if (!topic_.empty()) {
    proto::client_message m2;
    m2.topics.push_back(topic_);
    ctx_.get_hub().subscribe(s.sid(), m2.topics, std::nullopt, {}, [&](subscribe_outcome& o) {
      const auto& p = o.positions.front();
      s.send_first(proto::subscribed(m2, {{p.seq, p.epoch}}));
    });
  }
}

void json_ws_handler::on_ws_binary(ws_session& s, std::string_view) {
  reply_error(s, error_code::binary_not_supported, "the JSON protocol carries text frames only",
              "");
}

void json_ws_handler::on_ws_text(ws_session& s, std::string_view text) {
  auto decoded = proto::decode(text);
  if (auto* err = std::get_if<proto::decode_error>(&decoded)) {
    reply_error(s, err->code, err->message, err->ref);
    return;
  }
  on_message(s, std::get<proto::client_message>(decoded));
}

void json_ws_handler::on_message(ws_session& s, proto::client_message& msg) {
  if (!within_rate(s, msg) || !authorized(s, msg)) return;
  auto& hub = ctx_.get_hub();
  switch (msg.type) {
    case proto::client_type::subscribe:
      subscribe(s, msg);
      return;
    case proto::client_type::unsubscribe:
      for (const auto& t : msg.topics) hub.leave(s.sid(), channel{"/", t});  // rooms of "/"
      s.send_text(proto::unsubscribed(msg));
      return;
    case proto::client_type::ping:
      s.send_text(proto::pong(utc_now_iso8601(), msg.id));
      return;
    case proto::client_type::event:
    case proto::client_type::request:
      dispatch(s, msg);
      return;
  }
}

bool json_ws_handler::within_rate(ws_session& s, const proto::client_message& msg) {
  if (msg.type == proto::client_type::ping) return true;
  std::int64_t wait_ns = 0;
  if (limit_.take(msg.event, steady_ns(), wait_ns)) return true;
  ctx_.get_metrics().drop(drop_reason::rate_limited);
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
      reply_error(s, error_code::forbidden, refusal->message, msg.id);
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

void json_ws_handler::subscribe(ws_session& s, const proto::client_message& msg) {
  // The broker warms the topics first (a cluster broker loads where they stand, so `since`
  // from another node resumes exactly); the memory broker answers inline, and the subscribe
  // runs right here as before. A warm that fails (timeout, Redis down) still subscribes: the
  // hub then answers `since` with its replay or an explicit reset.
  const auto& warm = ctx_.get_publisher().warm;
  if (!warm) return subscribe_now(s, msg);
  std::vector<channel> rooms;
  rooms.reserve(msg.topics.size());
  for (const auto& t : msg.topics) rooms.push_back({"/", t});
  const auto caller = std::this_thread::get_id();
  auto self = s.shared_from_this();  // keeps the session, and this handler it owns
  warm(rooms, [this, self, &s, msg, caller](bool) {
    if (std::this_thread::get_id() == caller) return subscribe_now(s, msg);
    self->post([this, self, &s, msg] { subscribe_now(s, msg); });
  });
}

void json_ws_handler::subscribe_now(ws_session& s, const proto::client_message& msg) {
  // The reply and any replay are queued under the topics' order locks, so they come before
  // every live event of these topics and nothing falls between the two.
  ctx_.get_hub().subscribe(s.sid(), msg.topics, msg.since, msg.epoch, [&](subscribe_outcome& o) {
    if (o.refused) {
      reply_error(s, error_code::too_many_rooms,
                  "this subscribe would take the connection past " +
                      std::to_string(ctx_.config().max_rooms_per_connection) + " topics",
                  msg.id);
      return;
    }
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

void json_ws_handler::dispatch(ws_session& s, proto::client_message& msg) {
  const auto& hooks = ctx_.hooks();
  if (!hooks.on_message) {
    if (msg.type == proto::client_type::request)
      s.send_text(proto::response_error(msg.id, to_string(error_code::unknown_event),
                                        "no handler for event \"" + msg.event + "\""));
    return;
  }
  const session_context* ctx = &ctx_;
  std::string id = msg.type == proto::client_type::request ? msg.id : std::string();
  bool queued = ctx_.get_dispatcher().post(
      [ctx, sid = s.sid(), event = std::move(msg.event), data = std::move(msg.data), id] {
        ctx->hooks().on_message(sid, event, data, id);
      });
  if (!queued) {
    ctx_.get_metrics().drop(drop_reason::dispatch_overflow);
    refuse(s, msg, error_code::overloaded,
           id.empty() ? "the server is overloaded; the event was not handled"
                      : "the server is overloaded; the request was not handled",
           "");
  }
}

void json_ws_handler::refuse(ws_session& s, const proto::client_message& msg, error_code code,
                             std::string_view message, std::string_view ref) {
  if (msg.type != proto::client_type::request) {
    reply_error(s, code, message, ref);
    return;
  }
  ctx_.get_metrics().error(code);
  s.send_text(proto::response_error(msg.id, to_string(code), message));
}

void json_ws_handler::reply_error(ws_session& s, error_code code, std::string_view message,
                                  std::string_view ref) {
  ctx_.get_metrics().error(code);
  s.send_text(proto::error(to_string(code), message, ref));
}

}  // namespace skyrelay
