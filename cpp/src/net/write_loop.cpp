#include "skyrelay/net/write_loop.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <climits>

#include <sys/socket.h>

#include "skyrelay/core/clock.hpp"
#include "skyrelay/net/flush_queue.hpp"
#include "skyrelay/net/metrics.hpp"
#include "skyrelay/net/uring_writer.hpp"

namespace skyrelay::net {

namespace {
#ifdef IOV_MAX
constexpr std::size_t iov_max = IOV_MAX;
#else
constexpr std::size_t iov_max = 1024;  // Linux's value; POSIX guarantees at least 16
#endif

// The counts of one thread's open metrics_tally: one shard's (the first write's; a write
// counted in another shard, which one server never has, goes to its shard at once).
struct write_tally {
  struct traffic_counts {
    std::uint64_t writes, bytes_out, frames_out, messages_out;
  };
  metrics::shard* shard{nullptr};
  std::array<traffic_counts, static_cast<std::size_t>(transport_kind::count_)> traffic{};
  std::array<std::uint64_t, metrics::latency_bounds_ns.size() + 1> latency{};
  std::uint64_t latency_sum_ns{0};
  unsigned transports{0};  // bit t: traffic[t] has counts
  bool timed{false};       // latency has counts
};
thread_local write_tally* open_tally = nullptr;
thread_local write_tally tally_storage;  // the open tally's, reused flush after flush

// Adds a tally's counts to its shard: one atomic addition per counter it touched. The
// histogram first and the messages last, as a single write counts them, so that a reader who
// sees the messages sent also sees their latencies.
void publish(const write_tally& w) noexcept {
  if (!w.shard) return;
  auto& shard = *w.shard;
  if (w.timed) {
    for (std::size_t b = 0; b < w.latency.size(); ++b)
      if (w.latency[b]) metrics::add(shard.latency_buckets[b], w.latency[b]);
    metrics::add(shard.latency_sum_ns, w.latency_sum_ns);
  }
  for (unsigned bits = w.transports; bits;) {
    const auto t = static_cast<std::size_t>(__builtin_ctz(bits));
    bits &= bits - 1;
    const auto& c = w.traffic[t];
    auto& traffic = shard.by_transport[t];
    metrics::add(traffic.writes, c.writes);
    if (c.bytes_out) metrics::add(traffic.bytes_out, c.bytes_out);
    if (c.frames_out) metrics::add(traffic.frames_out, c.frames_out);
    if (c.messages_out) metrics::add(traffic.messages_out, c.messages_out);
  }
}
}  // namespace

// write_batch ---------------------------------------------------------------------------------

std::string& write_batch::own(std::string& bytes) {
  assert(n_owned_ < owned_.size());
  auto& slot = owned_[n_owned_++];
  slot.swap(bytes);  // `bytes` takes the slot's emptied buffer
  return slot;
}

void write_batch::add(std::string_view bytes, bool is_before) {
  assert(n_pieces_ < max_pieces);
  if (is_before) {
    assert(n_before_ == n_pieces_);  // no `before` piece after an `after` one
    ++n_before_;
  }
  pieces_[n_pieces_++] = bytes;
}

void write_batch::before(std::string& bytes) {
  if (bytes.empty()) return;
  add(own(bytes), true);
}

void write_batch::after(std::string& bytes) {
  if (bytes.empty()) return;
  add(own(bytes), false);
}

void write_batch::before_view(std::string_view bytes) {
  if (bytes.empty()) return;
  add(bytes, true);
}

void write_batch::after_view(std::string_view bytes) {
  if (bytes.empty()) return;
  add(bytes, false);
}

std::size_t write_batch::frame_bytes() const noexcept {
  std::size_t n = 0;
  for (const auto& f : frames_) n += f->wire_size();
  return n;
}

void write_batch::clear() noexcept {
  // Gives the pieces' heap buffers back: what comes back to the session (before/after) is
  // then empty. The pieces of a busy connection (chunk sizes, control frames) fit in a
  // string's inline buffer and cost nothing either way; the big ones (an HTTP response, a
  // welcome) are written once, and kept they would stay on every idle connection.
  for (std::size_t i = 0; i < n_owned_; ++i) std::string().swap(owned_[i]);
  n_owned_ = n_before_ = n_pieces_ = 0;
  frames_.clear();
}

// write_loop ----------------------------------------------------------------------------------

write_loop::write_loop(stream& s, owner& o, metrics& m, std::chrono::milliseconds timeout)
    : stream_(s),
      owner_(o),
      metrics_(m),
      flushes_(asio::use_service<flush_queue>(
          static_cast<asio::io_context&>(s.get_executor().context()))),
      timeout_(timeout) {}

void write_loop::run() {
  continuing_ = false;  // this is the turn a continuation asked for, or a sooner one
  if (busy_) return;
  batch_.clear();
  owner_.fill(batch_);
  if (batch_.empty()) return;
  gather();
  busy_ = true;
  written_ = 0;
  ec_.clear();
  // The write's start, for the write timeout: a drain's writes share its start (one clock
  // read per drain, not per write; a drain lasts milliseconds, the timeout seconds).
  if (const std::int64_t t = flush_queue::drain_started_ns())
    started_ = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(t));
  else
    started_ = std::chrono::steady_clock::now();
  if (stream_.is_tls()) return write_tls();
  // The flush's io_uring batch: goes on in sent(). Run by that flush, whose queue entry keeps
  // the owner alive until the batch hands the result out.
  if (auto* u = uring_writer::current();
      u && u->add(stream_.socket().native_handle(), iov_.data(), std::min(iov_.size(), iov_max),
                  *this))
    return;
  if (!send_now()) return wait_writable();
  sent_at_once();
}

