#include "skyrelay/net/outbox.hpp"

namespace skyrelay {

outbox::push_result outbox::push(frame_ptr f, overflow_policy policy) {
  push_result r;
  const std::size_t size = f->bytes.size();
  std::lock_guard lock(mu_);
  if (closed_) return r;
  auto over = [&] {
    return !q_.empty() && (bytes_ + size > limits_.max_bytes || q_.size() + 1 > limits_.max_frames);
  };
  if (over()) {
    // Droppable frames make room for any frame, so that a reply or a ping to a drop_oldest
    // subscriber costs stale frames rather than the connection.
    for (auto it = q_.begin(); it != q_.end() && over();) {
      if (it->droppable) {
        bytes_ -= it->f->bytes.size();
        it = q_.erase(it);
        ++r.dropped;
      } else {
        ++it;
      }
    }
    if (over()) {
      if (policy == overflow_policy::disconnect) {
        r.overflow = true;
        return r;
      }
      ++r.dropped;  // nothing droppable left to evict: the new frame is the one dropped
      return r;
    }
  }
  bytes_ += size;
  q_.push_back(entry{std::move(f), policy == overflow_policy::drop_oldest});
  r.accepted = true;
  if (!writer_active_) {
    writer_active_ = true;
    r.start_writer = true;
  }
  return r;
}

bool outbox::take(std::vector<frame_ptr>& out) {
  std::lock_guard lock(mu_);
  if (q_.empty()) {
    writer_active_ = false;
    return false;
  }
  writer_active_ = true;
  for (auto& e : q_) out.push_back(std::move(e.f));
  q_.clear();
  bytes_ = 0;
  return true;
}

void outbox::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  q_.clear();
  bytes_ = 0;
}

std::size_t outbox::queued_bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

std::size_t outbox::queued_frames() const {
  std::lock_guard lock(mu_);
  return q_.size();
}

}  // namespace skyrelay
