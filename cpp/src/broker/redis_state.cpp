// Cluster state on Redis: each node's report and the sums read from them (redis_state.hpp).
#include "skyrelay/broker/redis_state.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <future>

#include "skyrelay/broker/redis_wire.hpp"
#include "skyrelay/core/random.hpp"
#include "skyrelay/hub/broker.hpp"

namespace skyrelay::redis {

namespace {
// KEYS: the nodes set, this node's hash. ARGV: prefix, node, ttl ms, full (1/0), connections,
// then (room tag, count) pairs, count 0 = gone. Returns {-1} when a delta finds the hash
// expired (the caller sends a whole report next), else {alive nodes, other nodes' connections}.
const redis_script report_script{R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[2])
elseif redis.call('EXISTS', KEYS[2]) == 0 then
  return {-1}
end
redis.call('HSET', KEYS[2], 'c', ARGV[5])
for i = 6, #ARGV - 1, 2 do
  if ARGV[i + 1] == '0' then
    redis.call('HDEL', KEYS[2], ARGV[i])
  else
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local nodes = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local conns = 0
for _, id in ipairs(nodes) do
  if id ~= ARGV[2] then
    conns = conns + (tonumber(redis.call('HGET', ARGV[1] .. '{state}:node:' .. id, 'c')) or 0)
  end
end
return {#nodes, conns}
)lua"};

// KEYS: the nodes set. ARGV: prefix, this node, room tag. The other alive nodes' members.
const redis_script room_size_script{R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  if id ~= ARGV[2] then
    n = n + (tonumber(redis.call('HGET', ARGV[1] .. '{state}:node:' .. id, ARGV[3])) or 0)
  end
end
return n
)lua"};
}  // namespace

redis_state::redis_state(hub& local, redis_url url, redis_state_options opts)
    : hub_(local), opts_(std::move(opts)) {
  if (opts_.node_id.empty()) opts_.node_id = new_sid().substr(0, 12);
  opts_.ttl = std::max(opts_.ttl, std::chrono::milliseconds{500});
  client_ = std::make_unique<redis_client>(std::move(url), opts_.seeds);
  timer_ = std::make_unique<boost::asio::steady_timer>(client_->context());
  boost::asio::post(client_->context(), [this] { schedule(); });
}

redis_state::~redis_state() {
  auto stopped = std::make_shared<std::promise<void>>();
  auto done = stopped->get_future();
  boost::asio::post(client_->context(), [this, stopped] {
    stopping_ = true;
    timer_.reset();  // on its thread, before the io_context it belongs to goes
    stopped->set_value();
  });
  done.wait();
  client_.reset();  // joins its thread: no handler of ours runs after this
}

std::string redis_state::state_key(const std::string& node) const {
  return opts_.prefix + "{state}:node:" + node;
}

void redis_state::schedule() {
  if (stopping_) return;
  timer_->expires_after(opts_.ttl / 5);
  timer_->async_wait([this](boost::system::error_code ec) {
    if (ec || stopping_) return;
    report();
    schedule();
  });
}

void redis_state::report() {
  if (in_flight_) return;  // a slow Redis: the next tick sends what changed since
  if (!client_->connected()) {
    need_full_ = true;  // a new connection may be to a server that lost everything
    reported_.clear();
    std::lock_guard lock(mu_);
    view_.known = false;
    return;
  }
  auto rooms = hub_.room_sizes();
  std::size_t unreported = 0;
  if (rooms.size() > opts_.rooms_max) {
    std::nth_element(rooms.begin(), rooms.begin() + opts_.rooms_max, rooms.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    unreported = rooms.size() - opts_.rooms_max;
    rooms.resize(opts_.rooms_max);
  }
  std::unordered_map<std::string, std::size_t> now;
  now.reserve(rooms.size());
  for (const auto& [ch, n] : rooms) now.emplace(room_tag(ch), n);
  std::vector<std::string> args{opts_.prefix, opts_.node_id, std::to_string(opts_.ttl.count()),
                                need_full_ ? "1" : "0", std::to_string(hub_.connection_count())};
  for (const auto& [tag, n] : now) {
    auto it = reported_.find(tag);
    if (need_full_ || it == reported_.end() || it->second != n) {
      args.push_back(tag);
      args.push_back(std::to_string(n));
    }
  }
  if (!need_full_)
    for (const auto& [tag, n] : reported_)
      if (!now.count(tag)) {
        args.push_back(tag);
        args.push_back("0");
      }
  in_flight_ = true;
  const std::size_t reported_rooms = now.size();
  client_->async_eval(
      report_script, {opts_.prefix + "{state}:nodes", state_key(opts_.node_id)}, args,
      [this, now = std::move(now), reported_rooms, unreported](std::error_code ec,
                                                               redis_value v) mutable {
        in_flight_ = false;
        std::lock_guard lock(mu_);
        if (ec || v.elements.empty() || v.elements[0].integer < 0) {
          need_full_ = true;  // unknown what Redis holds now, or the hash expired
          reported_.clear();
          if (ec) ++counters_.report_errors;
          if (ec) view_.known = false;
          return;
        }
        need_full_ = false;
        reported_ = std::move(now);
        ++counters_.reports;
        counters_.rooms_reported = reported_rooms;
        counters_.rooms_unreported = unreported;
        last_ok_ = std::chrono::steady_clock::now();
        view_.known = true;
        view_.nodes = static_cast<std::size_t>(v.elements[0].integer);
        view_.connections =
            v.elements.size() > 1 ? static_cast<std::size_t>(v.elements[1].integer) : 0;
      });
}

std::size_t redis_state::room_size(const channel& room) {
  const std::size_t local = hub_.room_size(room);
  auto v = client_->eval(room_size_script, {opts_.prefix + "{state}:nodes"},
                         {opts_.prefix, opts_.node_id, room_tag(room)}, opts_.call_timeout);
  return local + static_cast<std::size_t>(std::max<long long>(v.integer, 0));
}

cluster_view redis_state::view() const {
  const std::size_t local = hub_.connection_count();  // not under mu_: the hub has its locks
  std::lock_guard lock(mu_);
  cluster_view out = view_;
  out.connections += local;  // others' as last reported, this node's live
  if (out.known)
    out.age = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - last_ok_);
  return out;
}

cluster_counters redis_state::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

}  // namespace skyrelay::redis
