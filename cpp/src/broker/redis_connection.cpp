#include "skyrelay/broker/redis_connection.hpp"

#include <hiredis/hiredis.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

namespace skyrelay::redis {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// Bytes handed to one write: enough to batch a burst of publishes, small enough to keep the
// buffer from growing with a long queue. One command larger than this is written alone.
constexpr std::size_t max_write_batch = 1 << 20;
constexpr std::size_t read_chunk = 16 * 1024;

redis_value to_value(const redisReply* r) {
  redis_value v;
  switch (r->type) {
    case REDIS_REPLY_STRING: v.type = redis_value::kind::string; break;
    case REDIS_REPLY_STATUS: v.type = redis_value::kind::status; break;
    case REDIS_REPLY_ERROR: v.type = redis_value::kind::error; break;
    case REDIS_REPLY_INTEGER: v.type = redis_value::kind::integer; break;
    case REDIS_REPLY_ARRAY: v.type = redis_value::kind::array; break;
    default: v.type = redis_value::kind::nil; break;
  }
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
      r->type == REDIS_REPLY_ERROR)
    v.str.assign(r->str, r->len);
  else if (r->type == REDIS_REPLY_INTEGER)
    v.integer = r->integer;
  else if (r->type == REDIS_REPLY_ARRAY) {
    v.elements.reserve(r->elements);
    for (std::size_t i = 0; i < r->elements; ++i) v.elements.push_back(to_value(r->element[i]));
  }
  return v;
}

// Encodes with hiredis; empty on failure (hiredis only fails when out of memory).
std::string encode(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  char* cmd = nullptr;
  int n = redisFormatCommandArgv(&cmd, static_cast<int>(args.size()), argv.data(), lens.data());
  if (n < 0 || cmd == nullptr) return {};
  std::string out(cmd, static_cast<std::size_t>(n));
  redisFreeCommand(cmd);
  return out;
}

bool is_push(const redis_value& v, const char* kind, std::size_t size) {
  return v.type == redis_value::kind::array && v.elements.size() == size &&
         v.elements[0].type == redis_value::kind::string && v.elements[0].str == kind;
}

}  // namespace

std::shared_ptr<redis_connection> redis_connection::create(asio::any_io_executor ex,
                                                           options opts) {
  return std::shared_ptr<redis_connection>(new redis_connection(std::move(ex), std::move(opts)));
}

namespace {
// The TLS context for `url` (null for plain TCP); `broken` when its files cannot be loaded (a
// broker checked them when it parsed the URL, so only a file changed since gets here).
std::shared_ptr<asio::ssl::context> tls_context(const redis_url& url, bool& broken) {
  if (!url.tls.enabled) return nullptr;
  try {
    return make_tls_context(url.tls);
  } catch (const std::exception&) {
    broken = true;
    return nullptr;
  }
}
}  // namespace

redis_connection::redis_connection(asio::any_io_executor ex, options opts)
    : strand_(asio::make_strand(ex)),
      opts_(std::move(opts)),
      resolver_(strand_),
      stream_(strand_, tls_context(opts_.url, tls_broken_)),
      connect_timer_(strand_),
      reader_(redisReaderCreate()),
      read_buf_(read_chunk) {
  if (reader_ == nullptr) throw std::bad_alloc();
}

redis_connection::~redis_connection() { redisReaderFree(reader_); }

void redis_connection::start(std::function<void(std::error_code)> on_ready) {
  asio::post(strand_, [self = shared_from_this(), f = std::move(on_ready)]() mutable {
    self->do_start(std::move(f));
  });
}

void redis_connection::execute(std::vector<std::string> args, reply_handler done) {
  enqueue(std::move(args), 1, role::commands, std::move(done));
}

void redis_connection::subscribe(std::vector<std::string> channels, reply_handler done) {
  channels.insert(channels.begin(), "SUBSCRIBE");
  enqueue(std::move(channels), 0, role::subscriber, std::move(done));
}

