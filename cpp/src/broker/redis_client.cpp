// redis_client: one command connection on a thread of its own, made again after a loss, with
// blocking calls for the threads that need an answer (redis_client.hpp).
#include "skyrelay/broker/redis_client.hpp"

#include <boost/asio/post.hpp>
#include <openssl/sha.h>

#include <future>
#include <stdexcept>

#include "redis_client_impl.hpp"
#include "skyrelay/core/thread_name.hpp"
#include "skyrelay/hub/broker.hpp"

namespace skyrelay::redis {

namespace asio = boost::asio;

namespace {

std::string sha1_hex(const std::string& text) {
  unsigned char d[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), d);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : d) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

std::vector<std::string> eval_args(const char* verb, const std::string& script_or_sha,
                                   const std::vector<std::string>& keys,
                                   const std::vector<std::string>& args) {
  std::vector<std::string> out{verb, script_or_sha, std::to_string(keys.size())};
  out.insert(out.end(), keys.begin(), keys.end());
  out.insert(out.end(), args.begin(), args.end());
  return out;
}
}  // namespace

redis_script::redis_script(std::string t) : text(std::move(t)), sha(sha1_hex(text)) {}

void redis_client::impl::connect() {
  const unsigned g = ++gen;
  if (clustered()) return discover(g, 0);
  redis_connection::options o;
  o.url = url;
  o.mode = redis_connection::role::commands;
  auto c = redis_connection::create(io.get_executor(), o);
  c->set_error_handler([this, g](std::error_code ec) { lost(g, "lost: " + ec.message()); });
  c->start([this, g, w = std::weak_ptr<redis_connection>(c)](std::error_code ec) {
    auto c = w.lock();
    if (g != gen || !c) return;
    if (ec) return lost(g, "cannot connect to redis at " + url.host + ":" +
                               std::to_string(url.port) + ": " + ec.message());
    ready(g, c);
  });
  std::lock_guard lock(mu);
  opened = {c};
}

void redis_client::impl::ready(unsigned g, std::shared_ptr<redis_connection> c) {
  if (g != gen) return;
  backoff.reset();
  std::lock_guard lock(mu);
  conn = std::move(c);
  why.clear();
  connected = true;
}

void redis_client::impl::lost(unsigned g, std::string reason) {
  if (g != gen || stopping) return;
  ++gen;
  std::vector<std::shared_ptr<redis_connection>> old;
  {
    std::lock_guard lock(mu);
    old.swap(opened);
    conn.reset();
    masters.clear();
    owner.clear();
    why = "redis connection " + std::move(reason);
    connected = false;
  }
  for (auto& c : old) c->close();
  backoff.schedule(retry, [this] {
    if (!stopping) connect();
  });
}

std::shared_ptr<redis_connection> redis_client::impl::route(const std::string& key,
                                                           std::string* host) {
  std::lock_guard lock(mu);
  if (!connected) return nullptr;
  if (masters.empty() || owner.empty()) {
    if (host) *host = url.host;
    return conn;
  }
  const int i = owner[key_slot(key)];
  const auto& m = masters[static_cast<std::size_t>(i < 0 ? 0 : i)];
  if (host) *host = m.first.substr(0, m.first.rfind(':'));
  return m.second;
}

void redis_client::impl::exec(const std::string& key, std::vector<std::string> args,
                              reply_fn done) {
  std::string host;
  auto c = route(key, &host);
  if (!c) {
    if (done)
      asio::post(io, [done = std::move(done)] {
        done(make_error_code(redis_errc::connection_lost), {});
      });
    return;
  }
  if (!clustered()) return c->execute(std::move(args), std::move(done));
  // A cluster: the slot may have moved since the map was read (MOVED, ASK): followed once.
  auto kept = std::make_shared<std::vector<std::string>>(args);
  c->execute(std::move(args), [this, host, kept, done = std::move(done)](
                                  std::error_code ec, redis_value v) mutable {
    if (ec == redis_errc::server_error && follow(v.str, host, kept, done)) return;
    if (done) done(ec, std::move(v));
  });
}

redis_client::redis_client(redis_url url, std::vector<redis_endpoint> cluster_seeds)
    : impl_(std::make_shared<impl>(std::move(url), std::move(cluster_seeds))) {
  impl* i = impl_.get();
  asio::post(i->io, [i] { i->connect(); });
  i->thread = std::thread([i] { i->io.run(); });
  name_thread(i->thread, "skyrelay-redis");
}

redis_client::~redis_client() {
  impl* i = impl_.get();
  asio::post(i->io, [i] {
    i->stopping = true;
    ++i->gen;
    i->retry.cancel();
    std::vector<std::shared_ptr<redis_connection>> old;
    {
      std::lock_guard lock(i->mu);
      old.swap(i->opened);
      i->connected = false;
    }
    for (auto& c : old) c->close();
  });
  i->guard.reset();
  i->thread.join();
  i->conn.reset();
  i->masters.clear();
}

