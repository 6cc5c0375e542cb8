#include "skyrelay/core/log_queue.hpp"

#include <algorithm>
#include <iterator>
#include <utility>

namespace skyrelay {

std::string_view logger_name(log_source s) noexcept {
  switch (s) {
    case log_source::core: return "skyrelay.core";
    case log_source::conn: return "skyrelay.core.connection";
    case log_source::auth: return "skyrelay.core.auth";
    case log_source::limits: return "skyrelay.core.limits";
    case log_source::broker: return "skyrelay.core.broker";
    case log_source::count_: break;
  }
  return "skyrelay.core";
}

log_queue::log_queue(std::size_t capacity) : capacity_(std::max<std::size_t>(capacity, 1)) {
  for (auto& l : levels_) l.store(log_level::off, std::memory_order_relaxed);
}

bool log_queue::push(log_record r) {
  r.unix_time = std::chrono::duration<double>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (records_.size() >= capacity_) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    records_.push_back(std::move(r));
    wake = std::exchange(wake_on_push_, false);
  }
  if (wake) cv_.notify_one();
  return true;
}

std::vector<log_record> log_queue::take(std::size_t max, std::chrono::milliseconds wait,
                                        bool wake_on_push) {
  std::vector<log_record> out;
  std::unique_lock lock(mu_);
  if (records_.empty() && !closed_) {
    wake_on_push_ = wake_on_push;
    cv_.wait_for(lock, wait, [this] { return closed_ || !records_.empty(); });
    wake_on_push_ = false;
  }
  const std::size_t n = std::min(max, records_.size());
  if (n == 0) return out;
  out.reserve(n);
  auto end = records_.begin() + static_cast<std::ptrdiff_t>(n);
  std::move(records_.begin(), end, std::back_inserter(out));
  records_.erase(records_.begin(), end);
  return out;
}

void log_queue::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

void log_queue::reopen() {
  std::lock_guard lock(mu_);
  closed_ = false;
}

std::size_t log_queue::size() const {
  std::lock_guard lock(mu_);
  return records_.size();
}

log_queue& disabled_log_queue() {
  static log_queue q(1);
  return q;
}

void append_log_metrics(std::string& out, const log_queue& q) {
  out += "# HELP skyrelay_log_records_dropped_total Log records of the C++ core dropped because "
         "the queue to Python's logging was full.\n"
         "# TYPE skyrelay_log_records_dropped_total counter\n"
         "skyrelay_log_records_dropped_total " + std::to_string(q.dropped()) + "\n";
  out += "# HELP skyrelay_log_records_queued Log records of the C++ core waiting for Python's "
         "logging.\n"
         "# TYPE skyrelay_log_records_queued gauge\n"
         "skyrelay_log_records_queued " + std::to_string(q.size()) + "\n";
}

}  // namespace skyrelay
