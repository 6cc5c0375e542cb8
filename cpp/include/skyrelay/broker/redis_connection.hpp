// One connection to a Redis server on Boost.Asio: commands encoded by hiredis's
// redisFormatCommandArgv, replies decoded by hiredis's redisReader, pipelined.
//
// Threads. The connection runs on a strand of its own made on the executor given to create().
// Every public member function may be called from any thread: it posts to the strand and
// returns at once (nothing blocks, nothing runs inline). Every callback (reply, message, ready,
// error) runs on the strand, one at a time, with no lock held; a callback may call any member
// function (the call is posted, so it takes effect after the callback returns).
//
// Ordering. Commands are written in the order their execute() calls reached the strand (calls
// from one thread keep their order) and each completes, exactly once, in that order.
//
// Bounds. At most options::max_pending commands wait for a reply or to be written; one more
// completes at once with redis_errc::queue_full and is not sent.
//
// Loss. The connection does not reconnect: a connection that is lost (read or write error,
// the server closing, a protocol error) completes every pending command with
// redis_errc::connection_lost, calls the error handler once, and stays closed; the owner makes a
// new one when it chooses (a broker must resubscribe and catch up from its stream after a gap,
// which a silent reconnect here would hide).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "skyrelay/broker/redis_stream.hpp"
#include "skyrelay/broker/redis_url.hpp"
#include "skyrelay/broker/redis_value.hpp"
#include "skyrelay/broker/redis_wire.hpp"

struct redisReader;

namespace skyrelay::redis {

// A message pushed to a subscriber connection (`pattern` empty unless from PSUBSCRIBE).
struct redis_message {
  std::string pattern, channel, payload;
};

class redis_connection : public std::enable_shared_from_this<redis_connection> {
 public:
  enum class role {
    commands,    // any command but (P)(UN)SUBSCRIBE; one reply each
    subscriber,  // subscribe()/unsubscribe() only; messages go to the message handler
  };

  struct options {
    redis_url url;
    role mode = role::commands;
    // Commands waiting to be written or for their reply. A broker pipelines publishes, so the
    // bound is large; it only stops a dead server from taking all memory.
    std::size_t max_pending = 65536;
    std::chrono::milliseconds connect_timeout{5000};  // resolve + connect + AUTH + SELECT
  };

  // ec is empty, or redis_errc::server_error with the error reply in the value, or another code.
  using reply_handler = std::function<void(std::error_code, redis_value)>;
  using message_handler = std::function<void(redis_message)>;
  using error_handler = std::function<void(std::error_code)>;

  static std::shared_ptr<redis_connection> create(boost::asio::any_io_executor ex, options opts);
  ~redis_connection();

  // Handlers are set before start() (they are read on the strand from then on).
  void set_message_handler(message_handler h) { on_message_ = std::move(h); }
  void set_error_handler(error_handler h) { on_error_ = std::move(h); }

  // Resolves, connects (TCP_NODELAY), runs the TLS handshake for `rediss://` (see
  // redis_stream.hpp), sends AUTH (when the URL has a password) and SELECT (db not 0), or
  // PING when neither (its error reply, NOAUTH, is not a refusal), then calls `on_ready`
  // with no error once they were answered; or with connect_failed / auth_failed / tls_setup_failed /
  // no_answer, or the TLS handshake's own error (OpenSSL's reason, e.g. "certificate verify
  // failed"), after which the connection is closed (the error handler is not called). Commands given before
  // ready wait in the queue and are written after SELECT. Call once.
  void start(std::function<void(std::error_code)> on_ready);

  // Sends one command (`args`: name and arguments, binary-safe). Commands role only.
  void execute(std::vector<std::string> args, reply_handler done);

  // SUBSCRIBE / UNSUBSCRIBE / PSUBSCRIBE / PUNSUBSCRIBE to a non-empty list; `done` runs after
  // the server confirmed every name. Subscriber role only. Messages published after the
  // confirmation reach the message handler in the order the server sends them.
  void subscribe(std::vector<std::string> channels, reply_handler done);
  void unsubscribe(std::vector<std::string> channels, reply_handler done);
  void psubscribe(std::vector<std::string> patterns, reply_handler done);
  void punsubscribe(std::vector<std::string> patterns, reply_handler done);
  // Redis 7's sharded pub/sub (Cluster): the channels must be in one hash slot, served by the
  // server this connection is on (else the server refuses with MOVED: `done` gets
  // redis_errc::server_error and the reply). Messages from SPUBLISH reach the message handler
  // like PUBLISH's. A server that stops serving the slot (resharding) unsubscribes the
  // connection by itself; that unasked reply closes the connection as a protocol error, so
  // the owner reconnects and looks up the slots again.
  void ssubscribe(std::vector<std::string> channels, reply_handler done);
  void sunsubscribe(std::vector<std::string> channels, reply_handler done);

  // Closes the socket; pending commands complete with redis_errc::closed; no error handler.
  // Commands given after a close or a loss complete with the code that closed it.
  void close();

  redis_connection(const redis_connection&) = delete;
  redis_connection& operator=(const redis_connection&) = delete;

 private:
  struct entry {
    std::string bytes;         // the encoded command, until written
    std::size_t replies = 1;   // replies still expected (one per channel for SUBSCRIBE & co)
    bool internal = false;     // AUTH / SELECT: not counted in max_pending
    reply_handler done;
  };
  enum class state { idle, connecting, handshake, ready, closed };

  redis_connection(boost::asio::any_io_executor ex, options opts);

  void do_start(std::function<void(std::error_code)> on_ready);
  void on_resolve(std::error_code ec, boost::asio::ip::tcp::resolver::results_type results);
  void on_connect(std::error_code ec);
  void on_tls(std::error_code ec);
  std::error_code loss_code(std::error_code ec) const;
  void do_handshake();
  void on_handshake_reply(std::error_code ec, bool last);
  void finish_start(std::error_code ec);
  void enqueue(std::vector<std::string> args, std::size_t replies, role needed, reply_handler done);
  void do_write();
  void on_write(std::error_code ec);
  void do_read();
  void on_read(std::error_code ec, std::size_t n);
  void dispatch(redis_value v);
  void fail(std::error_code why);

  boost::asio::strand<boost::asio::any_io_executor> strand_;
  options opts_;
  boost::asio::ip::tcp::resolver resolver_;
  redis_stream stream_;
  bool tls_broken_ = false;  // the URL's TLS files could not be loaded: start() fails
  bool heard_ = false;       // a byte came from the server
  boost::asio::steady_timer connect_timer_;
  redisReader* reader_;
  state state_ = state::idle;
  std::error_code closed_code_;  // what commands given after the close get
  std::deque<entry> unsent_;
  std::deque<entry> sent_;
  std::size_t user_pending_ = 0;
  std::string write_buf_;
  bool writing_ = false;
  std::vector<char> read_buf_;
  std::function<void(std::error_code)> on_ready_;
  message_handler on_message_;
  error_handler on_error_;
};

// Starts `c` (a commands connection to one cluster seed) and asks it for CLUSTER SLOTS, then
// closes it. `current()` is asked before each step acts (false: the caller has moved on, and
// nothing more is done); `fail(why)` gets a failure to connect or ask, or an answer without a
// master for every slot; `found(map)` gets a full slot map. On `c`'s executor.
void ask_slot_map(const std::shared_ptr<redis_connection>& c, std::function<bool()> current,
                  std::function<void(std::string)> fail,
                  std::function<void(const cluster_map&)> found);

}  // namespace skyrelay::redis
