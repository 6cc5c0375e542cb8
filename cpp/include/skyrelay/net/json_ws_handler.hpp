// The skyrelay JSON protocol on a WebSocket (docs/protocol.md): the ws_handler that turns a
// connection's text messages into subscribes, unsubscribes, pings, events and requests, and
// writes the welcome. The wire format itself (decoding client messages, encoding replies) is in
// proto/json_protocol.hpp; the framing, outbox, heartbeats and close in ws_session.
//
// One handler per connection, owned by its ws_session (a hub client: the session is what the
// hub delivers to). Every call comes from that session's executor, so the handler's state
// (the connection's inbound rate limit) needs no lock.
//
// Adding a client message: its type, decoding and reply in proto/json_protocol.*, its
// handling in on_message here. Nothing in the transport changes.
//
// On an endpoint with an envelope (proto/envelope.hpp) the same handling reads the envelope's
// frames and writes its replies: subscribe, unsubscribe and ping kinds are built in, every other
// kind goes to the application, and a reply the envelope has no template for is not sent.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "skyrelay/core/errors.hpp"
#include "skyrelay/limits/inbound_limit.hpp"
#include "skyrelay/net/endpoint_table.hpp"
#include "skyrelay/net/ws_session.hpp"
#include "skyrelay/proto/json_protocol.hpp"

namespace skyrelay {

class session_context;

class json_ws_handler final : public ws_handler {
 public:
  // `context` outlives the handler; `topics` (may be empty: /ws) are joined when the session
  // opens (/ws/<topic>, a declared endpoint's). `ep` is the declared endpoint (null: /ws),
  // which outlives the handler, and `params` its path parameters.
  json_ws_handler(session_context& context, std::vector<std::string> topics,
                  const endpoint* ep = nullptr, path_params params = {});

  // ws_handler
  void on_ws_open(ws_session& s) override;  // the welcome, and the topic of /ws/<topic>
  void on_ws_text(ws_session& s, std::string_view text) override;
  void on_ws_binary(ws_session& s, std::string_view bytes) override;  // an error frame
  void on_ws_closed(ws_session&, disconnect_reason) override {}  // the server's hook says it
  std::vector<std::string> handshake_topics() const override;
  std::optional<std::optional<std::string>> answer_text(std::string_view request_id, bool ok,
                                                        std::string_view data_or_code,
                                                        std::string_view message) const override;
  std::optional<std::optional<std::string>> error_text(std::string_view code,
                                                       std::string_view message) const override;

 private:
  using captured = std::vector<std::string>;  // an envelope's $in values of the frame
  void on_message(ws_session& s, proto::client_message& msg, const captured& in);
  // The connection's message rate (all but pings); false: refused and answered.
  bool within_rate(ws_session& s, const proto::client_message& msg);
  // Client topics and role requirements; false: refused and answered.
  bool authorized(ws_session& s, const proto::client_message& msg);
  void subscribe(ws_session& s, const proto::client_message& msg,
                 const captured& in);  // warms, then:
  void subscribe_now(ws_session& s, const proto::client_message& msg, const captured& in);
  // An event or request, to the application's on_message hook on the dispatcher.
  void dispatch(ws_session& s, proto::client_message& msg, const captured& in);
  // A refusal: a `response` with ok=false to a request, else an `error` frame with `ref`.
  void refuse(ws_session& s, const proto::client_message& msg, error_code code,
              std::string_view message, std::string_view ref, const captured& in = {});
  void reply_error(ws_session& s, error_code code, std::string_view message,
                   std::string_view ref, const captured& in = {});
  // The envelope's reply values that do not depend on the message: time, fresh id, params.
  proto::reply_values envelope_values(std::string& ts, std::string& id) const;
  void send_reply(ws_session& s, std::optional<std::string> text);
  // An envelope's subscribed (or unsubscribed) reply, once per topic of the message.
  void reply_per_topic(ws_session& s, const proto::client_message& msg, const captured& in,
                       bool subscribed);

  session_context& ctx_;
  inbound_limit limit_;
  bool rate_logged_{false};  // a rate_limited record was logged since the last message let in
  const std::vector<std::string> topics_;  // subscribed on acceptance
  const endpoint* ep_;                     // null: /ws
  const proto::envelope* env_;             // the endpoint's envelope; null: the JSON protocol
  const path_params params_;
};

}  // namespace skyrelay
