// One WebSocket connection after Beast parsed its HTTP upgrade request: the transport, which
// knows no protocol on top of it. It frames its own output (ws_frame.hpp) so that every byte it
// writes, data and control frames alike, goes through one write loop (net::write_loop, run by
// push_session) that gathers all queued frames into a single write. It owns what every
// WebSocket shares: the RFC 6455 parser and its inbound limits (max_message_size, UTF-8,
// framing), ping/pong heartbeats and the idle timeout, and the close handshake. Each message
// goes to a ws_handler: the JSON protocol (json_ws_handler.hpp) or Engine.IO (eio_session.hpp).
// A Server-Sent Events stream is an sse_session, on the same push_session.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "skyrelay/core/errors.hpp"
#include "skyrelay/net/push_session.hpp"
#include "skyrelay/proto/ws_frame.hpp"

namespace skyrelay {

class ws_session;

// A protocol on top of a WebSocket. The transport calls it, always on the session's own
// executor, with one virtual call per message and the message's bytes in place (valid only
// during the call). `from` tells which session spoke: one handler may see several (Engine.IO's
// upgrade probe, a refused duplicate).
class ws_handler {
 public:
  virtual ~ws_handler() = default;
  // A complete text message (valid UTF-8), or a binary one, while the session is open. The
  // transport has counted it (messages_in); a handler may send, close or do nothing.
  virtual void on_ws_text(ws_session& from, std::string_view text) = 0;
  virtual void on_ws_binary(ws_session& from, std::string_view bytes) = 0;
  // The session ended (after its close handshake, or abruptly), once, if it ever opened.
  virtual void on_ws_closed(ws_session& from, disconnect_reason why) = 0;
  // The session was accepted; nothing is written or read yet. The handler may queue its
  // first messages with ws_session::send_first.
  virtual void on_ws_open(ws_session&) {}
  // The topics the handshake asked for (role checks at accept time). Any thread: answer from
  // state fixed at construction.
  virtual std::vector<std::string> handshake_topics() const { return {}; }
  // The application's answers in the handler's protocol (push_session::answer_text,
  // error_text); null: the JSON protocol's. Any thread: read only state fixed at construction.
  virtual std::optional<std::optional<std::string>> answer_text(std::string_view, bool,
                                                                std::string_view,
                                                                std::string_view) const {
    return std::nullopt;
  }
  virtual std::optional<std::optional<std::string>> error_text(std::string_view,
                                                               std::string_view) const {
    return std::nullopt;
  }
  // A handler with heartbeats of its own (Engine.IO's pings) times them with the transport's
  // heartbeat timer instead of a timer of its own: the transport calls on_ws_heartbeat at the
  // instant ws_heartbeat_due gives (already on the handler's grid, heartbeat_grid.hpp; the
  // latest of the two when its own is sooner) and asks again after each of its timer's
  // wake-ups; time_point::max() for none. On the session's executor; `from` may be a session
  // the handler does not time by (an upgrade probe), which it then answers max() for. When
  // the instant moves earlier, the handler calls ws_session::heartbeat_changed.
  virtual std::chrono::steady_clock::time_point ws_heartbeat_due(const ws_session&) {
    return std::chrono::steady_clock::time_point::max();
  }
  virtual void on_ws_heartbeat(ws_session&) {}
};

class ws_session final : public push_session {
 public:
  // A hub client whose messages go to `handler` (the JSON protocol), which lives as long as
  // the session. Start it with start(). `handshake_response` is the 101 response to write
  // first; `leftover` holds bytes the client sent after its request. `encoder` is the hub's id
  // of the protocol's encoder (session_context::encoders).
  ws_session(net::stream socket, session_context& ctx, std::string sid,
             std::string handshake_response, std::string leftover, encoder_id encoder,
             std::unique_ptr<ws_handler> handler);
  // A transport for a handler that owns the session (Engine.IO); start it with start_with().
  ws_session(net::stream socket, session_context& ctx, std::string sid,
             std::string handshake_response, std::string leftover, encoder_id encoder);
  ~ws_session() override;

