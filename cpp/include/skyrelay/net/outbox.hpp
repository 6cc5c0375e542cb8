// A connection's bounded queue of frames waiting to be written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "skyrelay/core/frame.hpp"
#include "skyrelay/core/overflow_policy.hpp"

namespace skyrelay {

// Thread-safe: any thread pushes, the connection's own executor takes. The outbox also tracks
// whether the write loop is active, so that exactly one push after an idle period asks the
// caller to start it (one post per idle-to-busy transition, not one per frame).
//
// Bounds: `max_bytes` and `max_frames` of queued (not yet taken) frames. A push that would go
// over them first drops queued frames that were themselves pushed with drop_oldest, oldest
// first, until the new frame fits (whatever the new frame's policy). If that is not enough, the
// push's policy applies:
//   drop_oldest - the new frame is dropped.
//                 Frames pushed with disconnect (responses, control frames) are never dropped.
//   disconnect  - refuse the frame; the caller closes the connection (slow consumer).
// A frame always fits into an empty queue, whatever its size.
class outbox {
 public:
  struct limits {
    std::size_t max_bytes;
    std::size_t max_frames;
  };
  struct push_result {
    bool accepted{false};      // the frame is queued
    bool overflow{false};      // refused under the disconnect policy
    bool start_writer{false};  // the caller must schedule the write loop
    std::size_t dropped{0};    // frames dropped to make room (or the new frame itself)
    // Frames refused after an overflow (the connection is being closed for it): the stream a
    // slow consumer gets stays a prefix with no gap, however its writer moves meanwhile, and
    // the overflow is reported once.
    std::size_t refused{0};
  };

  explicit outbox(limits l) : limits_(l) {}

  // By reference: the queue takes the one copy (a fan-out delivery costs one reference count).
  push_result push(const frame_ptr& f, overflow_policy policy);

  // Pushes `group` (a Socket.IO binary event and its attachments) as one: every frame queued
  // back to back, with no frame of a concurrent push between them, or none queued. The bounds
  // apply to the group's total as to one frame; `dropped` counts the whole group when it is the
  // one dropped. An empty group is a no-op.
  push_result push_group(const std::vector<frame_ptr>& group, overflow_policy policy);

  // Moves every queued frame into `out` (appending). Returns false, and marks the write loop
  // idle, when nothing is queued; the next push will then ask for a new start. Into an empty
  // `out` this is a swap of two vectors under the lock, whatever the count: the caller's
  // emptied vector (with its capacity) becomes the queue, so a busy connection allocates
  // nothing per frame and the pushers wait for no per-frame copy.
  bool take(std::vector<frame_ptr>& out);

  // After a write: when nothing is queued, marks the write loop idle (the next push asks for
  // a new start, as after a take() that finds the queue empty) and returns true; false, with
  // nothing changed, when frames are waiting.
  bool idle_if_empty();

  // Refuses all further pushes and drops what is queued (the connection is closing).
  void close();

  std::size_t queued_bytes() const;
  std::size_t queued_frames() const;
  // What a push touches first (its mutex, then the queue), for a prefetch.
  const void* hot() const noexcept { return &mu_; }

 private:
  push_result push_range(const frame_ptr* first, std::size_t count, overflow_policy policy);

  std::size_t size_locked() const noexcept { return q_.size() - head_; }
  // Evicts droppable frames, oldest first, while `over` says the queue is over its bounds.
  template <class Over>
  std::size_t evict_locked(Over&& over);
  void clear_locked() noexcept;

  const limits limits_;
  mutable std::mutex mu_;
  // The queue: q_[head_..] in order; droppable_[i] says whether q_[i] was pushed with
  // drop_oldest. Evictions from the front advance head_ (the usual case: a drop_oldest
  // stream's oldest frame); one behind a frame that must stay is erased in place.
  std::vector<frame_ptr> q_;
  std::vector<std::uint8_t> droppable_;
  std::size_t head_{0};
  std::size_t droppable_count_{0};  // of q_[head_..]
  std::size_t bytes_{0};
  bool writer_active_{false};
  bool closed_{false};
  bool overflowed_{false};  // a push overflowed under the disconnect policy: refuse the rest
};

}  // namespace skyrelay
