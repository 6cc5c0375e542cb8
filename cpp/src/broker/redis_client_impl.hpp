// redis_client's state (redis_client.hpp), shared by redis_client.cpp (one server) and
// redis_client_cluster.cpp (Redis Cluster: one connection per master, commands routed by the
// hash slot of their key, MOVED and ASK followed once).
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "skyrelay/broker/redis_backoff.hpp"
#include "skyrelay/broker/redis_client.hpp"
#include "skyrelay/broker/redis_connection.hpp"
#include "skyrelay/broker/redis_wire.hpp"

namespace skyrelay::redis {

struct redis_client::impl {
  impl(redis_url u, std::vector<redis_endpoint> s)
      : url(std::move(u)), seeds(std::move(s)), guard(io.get_executor()), retry(io) {}

  bool clustered() const noexcept { return !seeds.empty(); }

  // On the client's thread.
  void connect();
  void lost(unsigned g, std::string reason);
  void ready(unsigned g, std::shared_ptr<redis_connection> c);
  // Redis Cluster (redis_client_cluster.cpp): asks the seeds in order for CLUSTER SLOTS,
  // then opens a connection to every master; connected once all of them are.
  void discover(unsigned g, std::size_t seed);
  void open_masters(unsigned g, const cluster_map& map);
  // The master at host:port, opened now when it is not one of ours yet (mu held by caller).
  std::size_t master_at(unsigned g, const std::string& host, std::uint16_t port);
  // Follows a MOVED or ASK answer to `args` (sent for `key`) once; false when `answer` is
  // neither (the caller hands the answer on).
  bool follow(const std::string& answer, const std::string& from_host,
              std::shared_ptr<std::vector<std::string>> args, reply_fn& done);

  // Any thread. The connection serving `key` (one server: the connection; a cluster: the
  // master of the key's slot), or null while not connected; `host` gets its host.
  std::shared_ptr<redis_connection> route(const std::string& key, std::string* host = nullptr);
  // Sends `args` (whose key, on a cluster, is `key`) where `key` lives; `done` (may be empty)
  // runs on the client's thread, with redis_errc::connection_lost at once when not connected.
  void exec(const std::string& key, std::vector<std::string> args, reply_fn done);

  redis_url url;
  std::vector<redis_endpoint> seeds;  // redis+cluster: the seeds; empty: one server
  boost::asio::io_context io{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard;
  boost::asio::steady_timer retry;
  std::thread thread;
  // The thread's.
  unsigned gen{0};
  bool stopping{false};
  redis_backoff backoff;
  std::string seed_errors;
  std::size_t masters_up{0}, masters_wanted{0};
  // Shared with callers.
  mutable std::mutex mu;
  // Every connection made for this generation (closed on a loss), and while connected the
  // one in use (one server) or the first master's (a cluster).
  std::vector<std::shared_ptr<redis_connection>> opened;
  std::shared_ptr<redis_connection> conn;
  // A cluster's masters ("host:port", connection) and each slot's index among them.
  std::vector<std::pair<std::string, std::shared_ptr<redis_connection>>> masters;
  std::vector<int> owner;
  std::string why{"connecting to redis"};
  std::atomic<bool> connected{false};
  std::atomic<std::uint64_t> redirects{0};
};

}  // namespace skyrelay::redis
