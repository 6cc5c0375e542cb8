// Allocation of the operations an idle connection keeps pending for its whole life (its read,
// its heartbeat timer's wait): each at its own size.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

#include <boost/asio/bind_allocator.hpp>

namespace skyrelay::net {

// Asio's default for a handler without an allocator is a per-thread cache of recycled blocks,
// which hands a new operation the block an earlier, bigger one left, such as the HTTP
// request's read: ~460 bytes instead of ~100, kept by every idle connection
// (docs/benchmarks.md). Not std::allocator: Asio takes that one for "no allocator" and
// recycles as before.
template <class T>
struct exact_allocator {
  using value_type = T;
  exact_allocator() noexcept = default;
  template <class U>
  exact_allocator(const exact_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p); }
  template <class U>
  bool operator==(const exact_allocator<U>&) const noexcept { return true; }
};

// `h`, with its operation allocated at its own size.
template <class Handler>
auto idle_alloc(Handler&& h) {
  return boost::asio::bind_allocator(exact_allocator<void>(), std::forward<Handler>(h));
}

}  // namespace skyrelay::net
