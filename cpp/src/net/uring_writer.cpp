#include "skyrelay/net/uring_writer.hpp"

#include <cerrno>

#include "skyrelay/core/clock.hpp"
#include "skyrelay/net/write_loop.hpp"

#ifdef SKYRELAY_HAVE_LIBURING
#include <liburing.h>
#endif

namespace skyrelay::net {

asio::execution_context::id uring_writer::id;

namespace {
thread_local uring_writer* open_batch = nullptr;
}  // namespace

uring_writer::uring_writer(asio::execution_context& ctx)
    : asio::execution_context::service(ctx) {}

uring_writer::~uring_writer() { shutdown(); }

uring_writer* uring_writer::current() noexcept { return open_batch; }

uring_writer::batch::batch(asio::execution_context& ctx) {
  if (open_batch) return;  // one batch per thread at a time (never nested in practice)
  auto& w = asio::use_service<uring_writer>(ctx);
  if (!w.enabled_ || w.failed_) return;
  if (!w.ring_ && !w.open()) return;
  writer_ = &w;
  open_batch = &w;
}

uring_writer::batch::~batch() {
  if (!writer_) return;
  open_batch = nullptr;  // a loop that a result starts again sends by itself
  writer_->submit();
}

#ifdef SKYRELAY_HAVE_LIBURING

struct uring_writer::ring {
  io_uring r{};
};

bool uring_writer::compiled_in() noexcept { return true; }

bool uring_writer::open() {
  auto r = std::make_unique<ring>();
  // One thread submits and reaps (the context's), so the kernel may skip its cross-thread
  // task-work signalling (6.1+); older kernels refuse the flags: plain set-up then.
  // DEFER_TASKRUN delays only completions that arrive from elsewhere (a request parked on a
  // poll); these sends never park (MSG_DONTWAIT), so every result is posted within the
  // enter that submitted it, and enter() reads them all before the flush ends.
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  int rc = io_uring_queue_init_params(ring_entries, &r->r, &p);
  if (rc == -EINVAL) {
    p = io_uring_params{};
    rc = io_uring_queue_init_params(ring_entries, &r->r, &p);
  }
  if (rc < 0) {  // ENOSYS, EPERM (seccomp, io_uring_disabled), ENOMEM: epoll for good
    failed_ = true;
    return false;
  }
  io_uring_probe* probe = io_uring_get_probe_ring(&r->r);
  const bool ops = probe && io_uring_opcode_supported(probe, IORING_OP_SEND) &&
                   io_uring_opcode_supported(probe, IORING_OP_SENDMSG);
  if (probe) io_uring_free_probe(probe);
  if (!ops) {
    io_uring_queue_exit(&r->r);
    failed_ = true;
    return false;
  }
  ring_ = std::move(r);
  pending_.reserve(max_batch);
  active_ = true;
  return true;
}

bool uring_writer::add(int fd, iovec* iov, std::size_t n, write_loop& loop) {
  if (!ring_ || pending_.size() == max_batch || n == 0) return false;
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_->r);
  if (!sqe) return false;
  auto& p = pending_.emplace_back(pending{&loop, msghdr{}, -EAGAIN});
  // MSG_DONTWAIT: a full socket answers -EAGAIN now instead of waiting inside the ring, so the
  // loop goes on as after its own sendmsg. MSG_NOSIGNAL: a peer that left is an error.
  constexpr int flags = MSG_DONTWAIT | MSG_NOSIGNAL;
  if (n == 1) {  // one buffer (a frame alone): SEND, no msghdr for the kernel to copy
    io_uring_prep_send(sqe, fd, iov[0].iov_base, iov[0].iov_len, flags);
  } else {
    p.msg.msg_iov = iov;
    p.msg.msg_iovlen = n;
    io_uring_prep_sendmsg(sqe, fd, &p.msg, flags);
  }
  io_uring_sqe_set_data64(sqe, pending_.size() - 1);
  if (pending_.size() - entered_ >= sends_per_enter) enter();
  return true;
}

void uring_writer::enter() {
  const std::size_t n = pending_.size() - entered_;
  if (n == 0 || !ring_) return;
  std::size_t reaped = 0;
  // Sends with MSG_DONTWAIT complete while they are submitted: one io_uring_enter that waits
  // for nothing, and every result is in the completion queue when it returns. Only if some
  // are not (a kernel that queued one after all) does it wait for them, bounded, so that no
  // result is left for a later flush and nothing this batch handed over is sent later.
  for (int attempt = 0; reaped < n; ++attempt) {
    const int rc = attempt == 0 ? io_uring_submit(&ring_->r) : io_uring_submit_and_wait(&ring_->r, 1);
    ++uring_stats::submissions;
    if (attempt == 64 || (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)) {
      uring_stats::sends += n;
      return fail();
    }
    unsigned head, seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_->r, head, cqe) {
      pending_[io_uring_cqe_get_data64(cqe)].res = cqe->res;
      ++seen;
    }
    io_uring_cq_advance(&ring_->r, seen);
    reaped += seen;
  }
  uring_stats::sends += n;
  entered_ = pending_.size();
}

// The ring failed under us (never seen): dropped, so nothing of this batch can be sent later,
// and the loops whose result never came retry on the epoll path (their result stays -EAGAIN).
// A send whose result was lost may have gone out: such a ring is unusable anyway.
void uring_writer::fail() {
  io_uring_queue_exit(&ring_->r);
  ring_.reset();
  active_ = false;
  failed_ = true;
}

void uring_writer::submit() {
  enter();
  const std::int64_t now = steady_ns();  // when the batch's sends were done, for all of them
  // In the order the flush added them, as the loops would have sent by themselves.
  std::vector<pending> done;
  done.swap(pending_);
  entered_ = 0;
  for (auto& p : done) p.loop->sent(p.res, now);
  done.clear();
  if (!failed_) done.swap(pending_);  // keeps the capacity (the msghdr addresses)
}

void uring_writer::shutdown() {
  pending_.clear();
  entered_ = 0;
  if (!ring_) return;
  io_uring_queue_exit(&ring_->r);
  ring_.reset();
  active_ = false;
}

#else  // built without liburing: no batch ever opens

struct uring_writer::ring {};

bool uring_writer::compiled_in() noexcept { return false; }
bool uring_writer::open() {
  failed_ = true;
  return false;
}
bool uring_writer::add(int, iovec*, std::size_t, write_loop&) { return false; }
void uring_writer::enter() {}
void uring_writer::fail() { failed_ = true; }
void uring_writer::submit() { pending_.clear(); }
void uring_writer::shutdown() { pending_.clear(); }

#endif

}  // namespace skyrelay::net