void redis_connection::unsubscribe(std::vector<std::string> channels, reply_handler done) {
  channels.insert(channels.begin(), "UNSUBSCRIBE");
  enqueue(std::move(channels), 0, role::subscriber, std::move(done));
}

void redis_connection::psubscribe(std::vector<std::string> patterns, reply_handler done) {
  patterns.insert(patterns.begin(), "PSUBSCRIBE");
  enqueue(std::move(patterns), 0, role::subscriber, std::move(done));
}

void redis_connection::punsubscribe(std::vector<std::string> patterns, reply_handler done) {
  patterns.insert(patterns.begin(), "PUNSUBSCRIBE");
  enqueue(std::move(patterns), 0, role::subscriber, std::move(done));
}

void redis_connection::ssubscribe(std::vector<std::string> channels, reply_handler done) {
  channels.insert(channels.begin(), "SSUBSCRIBE");
  enqueue(std::move(channels), 0, role::subscriber, std::move(done));
}

void redis_connection::sunsubscribe(std::vector<std::string> channels, reply_handler done) {
  channels.insert(channels.begin(), "SUNSUBSCRIBE");
  enqueue(std::move(channels), 0, role::subscriber, std::move(done));
}

void redis_connection::close() {
  asio::post(strand_, [self = shared_from_this()] { self->fail(redis_errc::closed); });
}

// `replies` 0 means one reply per argument after the command name (SUBSCRIBE and its kin).
void redis_connection::enqueue(std::vector<std::string> args, std::size_t replies, role needed,
                               reply_handler done) {
  asio::post(strand_, [self = shared_from_this(), args = std::move(args), replies, needed,
                       done = std::move(done)]() mutable {
    auto complete = [&](std::error_code ec) {
      if (done) done(ec, redis_value{});
    };
    if (self->state_ == state::closed) return complete(self->closed_code_);
    if (args.empty() || (replies == 0 && args.size() < 2)) return complete(redis_errc::bad_command);
    if (needed != self->opts_.mode) return complete(redis_errc::wrong_mode);
    if (self->user_pending_ >= self->opts_.max_pending) return complete(redis_errc::queue_full);
    entry e;
    e.bytes = encode(args);
    if (e.bytes.empty()) return complete(redis_errc::bad_command);
    e.replies = replies == 0 ? args.size() - 1 : replies;
    e.done = std::move(done);
    self->unsent_.push_back(std::move(e));
    ++self->user_pending_;
    self->do_write();
  });
}

void redis_connection::do_start(std::function<void(std::error_code)> on_ready) {
  if (state_ != state::idle) {
    if (on_ready) on_ready(redis_errc::closed);
    return;
  }
  on_ready_ = std::move(on_ready);
  state_ = state::connecting;
  if (tls_broken_) return fail(redis_errc::tls_setup_failed);
  connect_timer_.expires_after(opts_.connect_timeout);
  connect_timer_.async_wait([self = shared_from_this()](std::error_code ec) {
    if (!ec && (self->state_ == state::connecting || self->state_ == state::handshake))
      self->fail(redis_errc::connect_failed);
  });
  resolver_.async_resolve(opts_.url.host, std::to_string(opts_.url.port),
                          [self = shared_from_this()](std::error_code ec, auto results) {
                            self->on_resolve(ec, std::move(results));
                          });
}

void redis_connection::on_resolve(std::error_code ec, tcp::resolver::results_type results) {
  if (state_ != state::connecting) return;
  if (ec) return fail(redis_errc::connect_failed);
  asio::async_connect(stream_.socket(), results,
                      [self = shared_from_this()](std::error_code ec, const tcp::endpoint&) {
                        self->on_connect(ec);
                      });
}

