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
#include <vector>

namespace skyrelay {

class dispatcher {
 public:
  using job = std::function<void()>;
  // Runs around each batch of jobs the worker takes at once: it must call `run_jobs` exactly
  // once. The Python binding takes the GIL here, once per batch instead of once per job, and
  // then starts the batch's async handlers with one wake-up of their event loop.
  using batch_scope = std::function<void(const std::function<void()>& run_jobs)>;

  // What a job may do while it runs. `app` jobs may run inside the batch scope (with the
  // application's lock, the GIL, held). A `blocking` job waits on I/O (a Redis round trip): it
  // runs outside any batch scope, so that no other application thread waits for it.
  enum class job_kind { app, blocking };

  // At most this many jobs per batch: the GIL is held across a batch, and other Python threads
  // only get it back between batches (or when a handler releases it).
  static constexpr std::size_t max_batch = 64;

  explicit dispatcher(std::size_t max_jobs);
  ~dispatcher();
  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;

  // Before start(): installs the scope run around each batch (none: jobs run bare).
  void set_batch_scope(batch_scope scope);

  // Starts the worker thread. Jobs run one at a time, in the order they were posted; the
  // worker takes up to max_batch of them per lock acquisition.
  void start();
  // Runs the jobs already queued, then joins the worker. Posting afterwards fails.
  void stop();

  // Thread-safe. False when the queue is full (max_jobs not yet started, a batch in hand
  // included) or stopped; the job is then not run.
  bool post(job j, job_kind kind = job_kind::app);
  // Like post, but ignores the bound: for jobs that must not be lost (disconnect notices),
  // whose number is bounded by the number of connections.
  bool post_always(job j, job_kind kind = job_kind::app);

  // Holding wake-ups on a posting thread. A thread that runs many short handlers in a row (an
  // I/O thread reading requests from many connections) can install a wake_deferral: then a
  // post from that thread that finds the queue empty does not wake the worker itself but hands
  // the wake-up to the deferral, which calls wake() later (an I/O thread: once the handlers
  // ready in its current turn have run). The worker then takes that turn's jobs as one batch
  // (one GIL acquisition, one switch to it) instead of being woken by the first and taking
  // them one at a time. Jobs are queued at once either way, so order and bounds are unchanged.
  class wake_deferral {
   public:
    virtual ~wake_deferral() = default;
    // Takes the duty to call d.wake() soon; false: the caller wakes the worker now.
    virtual bool defer(dispatcher& d) noexcept = 0;
  };
  // Installs `w` for the calling thread (nullptr: none); it must outlive its use there.
  static void defer_wakes_on_this_thread(wake_deferral* w) noexcept;
  // Wakes the worker if it waits (a deferred wake-up; harmless when nothing is queued).
  void wake() noexcept { cv_.notify_one(); }

  // The jobs not yet started: those waiting, and those of the batch in hand.
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
  struct entry {
    job fn;
    job_kind kind;
  };
  bool push(job j, job_kind kind, bool bounded);
  void run();
  // Runs batch_[from, to) inside the scope (or bare), counting each job as it starts.
  void run_span(std::size_t from, std::size_t to, bool scoped);
  void job_taken();

  const std::size_t max_jobs_;
  batch_scope scope_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<entry> jobs_;
  std::vector<entry> batch_;    // the worker's batch in hand (worker thread only)
  std::size_t in_batch_{0};     // jobs of batch_ not yet started (under mu_)
  bool stopping_{false};
  bool started_{false};
  // When the worker last started a job, or when the queue last became non-empty if later.
  std::chrono::steady_clock::time_point progress_at_{};
  std::thread worker_;
};

}  // namespace skyrelay
