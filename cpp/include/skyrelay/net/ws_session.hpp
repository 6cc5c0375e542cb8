// One WebSocket connection speaking the skyrelay JSON protocol, after Beast parsed its HTTP
// upgrade request. It frames its own output (ws_frame.hpp) so that every byte it writes, data
// and control frames alike, goes through one write loop (net::write_loop) that gathers all
// queued frames into a single write.
//
// The same class serves a Server-Sent Events stream (make_sse): a chunked HTTP response whose
// frames are SSE blocks, with keep-alive comments instead of pings and no inbound messages.
#pragma once

#include <atomic>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/core/errors.hpp"
#include "skyrelay/limits/inbound_limit.hpp"
#include "skyrelay/hub/subscriber.hpp"
#include "skyrelay/net/aliases.hpp"
#include "skyrelay/net/outbox.hpp"
#include "skyrelay/net/stream.hpp"
#include "skyrelay/net/write_loop.hpp"
#include "skyrelay/proto/json_protocol.hpp"
#include "skyrelay/proto/ws_frame.hpp"

namespace skyrelay {

class session_context;
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

class ws_session : public subscriber,
                   public std::enable_shared_from_this<ws_session>,
                   private net::write_loop::owner {
 public:
  // `handshake_response` is the 101 response to write first; `leftover` holds bytes the client
  // sent after its request; `topic` (may be empty) is joined on acceptance.
  ws_session(net::stream socket, session_context& ctx, std::string sid, std::string handshake_response,
             std::string leftover, std::string topic,
             wire_format format = wire_format::json_ws);
  // A Server-Sent Events stream: `response_head` is the HTTP response header block; it joins
  // `topics` on acceptance and replays what came after `last_event_id` (may be empty).
  static std::shared_ptr<ws_session> make_sse(net::stream socket, session_context& ctx, std::string sid,
                                              std::string response_head,
                                              std::vector<std::string> topics,
                                              std::string last_event_id);
  ~ws_session() override;

  // Registers the session with the hub and the server. Accepts at once unless the application
  // has a connect hook, in which case it waits for accept() or refuse().
  void start(const std::string& path, const std::string& query,
             std::vector<std::pair<std::string, std::string>> headers);
  // Starts the session for another protocol: no JSON-protocol welcome, not in the hub, and
  // every message goes to `handler` (held weakly; the handler owns the session's lifetime
  // in its protocol). `first` (may be empty) is written right after the 101 response.
  void start_with(std::weak_ptr<ws_handler> handler, std::string first);

  // Thread-safe; each posts to the session's executor.
  void accept();
  void refuse(unsigned status, std::string message);
  void close(std::uint16_t code, std::string reason, disconnect_reason why);
  // Queues a text payload (a response or an error) that must not be dropped.
  void send_text(std::string_view payload);
  // Whether a replay this big can be queued at once without overflowing the outbox.
  bool replay_fits(const std::vector<frame_ptr>& frames) const;

  void deliver(const frame_ptr& f, overflow_policy policy) override;
  // Delivers `group` as one (outbox::push_group): nothing another thread delivers meanwhile
  // comes between its frames. Any thread.
  void deliver_group(const std::vector<frame_ptr>& group, overflow_policy policy);
  // The verified token of the handshake (JSON protocol or SSE); set before start(). Once the
  // session is open, a timer ends it when the token expires (identity::ends_at): close code
  // 4003 "token expired", or for SSE a `token_expired` event and the end of the stream.
  void set_identity(auth::identity_ptr id) { identity_ = std::move(id); }
  const auth::identity_ptr& identity() const noexcept { return identity_; }
  // Roles the application's connect hook gave the connection (server::accept), in place of
  // its token's. Thread-safe; call before accept().
  void grant_roles(std::vector<std::string> roles);
  // The roles role requirements are checked against: the granted ones, else the token's.
  // Thread-safe.
  std::shared_ptr<const std::vector<std::string>> roles() const;
  // Whether the handshake's role requirements (the "/" namespace, and its topics) refuse the
  // connection's roles; counted in skyrelay_forbidden_total. Thread-safe.
  std::optional<auth::access_denial> role_refusal() const;
  // Refuses the pending handshake with 403 {"error":"forbidden","message":...}. Thread-safe.
  void refuse_forbidden(std::string message);
  // Keeps the connection's admission slot (server::admit) for as long as the session lives.
  void hold(std::shared_ptr<void> slot) { slot_ = std::move(slot); }
  // Runs `fn` on the session's executor, after the work already posted there (such as the
  // flush of what was just delivered).
  void post(std::function<void()> fn) { asio::post(socket_.get_executor(), std::move(fn)); }

  // Ends the session at once, without a close handshake. Only for server::stop() once the I/O
  // threads have been joined.
  void terminate() { finish(disconnect_reason::server_shutdown); }

 private:
  enum class state : std::uint8_t { pending, open, closing, closed };

  void on_accept();
  void do_read();
  void on_readable(boost::system::error_code ec);
  void on_tls_read(boost::system::error_code ec, std::size_t n);  // TLS: one decrypted read
  void on_read_error(boost::system::error_code ec);
  // Feeds bytes to the parser; false when the session finished meanwhile.
  bool consume(char* data, std::size_t n);
  bool on_frame(const ws::inbound& in);
  void on_text(std::string_view text);
  void reply_error(error_code code, std::string_view message, std::string_view ref);
  void push_control(std::string bytes);

  void schedule_flush();
  // Counts a push's drops, closes on overflow, starts the writer when asked.
  void on_pushed(const outbox::push_result& r);
  void flush();  // runs the write loop
  // net::write_loop::owner
  void fill(net::write_batch& b) override;
  void written(boost::system::error_code ec) override;
  void write_timed_out() override;  // a write pending for write_timeout: cut as a slow consumer
  std::shared_ptr<void> keep_alive() override;

  void arm_timer();
  void open_sse();  // on acceptance: welcome, topics, replay or reset
  void on_timer(boost::system::error_code ec);
  void arm_expiry();  // on acceptance, when the handshake carried a token
  void on_expired();
  void begin_close(std::uint16_t code, std::string_view reason, disconnect_reason why,
                   bool drop_queued);
  void finish(disconnect_reason why);

  net::stream socket_;
  // TLS only: decrypted bytes land here (a TLS read cannot wait for readiness first, so it
  // needs a buffer of its own); plain TCP reads use the per-thread buffer.
  std::unique_ptr<std::array<char, 8 * 1024>> tls_buffer_;
  session_context& ctx_;
  outbox outbox_;
  ws::parser parser_;
  asio::steady_timer timer_;
  asio::steady_timer expiry_timer_;  // the token's end (identity_->ends_at)
  net::write_loop writer_;
  auth::identity_ptr identity_;
  std::atomic<std::shared_ptr<const std::vector<std::string>>> granted_roles_;

  std::string prefix_;  // bytes to write before the outbox (the 101 response, welcome, close)
  std::string topic_;   // subscribed on acceptance (/ws/<topic>)
  std::string early_bytes_;               // sent by the client before we accepted
  std::vector<frame_ptr> final_frames_;   // queued frames still to send before the close frame
  std::weak_ptr<ws_handler> handler_;
  bool has_handler_{false};
  std::string close_frame_;

  state state_{state::pending};
  bool close_sent_{false};
  bool close_received_{false};
  bool finished_{false};
  bool opened_{false};       // accepted: on_disconnect is due when it ends
  bool refused_{false};      // the handshake was refused with an HTTP response
  bool read_broken_{false};  // a framing error: further input is discarded
  disconnect_reason close_reason_{disconnect_reason::transport_error};
  // Server-Sent Events mode.
  std::shared_ptr<void> slot_;
  inbound_limit limit_;
  bool sse_{false};
  std::vector<std::string> sse_topics_;
  std::string sse_last_id_;
  std::string sse_head_;       // the HTTP response header, written once before the first chunk
  std::string chunk_head_;     // "<size>\r\n" of the next chunk
  std::chrono::steady_clock::time_point last_heard_;
  bool pinged_{false};
};

}  // namespace skyrelay