void redis_connection::on_connect(std::error_code ec) {
  if (state_ != state::connecting) return;
  if (ec) return fail(redis_errc::connect_failed);
  boost::system::error_code ignored;  // the connection works without either option
  stream_.socket().set_option(tcp::no_delay(true), ignored);
  stream_.socket().set_option(asio::socket_base::keep_alive(true), ignored);
  stream_.async_handshake(opts_.url.tls, opts_.url.host,
                          [self = shared_from_this()](std::error_code ec) { self->on_tls(ec); });
}

// After the TLS handshake (at once for plain TCP). A TLS error is passed on as OpenSSL gave it:
// its message says why (an unknown CA, a name mismatch, a plaintext server).
void redis_connection::on_tls(std::error_code ec) {
  if (state_ != state::connecting) return;
  if (ec) return fail(ec);
  state_ = state::handshake;
  do_read();
  do_handshake();
}

// What a read or write error `ec` means: a plaintext connection the server closed before
// saying anything is most likely a TLS port (it drops the bytes it cannot decrypt); a TLS one
// that fails before the first reply was refused by the server (OpenSSL's reason says why, e.g.
// "certificate required" from a server that wants a client certificate).
std::error_code redis_connection::loss_code(std::error_code ec) const {
  if (!heard_) return stream_.is_tls() ? ec : std::error_code(redis_errc::no_answer);
  return state_ == state::ready ? redis_errc::connection_lost : redis_errc::connect_failed;
}

// AUTH and SELECT (or a PING) go in front of any queued command; do_write() writes nothing
// else until they are answered.
void redis_connection::do_handshake() {
  std::vector<std::vector<std::string>> cmds;
  const auto& url = opts_.url;
  if (!url.password.empty()) {
    if (url.user.empty())
      cmds.push_back({"AUTH", url.password});
    else
      cmds.push_back({"AUTH", url.user, url.password});
  }
  if (url.db != 0) cmds.push_back({"SELECT", std::to_string(url.db)});
  // Without either, a PING: the start ends once the server answered, so a server that closes
  // without a word (a TLS port spoken to in plaintext) fails the start with no_answer. Its
  // error reply (NOAUTH) is no refusal: the commands get it themselves, as without the PING.
  const bool ping = cmds.empty();
  if (ping) cmds.push_back({"PING"});
  for (std::size_t i = cmds.size(); i-- > 0;) {
    entry e;
    e.bytes = encode(cmds[i]);
    e.internal = true;
    bool last = i + 1 == cmds.size();
    e.done = [this, last, ping](std::error_code ec, redis_value) {
      on_handshake_reply(ping && ec == redis_errc::server_error ? std::error_code() : ec, last);
    };
    unsent_.push_front(std::move(e));
  }
  do_write();
}

void redis_connection::on_handshake_reply(std::error_code ec, bool last) {
  if (state_ != state::handshake) return;
  if (ec) return fail(redis_errc::auth_failed);
  if (last) finish_start({});
}

void redis_connection::finish_start(std::error_code ec) {
  state_ = state::ready;
  connect_timer_.cancel();
  if (auto f = std::move(on_ready_)) {
    on_ready_ = nullptr;
    f(ec);
  }
  do_write();
}

void redis_connection::do_write() {
  if (writing_ || unsent_.empty()) return;
  if (state_ != state::ready && state_ != state::handshake) return;
  write_buf_.clear();
  while (!unsent_.empty() && write_buf_.size() < max_write_batch) {
    auto& e = unsent_.front();
    if (state_ == state::handshake && !e.internal) break;
    write_buf_ += e.bytes;
    e.bytes = std::string();
    sent_.push_back(std::move(e));
    unsent_.pop_front();
  }
  if (write_buf_.empty()) return;
  writing_ = true;
  stream_.async_write(asio::buffer(write_buf_),
                      [self = shared_from_this()](std::error_code ec, std::size_t) {
                        self->on_write(ec);
                      });
}

void redis_connection::on_write(std::error_code ec) {
  writing_ = false;
  if (state_ == state::closed) return;
  if (ec) return fail(loss_code(ec));
  do_write();
}

