// A room's members (or a connection shard's connections): an immutable snapshot that readers
// iterate without a lock, and that the writer extends in amortized constant time.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <vector>

#include "skyrelay/hub/subscriber.hpp"

namespace skyrelay {

// Snapshots of one lineage share a slot array. A snapshot sees the first size() slots, and a
// slot, once written, never changes while any snapshot can see it. Appending writes the slot
// just past the newest snapshot's end, which no snapshot sees, so readers that copied an older
// snapshot (under the owner's lock) keep reading while the writer appends: no copy per join.
// Only when the slots are full, or when the snapshot being extended is not the newest of its
// array (its owner went back to an older one, which the hub never does), is the array copied,
// at twice the size: n joins cost O(n) in all instead of O(n^2).
//
// The writer (with/without) must hold the lock of the one place that owns the lineage (a room
// entry or a connection shard), and readers copy the shared_ptr to the snapshot under that
// same lock: that is what makes a slot's write happen before any read of it.
//
// Removal copies the survivors into a new array (O(size)): a reader may be iterating the old
// one, so a slot it sees cannot be reused.
class member_list {
 public:
  using value_type = std::shared_ptr<subscriber>;
  using const_iterator = const value_type*;

  member_list() = default;

  const_iterator begin() const noexcept { return slots_ ? slots_->slot.data() : nullptr; }
  const_iterator end() const noexcept { return begin() + size_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  const value_type& operator[](std::size_t i) const noexcept { return begin()[i]; }

  // This snapshot with `s` appended (see above for when the slots are shared).
  member_list with(value_type s) const {
    member_list next;
    if (slots_ && slots_->used == size_ && size_ < slots_->slot.size()) {
      next.slots_ = slots_;  // the new slot lies past every snapshot's end
    } else {
      next.slots_ = std::make_shared<slot_array>(size_ < 4 ? 4 : size_ * 2);
      std::copy(begin(), end(), next.slots_->slot.begin());
      next.slots_->used = size_;
    }
    next.slots_->slot[size_] = std::move(s);
    next.slots_->used = size_ + 1;
    next.size_ = size_ + 1;
    return next;
  }

  // This snapshot without `s` (every occurrence), in a new array; the order of the others
  // is kept.
  member_list without(const subscriber* s) const {
    member_list next;
    next.slots_ = std::make_shared<slot_array>(size_ < 4 ? 4 : size_);
    std::size_t n = 0;
    for (const auto& m : *this)
      if (m.get() != s) next.slots_->slot[n++] = m;
    next.slots_->used = n;
    next.size_ = n;
    return next;
  }

 private:
  // Slots made at their final count up front (empty pointers past `used`), so the array never
  // moves: readers read slot.data() and their own size_, and the writer assigns slot[used]
  // and bumps `used`, two locations no reader touches.
  struct slot_array {
    explicit slot_array(std::size_t capacity) : slot(capacity) {}
    std::vector<value_type> slot;
    std::size_t used = 0;  // slots written so far; read and written only under the owner's lock
  };

  std::shared_ptr<slot_array> slots_;
  std::size_t size_ = 0;
};

}  // namespace skyrelay
