// The io_uring write path: the plain-TCP writes that one flush of an I/O thread starts (one
// publication's writes to all its idle recipients on that thread) go to the kernel in one
// io_uring_enter instead of one sendmsg each.
//
// How it fits the write loop: flush_queue::drain opens a `uring_writer::batch` around the write
// loops it runs; while it is open, write_loop::run hands its first non-blocking send to add()
// instead of calling sendmsg; when the batch closes, every send goes in one submission and each
// loop gets its result (write_loop::sent), after which it goes on exactly as after its own
// sendmsg: a partial write or a full socket continues on the epoll path (sendmsg, async_wait,
// the write timeout). Every send carries MSG_DONTWAIT, so io_uring answers -EAGAIN for a full
// socket instead of parking the request in the ring: nothing stays in flight after the batch.
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

  // The writes of one flush (RAII, on the context's thread): opens a batch if this context is
  // enabled and its ring works; the destructor submits what was added and hands out results.
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
  // Queues a send of `iov[0..n)` on `fd` for `loop`, holding `keep` until its result is
  // handed out. False when the batch is full: the caller sends by itself.
  bool add(int fd, iovec* iov, std::size_t n, write_loop& loop, std::shared_ptr<void> keep);

 private:
  struct ring;  // liburing's io_uring, kept out of this header
  struct pending {
    write_loop* loop;
    std::shared_ptr<void> keep;
    msghdr msg;
    int res;  // the send's result: bytes written or -errno (-EAGAIN until it comes)
  };

  void shutdown() override;
  bool open();     // sets the ring up on first use; false when io_uring is unavailable
  void submit();   // one io_uring_enter for everything added; results to the loops

  static constexpr unsigned ring_entries = 4096;  // sends per submission at most

  std::unique_ptr<ring> ring_;
  std::vector<pending> pending_;  // capacity ring_entries, never grown (msghdr addresses)
  bool enabled_{false};
  bool failed_{false};  // set-up refused: stay on epoll
  std::atomic<bool> active_{false};
};

}  // namespace skyrelay::net
