#include "skyrelay/hub/dispatcher.hpp"

#include <utility>

#include "skyrelay/core/thread_name.hpp"

namespace skyrelay {

namespace {
thread_local dispatcher::wake_deferral* this_thread_deferral = nullptr;
}  // namespace

void dispatcher::defer_wakes_on_this_thread(wake_deferral* w) noexcept { this_thread_deferral = w; }

dispatcher::dispatcher(std::size_t max_jobs) : max_jobs_(max_jobs) {
  batch_.reserve(max_batch);
}

dispatcher::~dispatcher() { stop(); }

void dispatcher::set_batch_scope(batch_scope scope) {
  std::lock_guard lock(mu_);
  scope_ = std::move(scope);
}

void dispatcher::start() {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  stopping_ = false;
  worker_ = std::thread([this] { run(); });
  name_thread(worker_, "skyrelay-disp");
}

void dispatcher::stop() {
  {
    std::lock_guard lock(mu_);
    if (!started_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  std::lock_guard lock(mu_);
  started_ = false;
}

bool dispatcher::push(job j, job_kind kind, bool bounded) {
  bool was_idle = false;
  {
    std::lock_guard lock(mu_);
    // The bound counts every job not yet started, the batch in hand's included.
    const std::size_t waiting = jobs_.size() + in_batch_;
    if (stopping_ || !started_ || (bounded && waiting >= max_jobs_)) return false;
    if (waiting == 0) progress_at_ = std::chrono::steady_clock::now();
    was_idle = jobs_.empty();
    jobs_.push_back({std::move(j), kind});
  }
  // The worker waits only on an empty queue, so only the first job needs to wake it: the
  // others it takes with that one, in the same batch (no system call per job under load).
  if (was_idle && !(this_thread_deferral && this_thread_deferral->defer(*this))) cv_.notify_one();
  return true;
}

bool dispatcher::post(job j, job_kind kind) { return push(std::move(j), kind, true); }

bool dispatcher::post_always(job j, job_kind kind) { return push(std::move(j), kind, false); }

std::size_t dispatcher::queued() const {
  std::lock_guard lock(mu_);
  return jobs_.size() + in_batch_;
}

dispatcher::progress_report dispatcher::progress() const {
  std::lock_guard lock(mu_);
  const std::size_t waiting = jobs_.size() + in_batch_;
  if (waiting == 0) return {};
  return {waiting, std::chrono::steady_clock::now() - progress_at_};
}

void dispatcher::job_taken() {
  std::lock_guard lock(mu_);
  --in_batch_;
  progress_at_ = std::chrono::steady_clock::now();
}

void dispatcher::run_span(std::size_t from, std::size_t to, bool scoped) {
  auto run_jobs = [this, from, to] {
    for (std::size_t i = from; i < to; ++i) {
      job_taken();  // as when jobs were taken one at a time: no longer waiting once started
      batch_[i].fn();
    }
  };
  if (scoped)
    scope_(run_jobs);
  else
    run_jobs();
}

void dispatcher::run() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, and everything queued has run
      while (!jobs_.empty() && batch_.size() < max_batch) {
        batch_.push_back(std::move(jobs_.front()));
        jobs_.pop_front();
      }
      in_batch_ = batch_.size();
    }
    // In posting order: runs of app jobs inside the scope, each blocking job bare.
    const bool have_scope = static_cast<bool>(scope_);
    std::size_t from = 0;
    for (std::size_t i = 0; i <= batch_.size(); ++i) {
      if (i < batch_.size() && batch_[i].kind == job_kind::app) continue;
      if (from < i) run_span(from, i, have_scope);
      if (i < batch_.size()) run_span(i, i + 1, false);
      from = i + 1;
    }
    batch_.clear();  // the jobs' captures are released here, outside the lock
  }
}

}  // namespace skyrelay
