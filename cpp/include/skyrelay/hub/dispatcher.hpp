// A bounded job queue drained by one thread: where application (Python) callbacks run, so that
// no I/O thread ever waits for the application.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace skyrelay {

class dispatcher {
 public:
  using job = std::function<void()>;

  explicit dispatcher(std::size_t max_jobs);
  ~dispatcher();
  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;

  // Starts the worker thread. Jobs run one at a time, in the order they were posted.
  void start();
  // Runs the jobs already queued, then joins the worker. Posting afterwards fails.
  void stop();

  // Thread-safe. False when the queue is full or stopped; the job is then not run.
  bool post(job j);
  // Like post, but ignores the bound: for jobs that must not be lost (disconnect notices),
  // whose number is bounded by the number of connections.
  bool post_always(job j);

  std::size_t queued() const;

 private:
  void run();

  const std::size_t max_jobs_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<job> jobs_;
  bool stopping_{false};
  bool started_{false};
  std::thread worker_;
};

}  // namespace skyrelay