  // Starts the transport for a handler with subscribers of its own (Engine.IO): not in the
  // hub, no connect hook, no role checks, no token expiry, no disconnect hook; every message
  // goes to `handler` (held weakly: the handler owns the session's lifetime in its protocol).
  // `first` (may be empty) is written right after the 101 response.
  void start_with(std::weak_ptr<ws_handler> handler, std::string first);

  // The JSON protocol's live reset frame (docs/protocol.md), for a reset that lost
  // something; a mere change of the sequence's name sends nothing.
  void reset(const sequence_reset& r) override;
  // The application's answers in its handler's protocol (an envelope's), else the JSON
  // protocol's.
  std::optional<std::string> answer_text(std::string_view request_id, bool ok,
                                         std::string_view data_or_code,
                                         std::string_view message) const override {
    if (owned_handler_)
      if (auto own = owned_handler_->answer_text(request_id, ok, data_or_code, message))
        return *own;
    return push_session::answer_text(request_id, ok, data_or_code, message);
  }
  std::optional<std::string> error_text(std::string_view code,
                                        std::string_view message) const override {
    if (owned_handler_)
      if (auto own = owned_handler_->error_text(code, message)) return *own;
    return push_session::error_text(code, message);
  }

  // permessage-deflate was negotiated in the handshake (proto/permessage_deflate.hpp): RSV1
  // marks compressed inbound messages, inflated within max_message_size (past it: 1009), and
  // outbound data messages of compression_threshold bytes or more go compressed, each frame
  // compressed once for every connection that writes it. Before start() or start_with().
  void enable_deflate();

  // The handler's heartbeat instant (ws_handler::ws_heartbeat_due) may have moved earlier:
  // re-arms the session's timer, in a turn posted to its executor. Thread-safe.
  void heartbeat_changed();

  // Only from ws_handler::on_ws_open: queues `text` as a text frame ahead of everything in
  // the outbox, right after the 101 response and what was queued first before it.
  void send_first(std::string_view text);

 private:
  // push_session
  void open() override;  // the handler's first messages
  void arm_timer() override;  // heartbeat pings and the idle timeout
  std::string close_bytes(std::uint16_t code, std::string_view reason) override;
  bool consume(char* data, std::size_t n) override;
  void frame(net::write_batch& b) override;  // compressed twins, when deflate_
  void heard() override;
  // After a framing error nothing the peer sends can be trusted, its close frame included:
  // the connection ends as soon as our close frame is out (RFC 6455 7.1.7).
  bool ends_when_close_sent() const override { return close_received_ || read_broken_; }
  std::vector<std::string> handshake_topics() const override;
  bool transport_only() const override { return transport_only_; }
  transport_kind metric_transport() const noexcept override {
    return transport_only_ ? transport_kind::socketio : transport_kind::json;
  }
  void transport_closed(disconnect_reason why) override;

  bool on_frame(const ws::inbound& in);
  bool on_message(const ws::inbound& in);  // a text or binary message, to the handler
  bool on_close_frame(const ws::inbound& in);
  // A compressed message, inflated; false when the session closed for it.
  bool on_compressed(const ws::inbound& in);
  void on_timer(boost::system::error_code ec);
  // Calls `fn(handler)` when there is one: the owned handler, else the weak one if alive.
  template <class Fn>
  void with_handler(Fn&& fn);

  ws::parser parser_;
  std::unique_ptr<ws_handler> owned_handler_;  // the JSON protocol: lives with the session
  std::weak_ptr<ws_handler> handler_;          // Engine.IO: owns the session
  bool transport_only_{false};
  bool close_received_{false};
  bool read_broken_{false};  // a framing error: further input is discarded
  bool deflate_{false};      // permessage-deflate negotiated
  std::chrono::steady_clock::time_point last_heard_;
  bool pinged_{false};
};

}  // namespace skyrelay
