// A bounded job queue drained by one thread: where application (Python) callbacks run, so that
// no I/O thread ever waits for the application.
#pragma once

#include <chrono>
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

  // Whether the worker is making progress (readiness, net/health.hpp): the jobs waiting, and
  // for how long none was taken while some waited (zero when none waits). A job that never
  // returns (a sync handler blocked forever) shows as `stalled` growing with `queued` > 0.
  struct progress_report {
    std::size_t queued{0};
    std::chrono::steady_clock::duration stalled{};
  };
  progress_report progress() const;

 private:
  void run();

  const std::size_t max_jobs_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<job> jobs_;
  bool stopping_{false};
  bool started_{false};
  // When the worker last took a job, or when the queue last became non-empty if later.
  std::chrono::steady_clock::time_point progress_at_{};
  std::thread worker_;
};

}  // namespace skyrelay
