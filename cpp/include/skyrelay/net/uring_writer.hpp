// The io_uring write path: the plain-TCP writes that one flush of an I/O thread starts (one
// publication's writes to all its idle recipients on that thread) go to the kernel in a few
// io_uring_enter calls (one per sends_per_enter sends) instead of one sendmsg each.
//
// How it fits the write loop: flush_queue::drain opens a `uring_writer::batch` around the write
// loops it runs; while it is open, write_loop::run hands its first non-blocking send to add()
// instead of calling sendmsg. Every sends_per_enter sends, and when the batch closes, what was
// added goes to the kernel and its results are read at once: every send carries MSG_DONTWAIT,
// so the kernel completes it while it is submitted (bytes written, or -EAGAIN for a full socket
// instead of parking the request in the ring). When the batch closes each loop gets its result
// (write_loop::sent) and goes on exactly as after its own sendmsg: a partial write or a full
// socket continues on the epoll path (sendmsg, async_wait, the write timeout). Nothing is in
// flight in the ring after the batch, and no result waits for a later flush.
//
// Why not one io_uring_enter for the whole flush: the kernel does each send's TCP and loopback
// work inside the call (5-10 us here), and a kernel built without preemption (PREEMPT_NONE, the
// usual server setting) does not preempt a thread inside a system call. One call of 1,000
// sends ran ~7 ms past the thread's time slice on a busy core, and the scheduler then held the
// thread back 40-90 ms, part of the publication still unsent (docs/benchmarks.md). Returning
// to user space every sends_per_enter sends lets the thread be preempted as promptly as the
// epoll path's sendmsg calls do, and still saves all but one entry in sends_per_enter.
//
// Runtime check: the ring is set up on the I/O thread at its first batch. If the kernel or a
// seccomp filter refuses io_uring (ENOSYS, EPERM, kernel.io_uring_disabled), or lacks SEND and
// SENDMSG, that thread stays on the epoll path for good. Built without liburing, batches never
// open. TLS streams always take the epoll path (their bytes pass through OpenSSL first).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <sys/socket.h>
#include <sys/uio.h>

#include "skyrelay/net/aliases.hpp"

namespace skyrelay::net {

class write_loop;

// Process-wide figures for /metrics (skyrelay_io_uring_submissions_total, _sends_total).
struct uring_stats {
  static inline std::atomic<std::uint64_t> submissions{0};   // io_uring_enter calls of batches
  static inline std::atomic<std::uint64_t> sends{0};         // sends they carried
};

// An Asio service: one per I/O context (one thread per context), living as long as it.
class uring_writer : public asio::execution_context::service {
 public:
  static asio::execution_context::id id;

  explicit uring_writer(asio::execution_context& ctx);
  ~uring_writer() override;

  // Whether this context's flushes try io_uring (server_config::io_uring != "off"). Set before
  // the context runs; off by default, so contexts the server did not enable never use it.
  void enable(bool on) noexcept { enabled_ = on; }
  // Whether liburing was found at build time.
  static bool compiled_in() noexcept;
  // Whether a ring is set up and in use on this context (false before its first batch).
  // Thread-safe (/metrics reads it).
  bool active() const noexcept { return active_.load(std::memory_order_relaxed); }

  // Sends per io_uring_enter at most (see the top of this file): ~0.3-0.6 ms of kernel work
  // here, about one time slice, and 1/64 of the system-call entries of sendmsg each.
  static constexpr unsigned sends_per_enter = 64;

  // The writes of one flush (RAII, on the context's thread): opens a batch if this context is
  // enabled and its ring works; the destructor sends what is left and hands out the results.
  class batch {
   public:
    explicit batch(asio::execution_context& ctx);
    ~batch();
    batch(const batch&) = delete;
    batch& operator=(const batch&) = delete;

   private:
    uring_writer* writer_{nullptr};
  };

  // The batch open on the calling thread, or null.
  static uring_writer* current() noexcept;
  // Queues a send of `iov[0..n)` on `fd` for `loop`; every sends_per_enter sends go to the
  // kernel at once. The loop's result comes when the batch closes. Only from a loop that the
  // open batch's flush runs: its flush-queue entry holds the loop's owner until then. False
  // when the batch is full or the ring failed: the caller sends by itself.
  bool add(int fd, iovec* iov, std::size_t n, write_loop& loop);

 private:
  struct ring;  // liburing's io_uring, kept out of this header
  struct pending {
    write_loop* loop;
    msghdr msg;
    int res;  // the send's result: bytes written or -errno (-EAGAIN until it comes)
  };

  void shutdown() override;
  bool open();     // sets the ring up on first use; false when io_uring is unavailable
  void enter();    // sends what was added since the last enter and reads their results
  void submit();   // enter() for the rest, then the results to the loops (the batch closes)
  void fail();     // the ring broke: dropped, and this thread stays on epoll

  static constexpr unsigned max_batch = 4096;  // sends per batch (flush) at most
  // The ring holds one enter's sends (the kernel takes them all at each enter); twice that
  // leaves room without ever waiting for a free entry.
  static constexpr unsigned ring_entries = 2 * sends_per_enter;

  std::unique_ptr<ring> ring_;
  std::vector<pending> pending_;  // capacity max_batch, never grown (msghdr addresses)
  std::size_t entered_{0};        // pending_[0..entered_) have gone to the kernel
  bool enabled_{false};
  bool failed_{false};  // set-up refused: stay on epoll
  std::atomic<bool> active_{false};
};

}  // namespace skyrelay::net
