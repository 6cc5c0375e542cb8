#include "skyrelay/net/outbox.hpp"

namespace skyrelay {

outbox::push_result outbox::push(frame_ptr f, overflow_policy policy) {
  return push_range(&f, 1, policy);  // no vector on the one-frame path (every fan-out)
}

outbox::push_result outbox::push_group(const std::vector<frame_ptr>& group,
                                       overflow_policy policy) {
  return push_range(group.data(), group.size(), policy);
}

outbox::push_result outbox::push_range(const frame_ptr* first, std::size_t count,
                                       overflow_policy policy) {
  push_result r;
  if (count == 0) return r;
  std::size_t size = 0;
  for (std::size_t i = 0; i < count; ++i) size += first[i]->wire_size();
  std::lock_guard lock(mu_);
  if (closed_) return r;
  auto over = [&] {
    return !q_.empty() &&
           (bytes_ + size > limits_.max_bytes || q_.size() + count > limits_.max_frames);
  };
  if (over()) {
    // Droppable frames make room for any frame, so that a reply or a ping to a drop_oldest
    // subscriber costs stale frames rather than the connection.
    for (auto it = q_.begin(); it != q_.end() && over();) {
      if (it->droppable) {
        bytes_ -= it->f->wire_size();
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
      r.dropped += count;  // nothing droppable left to evict: the new frames are dropped
      return r;
    }
  }
  bytes_ += size;
  for (std::size_t i = 0; i < count; ++i)
    q_.push_back(entry{first[i], policy == overflow_policy::drop_oldest});
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