// The result of the first send of run()'s batch, made by the flush's io_uring submission
// (uring_writer): what sendmsg would have returned, as -errno. Goes on as run() does.
void write_loop::sent(int res, std::int64_t now_ns) {
  if (res == -EAGAIN || res == -EWOULDBLOCK) return wait_writable();
  if (res > 0) advance(static_cast<std::size_t>(res));
  if (res < 0 && res != -EINTR) {
    ec_.assign(-res, boost::system::system_category());
  } else if (next_ < iov_.size()) {  // written in part: the rest by sendmsg, as on epoll
    if (!send_now()) return wait_writable();
    now_ns = 0;  // done later than the batch
  }
  sent_at_once(now_ns);
}

void write_loop::sent_at_once(std::int64_t now_ns) {
  complete(now_ns);
  // Written at once. The next batch waits for a turn of the event loop, as it does after a
  // write that had to wait: what other connections on this thread have to do runs first, and
  // frames that arrive meanwhile join the batch, which keeps batches large under load. The
  // turn comes from the context's flush queue, which starts every connection that wrote at
  // once with one posted handler, not one post (an allocation and the scheduler's lock) each.
  if (busy_ || continuing_) return;  // written() may have run the loop again
  // The write took all there was (every write at light load): the next push starts the loop
  // through the flush queue, so no turn is needed to find the outbox empty.
  if (owner_.idle_after_write()) return;
  continuing_ = true;
  // Run by a drain (every write a publication starts): its entry keeps the owner for the
  // next turn. Else (the next batch of a loop that waited) a shared_ptr of its own.
  if (!flushes_.again(*this)) flushes_.add(owner_.keep_alive(), *this, stream_.get_executor());
}

void write_loop::gather() {
  iov_.clear();
  next_ = 0;
  iov_.reserve(batch_.n_pieces_ + 3 * batch_.frames_.size());
  auto add = [this](std::string_view b) {
    if (!b.empty()) iov_.push_back(iovec{const_cast<char*>(b.data()), b.size()});
  };
  for (std::size_t i = 0; i < batch_.n_before_; ++i) add(batch_.pieces_[i]);
  for (const auto& f : batch_.frames_) {
    add(f->bytes);
    if (f->base) {  // a frame of its own around a shared message (frame::base)
      add(f->middle);
      add(f->tail);
    }
  }
  for (std::size_t i = batch_.n_before_; i < batch_.n_pieces_; ++i) add(batch_.pieces_[i]);
}

bool write_loop::send_now() {
  const int fd = stream_.socket().native_handle();
  for (int i = 0; i < max_sends_per_turn && next_ < iov_.size(); ++i) {
    msghdr msg{};
    msg.msg_iov = iov_.data() + next_;
    msg.msg_iovlen = std::min(iov_.size() - next_, iov_max);
    // MSG_DONTWAIT whatever the socket's mode: a refusal is written before the session has
    // made its socket non-blocking. MSG_NOSIGNAL: a peer that left is an error, not SIGPIPE.
    const ssize_t n = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      ec_.assign(errno, boost::system::system_category());
      return true;
    }
    advance(static_cast<std::size_t>(n));
  }
  return next_ == iov_.size();
}

