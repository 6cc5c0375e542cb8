// One WebSocket connection speaking the skyrelay JSON protocol, after Beast parsed its HTTP
// upgrade request. It frames its own output (ws_frame.hpp) so that every byte it writes, data
// and control frames alike, goes through one write loop (net::write_loop, run by push_session)
// that gathers all queued frames into a single write. A Server-Sent Events stream is an
// sse_session, on the same push_session.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "skyrelay/core/errors.hpp"
#include "skyrelay/limits/inbound_limit.hpp"
#include "skyrelay/net/push_session.hpp"
#include "skyrelay/proto/json_protocol.hpp"
#include "skyrelay/proto/ws_frame.hpp"

namespace skyrelay {

class ws_session;

// Takes over a ws_session's messages for another protocol on top of WebSocket (Engine.IO).
// Every call comes from the session's own executor.
class ws_handler {
 public:
  virtual ~ws_handler() = default;
  // `from` tells which session spoke: one handler may see several (an upgrade probe, a
  // refused duplicate).
  virtual void on_ws_text(ws_session& from, std::string_view text) = 0;
  virtual void on_ws_binary(ws_session& from, std::string_view bytes) = 0;
  // The session ended (after its close handshake, or abruptly).
  virtual void on_ws_closed(ws_session& from, disconnect_reason why) = 0;
};

class ws_session : public push_session {
 public:
  // `handshake_response` is the 101 response to write first; `leftover` holds bytes the client
  // sent after its request; `topic` (may be empty) is joined on acceptance. `encoder` is the
  // hub's id of its transport's encoder (session_context::encoders).
  ws_session(net::stream socket, session_context& ctx, std::string sid,
             std::string handshake_response, std::string leftover, std::string topic,
             encoder_id encoder);
  ~ws_session() override;

  // Starts the session for another protocol: no JSON-protocol welcome, not in the hub, and
  // every message goes to `handler` (held weakly; the handler owns the session's lifetime
  // in its protocol). `first` (may be empty) is written right after the 101 response.
  void start_with(std::weak_ptr<ws_handler> handler, std::string first);

 private:
  // push_session
  void open() override;  // the welcome, and the topic of /ws/<topic>
  void arm_timer() override;  // heartbeat pings and the idle timeout
  std::string close_bytes(std::uint16_t code, std::string_view reason) override;
  bool consume(char* data, std::size_t n) override;
  void heard() override;
  // After a framing error nothing the peer sends can be trusted, its close frame included:
  // the connection ends as soon as our close frame is out (RFC 6455 7.1.7).
  bool ends_when_close_sent() const override { return close_received_ || read_broken_; }
  std::vector<std::string> handshake_topics() const override;
  bool transport_only() const override { return has_handler_; }
  void transport_closed(disconnect_reason why) override;

  bool on_frame(const ws::inbound& in);
  void on_text(std::string_view text);
  void reply_error(error_code code, std::string_view message, std::string_view ref);
  void on_timer(boost::system::error_code ec);

  ws::parser parser_;
  inbound_limit limit_;
  std::string topic_;  // subscribed on acceptance (/ws/<topic>)
  std::weak_ptr<ws_handler> handler_;
  bool has_handler_{false};
  bool close_received_{false};
  bool read_broken_{false};  // a framing error: further input is discarded
  std::chrono::steady_clock::time_point last_heard_;
  bool pinged_{false};
};

}  // namespace skyrelay
