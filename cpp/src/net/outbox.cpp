#include "skyrelay/net/outbox.hpp"

#include <utility>

namespace skyrelay {

namespace {
constexpr std::size_t max_kept_capacity = 1024;  // frames kept allocated between bursts
}  // namespace

outbox::push_result outbox::push(const frame_ptr& f, overflow_policy policy) {
  return push_range(&f, 1, policy);  // no vector on the one-frame path (every fan-out)
}

outbox::push_result outbox::push_group(const std::vector<frame_ptr>& group,
                                       overflow_policy policy) {
  return push_range(group.data(), group.size(), policy);
}

template <class Over>
std::size_t outbox::evict_locked(Over&& over) {
  std::size_t dropped = 0;
  if (droppable_count_ == 0) return 0;  // droppable_ may be empty: nothing to evict
  // The front first: advancing head_ costs nothing per eviction.
  while (head_ < q_.size() && droppable_[head_] && over()) {
    bytes_ -= q_[head_]->wire_size();
    q_[head_].reset();
    ++head_;
    --droppable_count_;
    ++dropped;
  }
  // Droppable frames behind one that must stay (a reply, a control frame): rare.
  for (std::size_t i = head_; i < q_.size() && droppable_count_ && over();) {
    if (!droppable_[i]) {
      ++i;
      continue;
    }
    bytes_ -= q_[i]->wire_size();
    q_.erase(q_.begin() + static_cast<std::ptrdiff_t>(i));
    droppable_.erase(droppable_.begin() + static_cast<std::ptrdiff_t>(i));
    --droppable_count_;
    ++dropped;
  }
  return dropped;
}

outbox::push_result outbox::push_range(const frame_ptr* first, std::size_t count,
                                       overflow_policy policy) {
  push_result r;
  if (count == 0) return r;
  std::size_t size = 0;
  for (std::size_t i = 0; i < count; ++i) size += first[i]->wire_size();
  std::lock_guard lock(mu_);
  if (closed_) return r;
  if (overflowed_) {
    r.refused = count;
    return r;
  }
  auto over = [&] {
    return size_locked() != 0 &&
           (bytes_ + size > limits_.max_bytes || size_locked() + count > limits_.max_frames);
  };
  if (over()) {
    // Droppable frames make room for any frame, so that a reply or a ping to a drop_oldest
    // subscriber costs stale frames rather than the connection.
    r.dropped = evict_locked(over);
    if (over()) {
      if (policy == overflow_policy::disconnect) {
        overflowed_ = true;
        r.overflow = true;
        return r;
      }
      r.dropped += count;  // nothing droppable left to evict: the new frames are dropped
      return r;
    }
  }
  if (size_locked() == 0) {
    clear_locked();  // evicted to empty: start at the front again
  } else if (head_ >= 64 && head_ >= size_locked()) {
    // A stream that only ever evicts (its writer waits on a full socket) must not grow the
    // vectors by its dead front: dropped once it outnumbers the live frames (amortized O(1)).
    q_.erase(q_.begin(), q_.begin() + static_cast<std::ptrdiff_t>(head_));
    if (!droppable_.empty())
      droppable_.erase(droppable_.begin(),
                       droppable_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
  bytes_ += size;
  const bool droppable = policy == overflow_policy::drop_oldest;
  // droppable_ stays empty while no queued frame is droppable (a connection that only ever
  // gets frames it must not drop keeps no second vector), else it has a flag per frame.
  if (droppable && droppable_.empty()) droppable_.assign(q_.size(), 0);
  for (std::size_t i = 0; i < count; ++i) {
    q_.push_back(first[i]);
    if (!droppable_.empty() || droppable) droppable_.push_back(droppable);
  }
  if (droppable) droppable_count_ += count;
  r.accepted = true;
  if (!writer_active_) {
    writer_active_ = true;
    r.start_writer = true;
  }
  return r;
}

void outbox::clear_locked() noexcept {
  q_.clear();  // the vectors keep their capacity
  droppable_.clear();
  head_ = 0;
  droppable_count_ = 0;
  bytes_ = 0;
}

bool outbox::take(std::vector<frame_ptr>& out) {
  std::lock_guard lock(mu_);
  if (size_locked() == 0) {
    clear_locked();
    writer_active_ = false;
    return false;
  }
  writer_active_ = true;
  if (out.empty() && head_ == 0) {
    out.swap(q_);  // q_ is now out's emptied vector, capacity and all
    // A burst's capacity is not kept for good: an idle connection holds no large queue.
    if (q_.capacity() > max_kept_capacity) std::vector<frame_ptr>().swap(q_);
  } else {
    out.insert(out.end(), std::make_move_iterator(q_.begin() + static_cast<std::ptrdiff_t>(head_)),
               std::make_move_iterator(q_.end()));
  }
  clear_locked();
  if (droppable_.capacity() > max_kept_capacity) std::vector<std::uint8_t>().swap(droppable_);
  return true;
}

bool outbox::idle_if_empty() {
  std::lock_guard lock(mu_);
  if (size_locked() != 0) return false;
  writer_active_ = false;
  return true;
}

void outbox::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  clear_locked();
}

std::size_t outbox::queued_bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

std::size_t outbox::queued_frames() const {
  std::lock_guard lock(mu_);
  return size_locked();
}

}  // namespace skyrelay
