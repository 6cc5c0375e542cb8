#include "skyrelay/net/ws_session.hpp"

#include <algorithm>

#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/core/clock.hpp"
#include "skyrelay/net/session_context.hpp"

namespace skyrelay {

ws_session::ws_session(net::stream socket, session_context& ctx, std::string sid,
                       std::string handshake_response, std::string leftover, std::string topic,
                       encoder_id encoder)
    : push_session(std::move(socket), ctx, std::move(sid), std::move(handshake_response),
                   encoder),
      parser_(ctx.config().max_message_size),
      limit_(ctx.config().inbound_limit, &ctx.config().event_limits, steady_ns()),
      topic_(std::move(topic)) {
  if (!leftover.empty()) early_bytes_ = std::move(leftover);
}

ws_session::~ws_session() = default;

void ws_session::start_with(std::weak_ptr<ws_handler> handler, std::string first) {
  handler_ = std::move(handler);
  has_handler_ = true;
  auto self = this->self_as<ws_session>();
  ctx_.sessions().add(self);
  asio::post(socket_.get_executor(), [self, first = std::move(first)]() mutable {
    if (!first.empty()) self->prefix_ += ws::encode(ws::opcode::text, first);
    self->on_accept();
  });
}

void ws_session::open() {
  if (!has_handler_)
    prefix_ += ws::encode(ws::opcode::text,
                          proto::welcome(sid(), ctx_.config().heartbeat_interval.count()));
  if (!has_handler_ && !topic_.empty()) {
    proto::client_message m2;
    m2.topics.push_back(topic_);
    ctx_.get_hub().subscribe(sid(), m2.topics, std::nullopt, {}, [&](subscribe_outcome& o) {
      const auto& p = o.positions.front();
      prefix_ += ws::encode(ws::opcode::text, proto::subscribed(m2, {{p.seq, p.epoch}}));
    });
  }
  last_heard_ = std::chrono::steady_clock::now();
}

std::vector<std::string> ws_session::handshake_topics() const {
  return topic_.empty() ? std::vector<std::string>{} : std::vector{topic_};
}

void ws_session::heard() {
  last_heard_ = std::chrono::steady_clock::now();
  pinged_ = false;
}

bool ws_session::consume(char* data, std::size_t n) {
  if (read_broken_) return true;
  std::uint16_t code = parser_.feed(data, n, [this](const ws::inbound& in) { return on_frame(in); });
  if (state_ == state::closed) return false;
  if (code) {
    read_broken_ = true;
    const bool too_big = code == close_code::message_too_big;
    if (too_big) ctx_.get_metrics().limit_hit(limit_kind::message_size);
    begin_close(code, too_big ? "message too big" : code == 1007 ? "invalid UTF-8" : "protocol error",
                too_big ? disconnect_reason::message_too_big : disconnect_reason::protocol_error,
                true);
    // Nothing more will be read as data; wait for the close handshake or the timer.
  }
  return state_ != state::closed;
}

bool ws_session::on_frame(const ws::inbound& in) {
  switch (in.op) {
    case ws::opcode::text:
      if (state_ != state::open) return true;
      if (has_handler_) {
        auto& m = ctx_.get_metrics();
        m.add(m.local().messages_in);
        if (auto h = handler_.lock()) h->on_ws_text(*this, in.payload);
      } else {
        on_text(in.payload);
      }
      return state_ != state::closed;
    case ws::opcode::binary:
      if (state_ == state::open && has_handler_) {
        auto& m = ctx_.get_metrics();
        m.add(m.local().messages_in);
        if (auto h = handler_.lock()) h->on_ws_binary(*this, in.payload);
        return state_ != state::closed;
      }
      if (state_ == state::open) {
        auto& m = ctx_.get_metrics();
        m.add(m.local().messages_in);
        reply_error(error_code::binary_not_supported,
                    "the JSON protocol carries text frames only", "");
      }
      return true;
    case ws::opcode::ping:
      if (state_ == state::open) push_control(ws::encode(ws::opcode::pong, in.payload));
      return true;
    case ws::opcode::pong:
      return true;
    case ws::opcode::close: {
      close_received_ = true;
      if (state_ == state::closing) {
        if (close_sent_ && !writer_.busy()) finish(close_reason_);
        return false;
      }
      std::uint16_t code = close_code::normal;
      if (in.payload.size() >= 2)
        code = static_cast<std::uint16_t>((static_cast<unsigned char>(in.payload[0]) << 8) |
                                          static_cast<unsigned char>(in.payload[1]));
      begin_close(code, "", disconnect_reason::client_close, true);
      return false;
    }
    case ws::opcode::continuation:
      break;
  }
  return true;
}

void ws_session::on_text(std::string_view text) {
  auto& m = ctx_.get_metrics();
  m.add(m.local().messages_in);
  auto decoded = proto::decode(text);
  if (auto* err = std::get_if<proto::decode_error>(&decoded)) {
    reply_error(err->code, err->message, err->ref);
    return;
  }
  auto& msg = std::get<proto::client_message>(decoded);
  if (msg.type != proto::client_type::ping) {
    std::int64_t wait_ns = 0;
    if (!limit_.take(msg.event, steady_ns(), wait_ns)) {
      ctx_.get_metrics().drop(drop_reason::rate_limited);
      const std::string text = "over the connection's message rate; retry in " +
                               std::to_string(wait_ns / 1'000'000 + 1) + " ms";
      if (msg.type == proto::client_type::request) {
        ctx_.get_metrics().error(error_code::rate_limited);
        send_text(proto::response_error(msg.id, to_string(error_code::rate_limited), text));
      } else {
        reply_error(error_code::rate_limited, text, msg.id);
      }
      return;
    }
  }
  // A subscribe names topics: each must be open to clients (client_topics) before its role
  // requirements are looked at; a refusal joins none of them.
  if (msg.type == proto::client_type::subscribe) {
    if (auto refusal = auth::check_client_topics(ctx_.config().client_topics.get(),
                                                 msg.topics, identity_.get())) {
      m.add(m.local().forbidden_client_topic);
      reply_error(error_code::forbidden, refusal->message, msg.id);
      return;
    }
  }
  // Role requirements of the topics or the event, before anything else happens.
  if (const auto& policy = ctx_.config().access;
      policy && msg.type != proto::client_type::ping && msg.type != proto::client_type::unsubscribe) {
    const auto held = this->roles();
    const auto& roles = *held;
    std::optional<auth::access_denial> refusal;
    if (msg.type == proto::client_type::subscribe) {
      for (const auto& t : msg.topics)
        if ((refusal = policy->check_room("/", t, roles))) break;
    } else {
      refusal = policy->check_event("/", msg.event, roles);
    }
    if (refusal) {
      m.add(refusal->scope == auth::access_scope::room ? m.local().forbidden_room
                                                       : m.local().forbidden_event);
      if (msg.type == proto::client_type::request) {
        m.error(error_code::forbidden);
        send_text(proto::response_error(msg.id, to_string(error_code::forbidden), refusal->message));
      } else {
        reply_error(error_code::forbidden, refusal->message, msg.id);
      }
      return;
    }
  }
  auto& hub = ctx_.get_hub();
  switch (msg.type) {
    case proto::client_type::subscribe:
      // The reply and any replay are queued under the topics' order locks, so they come before
      // every live event of these topics and nothing falls between the two.
      hub.subscribe(sid(), msg.topics, msg.since, msg.epoch, [&](subscribe_outcome& o) {
        if (o.refused) {
          reply_error(error_code::too_many_rooms,
                      "this subscribe would take the connection past " +
                          std::to_string(ctx_.config().max_rooms_per_connection) + " topics",
                      msg.id);
          return;
        }
        std::vector<proto::topic_state> states;
        states.reserve(o.positions.size());
        for (const auto& p : o.positions) states.push_back({p.seq, p.epoch});
        proto::resume_state resume{o.recovered, o.reset};
        if (o.recovered && !replay_fits(o.replay)) {
          resume = {false, "history_gap"};  // more than the outbox could hold at once
          o.replay.clear();
        }
        send_text(proto::subscribed(msg, states, o.resumed ? &resume : nullptr));
        for (const auto& f : o.replay) deliver(f, overflow_policy::disconnect);
      });
      return;
    case proto::client_type::unsubscribe:
      for (const auto& t : msg.topics) hub.leave(sid(), channel{"/", t});  // rooms of "/"
      send_text(proto::unsubscribed(msg));
      return;
    case proto::client_type::ping:
      send_text(proto::pong(utc_now_iso8601(), msg.id));
      return;
    case proto::client_type::event:
    case proto::client_type::request:
      break;
  }
  const auto& hooks = ctx_.hooks();
  if (!hooks.on_message) {
    if (msg.type == proto::client_type::request)
      send_text(proto::response_error(msg.id, to_string(error_code::unknown_event),
                                      "no handler for event \"" + msg.event + "\""));
    return;
  }
  const session_context* ctx = &ctx_;
  std::string id = msg.type == proto::client_type::request ? msg.id : std::string();
  bool queued = ctx_.get_dispatcher().post(
      [ctx, sid = sid(), event = std::move(msg.event), data = std::move(msg.data), id] {
        ctx->hooks().on_message(sid, event, data, id);
      });
  if (!queued) {
    m.drop(drop_reason::dispatch_overflow);
    if (id.empty()) {
      reply_error(error_code::overloaded, "the server is overloaded; the event was not handled", "");
    } else {
      ctx_.get_metrics().error(error_code::overloaded);
      send_text(proto::response_error(id, to_string(error_code::overloaded),
                                      "the server is overloaded; the request was not handled"));
    }
  }
}

void ws_session::reply_error(error_code code, std::string_view message, std::string_view ref) {
  ctx_.get_metrics().error(code);
  send_text(proto::error(to_string(code), message, ref));
}

void ws_session::arm_timer() {
  const auto& cfg = ctx_.config();
  auto deadline = last_heard_ + cfg.heartbeat_interval + (pinged_ ? cfg.heartbeat_timeout
                                                                  : std::chrono::milliseconds(0));
  if (cfg.idle_timeout.count() > 0) deadline = std::min(deadline, last_heard_ + cfg.idle_timeout);
  timer_.expires_at(deadline);
  timer_.async_wait([self = self_as<ws_session>()](boost::system::error_code ec) {
    if (!ec) self->on_timer(ec);
  });
}

void ws_session::on_timer(boost::system::error_code) {
  if (state_ == state::closed) return;
  if (state_ == state::closing) {
    finish(close_reason_);
    return;
  }
  const auto& cfg = ctx_.config();
  const auto silent = std::chrono::steady_clock::now() - last_heard_;
  if (cfg.idle_timeout.count() > 0 && silent >= cfg.idle_timeout) {
    ctx_.get_metrics().limit_hit(limit_kind::idle_timeout);
    begin_close(close_code::idle_timeout, "idle timeout", disconnect_reason::idle_timeout, true);
    return;
  }
  if (silent >= cfg.heartbeat_interval + cfg.heartbeat_timeout) {
    begin_close(close_code::heartbeat_timeout, "heartbeat timeout",
                disconnect_reason::heartbeat_timeout, true);
    return;
  }
  if (silent >= cfg.heartbeat_interval && !pinged_) {
    pinged_ = true;
    push_control(ws::encode(ws::opcode::ping, {}));
  }
  arm_timer();
}

std::string ws_session::close_bytes(std::uint16_t code, std::string_view reason) {
  return ws::encode_close(code, reason);
}

void ws_session::transport_closed(disconnect_reason why) {
  if (auto h = handler_.lock()) h->on_ws_closed(*this, why);
}

}  // namespace skyrelay
