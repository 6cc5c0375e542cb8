// What a WebSocket (ws_session, the transport of the JSON protocol and of Engine.IO) and a
// Server-Sent Events stream (sse_session) share: one client connection after its HTTP
// handshake, in the hub (as its subscriber: the hub delivers into this outbox) and in the
// server's sid table, held pending while the application's connect hook decides, then fed from
// its outbox through one write loop (net::write_loop) until it closes. A derived class says how
// its frames go on the wire, what it writes on acceptance and how it keeps the connection alive.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/core/errors.hpp"
#include "skyrelay/hub/subscriber.hpp"
#include "skyrelay/net/aliases.hpp"
#include "skyrelay/net/flush_queue.hpp"
#include "skyrelay/net/outbox.hpp"
#include "skyrelay/net/stream.hpp"
#include "skyrelay/net/write_loop.hpp"

namespace skyrelay {

class session_context;

class push_session : public subscriber,
                     public std::enable_shared_from_this<push_session>,
                     private net::write_loop::owner {
 public:
  ~push_session() override;

  // Registers the session with the hub and the server. Accepts at once unless the application
  // has a connect hook, in which case it waits for accept() or refuse(). `scheme` is the
  // handshake's ("http" or "https", http_session::client_scheme), for the hook only.
  void start(const std::string& path, const std::string& query,
             std::vector<std::pair<std::string, std::string>> headers, std::string_view scheme);

  // Thread-safe; each posts to the session's executor.
  void accept();
  void refuse(unsigned status, std::string message);
  void close(std::uint16_t code, std::string reason, disconnect_reason why);
  // Queues a text payload (a response or an error) as a WebSocket text frame; must not be
  // dropped.
  void send_text(std::string_view payload);
  // Whether the session takes the application's answers (server::respond, send_error), which
  // go out through send_text. A WebSocket does; a transport whose wire has no frame for them
  // says no (SSE). Any thread; constant for the session's life.
  virtual bool takes_answers() const noexcept { return true; }
  // The application's answer to request `request_id` (server::respond: ok with JSON text
  // `data_or_code`, else its error code and message), and an error frame it sends
  // (server::send_error), as this session's protocol writes them; null: nothing is sent. By
  // default the JSON protocol's response and error. Any thread.
  virtual std::optional<std::string> answer_text(std::string_view request_id, bool ok,
                                                 std::string_view data_or_code,
                                                 std::string_view message) const;
  virtual std::optional<std::string> error_text(std::string_view code,
                                                std::string_view message) const;
  // Whether a replay this big can be queued at once without overflowing the outbox.
  bool replay_fits(const std::vector<frame_ptr>& frames) const;

  void deliver(const frame_ptr& f, overflow_policy policy) override;
  // Delivers `group` as one (outbox::push_group): nothing another thread delivers meanwhile
  // comes between its frames. Any thread.
  void deliver_group(const std::vector<frame_ptr>& group, overflow_policy policy);
  // The verified token of the handshake; set before start(). Once the session is open, a timer
  // ends it when the token expires (identity::ends_at): close code 4003 "token expired", or
  // for SSE a `token_expired` event and the end of the stream.
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
  // The client's "ip:port" the connect hook shows (conn.remote): behind a trusted proxy, the
  // one its header named (net/client_address.hpp). Set before start(); empty: the socket's
  // peer.
  void set_remote(std::string remote) {
    if (!remote.empty()) remote_ = std::make_unique<std::string>(std::move(remote));
  }
  // Keeps the connection's admission slot (server::admit) for as long as the session lives.
  void hold(std::shared_ptr<void> slot) { slot_ = std::move(slot); }
  // Runs `fn` on the session's executor, after the work already posted there (such as the
  // flush of what was just delivered).
  void post(std::function<void()> fn) { asio::post(socket_.get_executor(), std::move(fn)); }

  // Ends the session at once, without a close handshake. Only for server::stop() once the I/O
  // threads have been joined.
  void terminate() { finish(disconnect_reason::server_shutdown); }

 protected:
  enum class state : std::uint8_t { pending, open, closing, closed };

  // `prefix` is written first once the session is accepted (the 101 response; empty for SSE).
  // `encoder` is the hub's id of its transport's encoder (session_context::encoders).
  push_session(net::stream socket, session_context& ctx, std::string sid, std::string prefix,
               encoder_id encoder);

  template <class Derived>
  std::shared_ptr<Derived> self_as() {
    return std::static_pointer_cast<Derived>(shared_from_this());
  }

  // What a derived session says. Each runs on the session's executor.
  // On acceptance, before the first read: queue the welcome (into prefix_ or the outbox).
  virtual void open() = 0;
  // Starts (or restarts) the timer that keeps an open connection alive.
  virtual void arm_timer() = 0;
  // Wraps the batch for the wire: prefix_ and the taken frames. By default prefix_ goes first.
  virtual void frame(net::write_batch& b) { b.before(prefix_); }
  // The bytes that end the stream (a close frame, the last chunk).
  virtual std::string close_bytes(std::uint16_t code, std::string_view reason) = 0;
  // Bytes the peer sent; false when the session finished meanwhile. By default ignored.
  virtual bool consume(char* data, std::size_t n);
  // The peer spoke (any bytes).
  virtual void heard() {}
  // Whether an end of stream from the peer is its goodbye rather than a transport error.
  virtual bool eof_is_goodbye() const { return false; }
  // Once the close bytes are out: whether the connection ends now (else it waits for the peer).
  virtual bool ends_when_close_sent() const = 0;
  // Queued before the close when the token expires.
  virtual void expiry_notice() {}
  // The topics the handshake asked for, for role_refusal.
  virtual std::vector<std::string> handshake_topics() const = 0;
  // A transport for another protocol (Engine.IO): not a client of the hub, no role checks, no
  // token expiry, no disconnect hook.
  virtual bool transport_only() const { return false; }
  // The `transport` label of this connection's traffic on /metrics (write_loop::owner).
  transport_kind metric_transport() const noexcept override = 0;
  // The session ended, once, if it ever opened; before the disconnect hook is posted.
  virtual void transport_closed(disconnect_reason) {}
  // Whether frame() would add bytes of the session's own to a batch without frames (a
  // prefix, an SSE head). By default prefix_.
  virtual bool has_own_bytes() const noexcept { return !prefix_.empty(); }

  void on_accept();
  void push_control(std::string bytes);
  void flush();  // runs the write loop
  void begin_close(std::uint16_t code, std::string_view reason, disconnect_reason why,
                   bool drop_queued);
  void finish(disconnect_reason why);

  net::stream socket_;
  session_context& ctx_;
  outbox outbox_;
  net::context_timer timer_;  // on the socket's io_context
  net::write_loop writer_;
  std::string prefix_;  // bytes to write before the outbox (the 101 response, welcome, close)
  // Sent by the client before we accepted (null: nothing), consumed on acceptance.
  std::unique_ptr<std::string> early_bytes_;
  state state_{state::pending};
  bool close_sent_{false};
  bool finished_{false};
  disconnect_reason close_reason_{disconnect_reason::transport_error};
  std::uint16_t close_code_{0};  // begin_close's, for the connection_close log record
  void log_slow_consumer(std::string_view why);
  auth::identity_ptr identity_;

 private:
  void do_read();
  void on_readable(boost::system::error_code ec);
  // Reads what there is now into the I/O thread's buffer (TLS: decrypted); would_block when
  // nothing is.
  std::size_t read_now(boost::system::error_code& ec);
  void on_read_error(boost::system::error_code ec);
  void refuse_with(unsigned status, std::string message, std::string_view error);

  void schedule_flush();
  // Counts a push's drops, closes on overflow, starts the writer when asked.
  void on_pushed(const outbox::push_result& r);
  // net::write_loop::owner
  void fill(net::write_batch& b) override;
  void written(boost::system::error_code ec) override;
  void write_timed_out() override;  // a write pending for write_timeout: cut as a slow consumer
  std::shared_ptr<void> keep_alive() override;
  bool idle_after_write() override;  // open, nothing of its own, and the outbox empty

  void arm_expiry();  // on acceptance, when the handshake carried a token
  void on_expired();

  // The token's end (identity_->ends_at); made by arm_expiry, null without a token.
  std::unique_ptr<asio::steady_timer> expiry_timer_;
  std::atomic<std::shared_ptr<const std::vector<std::string>>> granted_roles_;
  // What begin_close keeps for the close, made only then (~90 bytes an open connection does
  // not keep).
  struct closing {
    std::string text;                   // the reason, for the connection_close log record
    std::vector<frame_ptr> final_frames;  // queued frames still to send before the close bytes
    std::string frame;                  // the close bytes, untouched once made
  };
  std::unique_ptr<closing> closing_;
  bool opened_{false};   // accepted: on_disconnect is due when it ends
  bool refused_{false};  // the handshake was refused with an HTTP response
  std::shared_ptr<void> slot_;
  // set_remote: the client a trusted proxy named; null (most connections): the peer.
  std::unique_ptr<std::string> remote_;
  net::flush_queue& flushes_;  // of the I/O context the session's socket is on
};

}  // namespace skyrelay