void redis_connection::do_read() {
  stream_.async_read_some(asio::buffer(read_buf_),
                          [self = shared_from_this()](std::error_code ec, std::size_t n) {
                            self->on_read(ec, n);
                          });
}

void redis_connection::on_read(std::error_code ec, std::size_t n) {
  if (state_ == state::closed) return;
  if (ec) return fail(loss_code(ec));
  heard_ = true;
  if (redisReaderFeed(reader_, read_buf_.data(), n) != REDIS_OK)
    return fail(redis_errc::protocol_error);
  // Each reply is handed on before the next is parsed; a handler may close the connection.
  while (state_ != state::closed) {
    void* raw = nullptr;
    if (redisReaderGetReply(reader_, &raw) != REDIS_OK) return fail(redis_errc::protocol_error);
    if (raw == nullptr) break;
    redis_value v = to_value(static_cast<redisReply*>(raw));
    freeReplyObject(raw);
    dispatch(std::move(v));
  }
  if (state_ != state::closed) do_read();
}

void redis_connection::dispatch(redis_value v) {
  if (opts_.mode == role::subscriber && on_message_) {
    if (is_push(v, "message", 3) || is_push(v, "smessage", 3))
      return on_message_({{}, std::move(v.elements[1].str), std::move(v.elements[2].str)});
    if (is_push(v, "pmessage", 4))
      return on_message_({std::move(v.elements[1].str), std::move(v.elements[2].str),
                          std::move(v.elements[3].str)});
  } else if (opts_.mode == role::subscriber &&
             (is_push(v, "message", 3) || is_push(v, "smessage", 3) ||
              is_push(v, "pmessage", 4))) {
    return;  // no handler: the owner chose to ignore messages
  }
  if (sent_.empty()) return fail(redis_errc::protocol_error);  // a reply nobody asked for
  auto& front = sent_.front();
  // An error answers the whole command (a refused SUBSCRIBE sends one error, not one per name).
  if (!v.is_error() && --front.replies > 0) return;
  entry e = std::move(front);
  sent_.pop_front();
  if (!e.internal) --user_pending_;
  std::error_code ec;
  if (v.is_error()) ec = redis_errc::server_error;
  if (e.done) e.done(ec, std::move(v));
}

// Closes for good: every pending command completes with `why`, outside any state we iterate.
void redis_connection::fail(std::error_code why) {
  if (state_ == state::closed) return;
  auto was = state_;
  state_ = state::closed;
  closed_code_ = why;
  connect_timer_.cancel();
  resolver_.cancel();
  stream_.close();
  auto sent = std::move(sent_);
  auto unsent = std::move(unsent_);
  sent_.clear();
  unsent_.clear();
  user_pending_ = 0;
  auto ready = std::move(on_ready_);
  on_ready_ = nullptr;
  for (auto* q : {&sent, &unsent})
    for (auto& e : *q)
      if (!e.internal && e.done) e.done(why, redis_value{});
  if (ready) ready(why);
  if (was == state::ready && why != redis_errc::closed && on_error_) on_error_(why);
}

void ask_slot_map(const std::shared_ptr<redis_connection>& c, std::function<bool()> current,
                  std::function<void(std::string)> fail,
                  std::function<void(const cluster_map&)> found) {
  c->start([c, current, fail, found](std::error_code ec) {
    if (!current()) return;
    if (ec) return fail(ec.message());
    c->execute({"CLUSTER", "SLOTS"}, [c, current, fail, found](std::error_code ec, redis_value v) {
      if (!current()) return;
      c->close();
      if (ec) return fail(v.str.empty() ? ec.message() : v.str);
      auto map = parse_cluster_slots(v);
      if (!map || map->masters.empty()) return fail("no slot map in its CLUSTER SLOTS answer");
      for (int owner : map->owner)
        if (owner < 0) return fail("it does not know a master for every slot");
      found(*map);
    });
  });
}

}  // namespace skyrelay::redis