bool redis_client::connected() const noexcept { return impl_->connected.load(); }

bool redis_client::wait_connected(std::chrono::milliseconds timeout) const {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!connected() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return connected();
}

std::string redis_client::reason() const {
  std::lock_guard lock(impl_->mu);
  return impl_->why;
}

asio::io_context& redis_client::context() noexcept { return impl_->io; }

redis_value redis_client::call(std::vector<std::string> args, std::chrono::milliseconds timeout) {
  if (!connected()) throw broker_unavailable(reason());
  auto done = std::make_shared<std::promise<std::pair<std::error_code, redis_value>>>();
  auto answer = done->get_future();
  const std::string key = args.size() > 1 ? args[1] : std::string();
  impl_->exec(key, std::move(args), [done](std::error_code ec, redis_value v) {
    done->set_value({ec, std::move(v)});
  });
  if (answer.wait_for(timeout) != std::future_status::ready)
    throw broker_unavailable("no answer from redis within " + std::to_string(timeout.count()) +
                             " ms");
  auto [ec, v] = answer.get();
  if (ec == redis_errc::server_error) throw std::runtime_error("redis: " + v.str);
  if (ec) throw broker_unavailable("redis: " + ec.message());
  return std::move(v);
}

redis_value redis_client::eval(const redis_script& s, const std::vector<std::string>& keys,
                               const std::vector<std::string>& args,
                               std::chrono::milliseconds timeout) {
  // async_eval's own timeout always answers; the wait is only for that answer.
  auto done = std::make_shared<std::promise<redis_value>>();
  auto answer = done->get_future();
  async_eval(s, keys, args, timeout, [done](std::exception_ptr error, redis_value v) {
    if (error) return done->set_exception(error);
    done->set_value(std::move(v));
  });
  return answer.get();
}

void redis_client::send(std::vector<std::string> args) {
  const std::string key = args.size() > 1 ? args[1] : std::string();
  impl_->exec(key, std::move(args), nullptr);
}

void redis_client::async_call(std::vector<std::string> args, reply_fn done) {
  if (!done) done = [](std::error_code, redis_value) {};
  const std::string key = args.size() > 1 ? args[1] : std::string();
  impl_->exec(key, std::move(args), std::move(done));
}

void redis_client::async_eval(const redis_script& s, const std::vector<std::string>& keys,
                              const std::vector<std::string>& args, reply_fn done) {
  if (!done) done = [](std::error_code, redis_value) {};
  // The script text rides along for a NOSCRIPT retry where the key lives (on a cluster, every
  // key of a script is in one slot: the first one routes it).
  const std::string key = keys.empty() ? std::string() : keys.front();
  auto full = std::make_shared<std::vector<std::string>>(eval_args("EVAL", s.text, keys, args));
  impl* i = impl_.get();  // the handler runs on the client's thread, which impl outlives
  i->exec(key, eval_args("EVALSHA", s.sha, keys, args),
          [i, key, full, done = std::move(done)](std::error_code ec, redis_value v) mutable {
            if (ec == redis_errc::server_error && v.str.rfind("NOSCRIPT", 0) == 0)
              return i->exec(key, std::move(*full), std::move(done));
            done(ec, std::move(v));
          });
}

// One call's end: the first of its answer and its timer wins; both run on the client's thread.
struct redis_client::timed_call {
  timed_call(asio::io_context& io, result_fn f) : done(std::move(f)), timer(io) {}
  void finish(std::exception_ptr error, redis_value v) {
    if (over) return;
    over = true;
    timer.cancel();
    done(std::move(error), std::move(v));
  }
  result_fn done;
  asio::steady_timer timer;
  bool over{false};
};

void redis_client::async_eval(const redis_script& s, std::vector<std::string> keys,
                              std::vector<std::string> args, std::chrono::milliseconds timeout,
                              result_fn done) {
  auto call = std::make_shared<timed_call>(impl_->io, std::move(done));
  asio::post(impl_->io, [this, &s, keys = std::move(keys), args = std::move(args), timeout,
                         call, i = impl_] {
    if (!i->connected) {
      return call->finish(std::make_exception_ptr(broker_unavailable(reason())), {});
    }
    call->timer.expires_after(timeout);
    call->timer.async_wait([call, timeout](boost::system::error_code ec) {
      if (ec) return;  // answered first
      call->finish(std::make_exception_ptr(broker_unavailable(
                       "no answer from redis within " + std::to_string(timeout.count()) + " ms")),
                   {});
    });
    async_eval(s, keys, args, [call](std::error_code ec, redis_value v) {
      if (ec == redis_errc::server_error)
        return call->finish(std::make_exception_ptr(std::runtime_error("redis: " + v.str)), {});
      if (ec)
        return call->finish(std::make_exception_ptr(broker_unavailable("redis: " + ec.message())),
                            {});
      call->finish(nullptr, std::move(v));
    });
  });
}

}  // namespace skyrelay::redis
