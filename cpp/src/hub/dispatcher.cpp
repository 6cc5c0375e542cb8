#include "skyrelay/hub/dispatcher.hpp"

namespace skyrelay {

dispatcher::dispatcher(std::size_t max_jobs) : max_jobs_(max_jobs) {}

dispatcher::~dispatcher() { stop(); }

void dispatcher::start() {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  stopping_ = false;
  worker_ = std::thread([this] { run(); });
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

bool dispatcher::post(job j) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || !started_ || jobs_.size() >= max_jobs_) return false;
    if (jobs_.empty()) progress_at_ = std::chrono::steady_clock::now();
    jobs_.push_back(std::move(j));
  }
  cv_.notify_one();
  return true;
}

bool dispatcher::post_always(job j) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || !started_) return false;
    if (jobs_.empty()) progress_at_ = std::chrono::steady_clock::now();
    jobs_.push_back(std::move(j));
  }
  cv_.notify_one();
  return true;
}

std::size_t dispatcher::queued() const {
  std::lock_guard lock(mu_);
  return jobs_.size();
}

dispatcher::progress_report dispatcher::progress() const {
  std::lock_guard lock(mu_);
  if (jobs_.empty()) return {};
  return {jobs_.size(), std::chrono::steady_clock::now() - progress_at_};
}

void dispatcher::run() {
  for (;;) {
    job j;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, and everything queued has run
      j = std::move(jobs_.front());
      jobs_.pop_front();
      progress_at_ = std::chrono::steady_clock::now();
    }
    j();
  }
}

}  // namespace skyrelay
