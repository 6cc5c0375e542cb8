// HTTP requests waiting for the application (app_hooks::on_http, a WSGI app): an http_session
// parks its reply function here under a fresh id, the application answers by that id from any
// thread (server::http_reply), and the parked function runs once.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace skyrelay {

class app_parking {
 public:
  using header_pairs = std::vector<std::pair<std::string, std::string>>;
  // Must be cheap and must not block: it runs on the thread that answers (the caller of
  // reply()), so an http_session posts the answer to its own executor from it.
  using reply_fn = std::function<void(unsigned status, header_pairs headers, std::string body)>;

  // Parks `reply`; returns the id the application answers by (never 0). Thread-safe.
  std::uint64_t park(reply_fn reply);
  // Runs the reply parked under `id`, outside the lock, and forgets it; false when no reply
  // waits under that id (answered already, or cleared). Thread-safe.
  bool reply(std::uint64_t id, unsigned status, header_pairs headers, std::string body);
  // Forgets every parked reply without running it (the server's stop, once no I/O thread
  // runs). Thread-safe.
  void clear();

 private:
  std::mutex mu_;
  std::unordered_map<std::uint64_t, reply_fn> waiting_;
  std::uint64_t next_id_{1};
};

}  // namespace skyrelay