// Moves past `n` written bytes; a buffer written in part keeps its unwritten tail.
void write_loop::advance(std::size_t n) {
  written_ += n;
  while (n) {
    assert(next_ < iov_.size());
    iovec& v = iov_[next_];
    if (n < v.iov_len) {
      v.iov_base = static_cast<char*>(v.iov_base) + n;
      v.iov_len -= n;
      return;
    }
    n -= v.iov_len;
    ++next_;
  }
}

void write_loop::wait_writable() {
  if (!timer_armed_ && timeout_.count() > 0) arm_timer(started_ + timeout_);
  stream_.socket().async_wait(tcp::socket::wait_write,
                              [this, keep = owner_.keep_alive()](boost::system::error_code ec) {
                                if (ec) {
                                  ec_ = ec;
                                } else if (!send_now()) {
                                  return wait_writable();
                                }
                                complete();
                                run();
                              });
}

void write_loop::write_tls() {
  if (!timer_armed_ && timeout_.count() > 0) arm_timer(started_ + timeout_);
  if (!tls_buffers_) tls_buffers_ = std::make_unique<std::vector<asio::const_buffer>>();
  auto& buffers = *tls_buffers_;
  buffers.clear();
  buffers.reserve(iov_.size());
  for (const auto& v : iov_) buffers.emplace_back(v.iov_base, v.iov_len);
  asio::async_write(stream_, buffers,
                    [this, keep = owner_.keep_alive()](boost::system::error_code ec,
                                                       std::size_t n) {
                      written_ = n;
                      ec_ = ec;
                      complete();
                      run();
                    });
}

void write_loop::complete(std::int64_t now_ns) {
  busy_ = false;
  auto& shard = metrics_.local();
  const auto t = static_cast<std::size_t>(owner_.metric_transport());
  write_tally* tally = open_tally;
  if (tally && tally->shard != &shard) {
    if (tally->shard) tally = nullptr;  // another server's metrics: counted at once
    else tally->shard = &shard;
  }
  write_tally here;  // without an open tally: this write's counts, added below
  write_tally& to = tally ? *tally : here;
  auto& traffic = to.traffic[t];
  to.transports |= 1u << t;
  ++traffic.writes;
  traffic.bytes_out += written_;
  const auto& frames = batch_.frames_;
  if (!frames.empty()) {
    // The publish-to-write histogram, counted per bucket: however many frames a write has,
    // its atomic additions are two per bucket it touches (one per flush with a tally).
    constexpr auto& bounds = metrics::latency_bounds_ns;
    const std::int64_t now = now_ns ? now_ns : steady_ns();
    std::uint64_t data_frames = 0;
    for (const auto& f : frames) {
      if (f->is_data) ++data_frames;
      if (!f->publish_ns) continue;
      const std::int64_t ns = std::max<std::int64_t>(now - f->publish_ns, 0);
      std::size_t b = 0;
      while (b < bounds.size() && ns > bounds[b]) ++b;
      ++to.latency[b];
      to.latency_sum_ns += static_cast<std::uint64_t>(ns);
      to.timed = true;
    }
    traffic.frames_out += frames.size();
    traffic.messages_out += data_frames;
  }
  if (!tally) {
    here.shard = &shard;
    publish(here);
  }
  batch_.frames_.clear();
  owner_.written(ec_);
}

write_loop::metrics_tally::metrics_tally() noexcept {
  if (open_tally) return;
  tally_storage = write_tally{};
  open_tally = &tally_storage;
  opened_ = true;
}

write_loop::metrics_tally::~metrics_tally() {
  if (!opened_) return;
  open_tally = nullptr;
  publish(tally_storage);
}

// One timer watches every write: armed by the first write that has to wait, it fires at that
// write's deadline; a write that has finished by then lets it lapse, a newer one re-arms it for
// its own deadline. So a busy connection arms it at most once per timeout, not once per write.
void write_loop::arm_timer(std::chrono::steady_clock::time_point deadline) {
  timer_armed_ = true;
  if (!timer_) timer_ = std::make_unique<asio::steady_timer>(stream_.get_executor());
  timer_->expires_at(deadline);
  timer_->async_wait([this, keep = owner_.keep_alive()](boost::system::error_code ec) {
    timer_armed_ = false;
    if (ec || !busy_) return;
    const auto due = started_ + timeout_;
    if (std::chrono::steady_clock::now() < due) return arm_timer(due);
    owner_.write_timed_out();
  });
}

void write_loop::stop() {
  if (timer_) timer_->cancel();
}

}  // namespace skyrelay::net
