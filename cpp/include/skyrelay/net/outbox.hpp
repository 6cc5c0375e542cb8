// A connection's bounded queue of frames waiting to be written.
#pragma once

#include <cstddef>
#include <mutex>
#include <vector>

#include <boost/container/deque.hpp>

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
  };

  explicit outbox(limits l) : limits_(l) {}

  push_result push(frame_ptr f, overflow_policy policy);

  // Pushes `group` (a Socket.IO binary event and its attachments) as one: every frame queued
  // back to back, with no frame of a concurrent push between them, or none queued. The bounds
  // apply to the group's total as to one frame; `dropped` counts the whole group when it is the
  // one dropped. An empty group is a no-op.
  push_result push_group(const std::vector<frame_ptr>& group, overflow_policy policy);

  // Moves every queued frame into `out` (appending). Returns false, and marks the write loop
  // idle, when nothing is queued; the next push will then ask for a new start.
  bool take(std::vector<frame_ptr>& out);

  // Refuses all further pushes and drops what is queued (the connection is closing).
  void close();

  std::size_t queued_bytes() const;
  std::size_t queued_frames() const;
  // What a push touches first (its mutex, then the queue), for a prefetch.
  const void* hot() const noexcept { return &mu_; }

 private:
  push_result push_range(const frame_ptr* first, std::size_t count, overflow_policy policy);

  struct entry {
    frame_ptr f;
    bool droppable;
  };
  // Boost's deque, not std::deque: libstdc++'s allocates its map and a 512-byte block even
  // when empty, about 600 bytes on every idle connection; this one allocates on the first push
  // (blocks of 16 frames, 384 bytes). docs/benchmarks.md, "Where an idle connection's memory
  // goes".
  using queue = boost::container::deque<
      entry, void, boost::container::deque_options_t<boost::container::block_size<16u>>>;
  const limits limits_;
  mutable std::mutex mu_;
  queue q_;
  std::size_t bytes_{0};
  bool writer_active_{false};
  bool closed_{false};
};

}  // namespace skyrelay
