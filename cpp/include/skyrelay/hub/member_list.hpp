// A room's members (or a connection shard's connections): an immutable snapshot that readers
// iterate without a lock, and that the writer extends in amortized constant time.
#pragma once

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

  const_iterator begin() const noexcept { return slots_ ? slots_->data() : nullptr; }
  const_iterator end() const noexcept { return begin() + size_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  const value_type& operator[](std::size_t i) const noexcept { return begin()[i]; }

  // This snapshot with `s` appended (see above for when the slots are shared).
  member_list with(value_type s) const {
    member_list next;
    if (slots_ && slots_->size() == size_ && size_ < slots_->capacity()) {
      next.slots_ = slots_;  // the new slot lies past every snapshot's end
    } else {
      next.slots_ = std::make_shared<std::vector<value_type>>();
      next.slots_->reserve(size_ < 4 ? 4 : size_ * 2);
      next.slots_->assign(begin(), end());
    }
    // Within capacity: push_back writes the new slot and the vector's end, never the array's
    // start that readers use (begin() reads data() only).
    next.slots_->push_back(std::move(s));
    next.size_ = size_ + 1;
    return next;
  }

  // This snapshot without `s` (every occurrence), in a new array; the order of the others
  // is kept.
  member_list without(const subscriber* s) const {
    member_list next;
    next.slots_ = std::make_shared<std::vector<value_type>>();
    next.slots_->reserve(size_ < 4 ? 4 : size_);
    for (const auto& m : *this)
      if (m.get() != s) next.slots_->push_back(m);
    next.size_ = next.slots_->size();
    return next;
  }

 private:
  // A vector reserved ahead: the writer appends within its capacity (never reallocating it
  // while shared) and readers only read data() and their own size_.
  std::shared_ptr<std::vector<value_type>> slots_;
  std::size_t size_ = 0;
};

}  // namespace skyrelay
