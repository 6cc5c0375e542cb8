// The write loop every streaming transport shares (WebSocket, Engine.IO over WebSocket, SSE):
// one write in flight per connection, and everything queued meanwhile goes out together in the
// next write.
//
// A write carries a batch: a few bytes of the session's own (an HTTP response head, a chunk
// size, a close frame) and the frames taken from its outbox, each shared with every other
// connection that sends it. Plain TCP writes the batch with non-blocking `sendmsg` calls of up
// to IOV_MAX buffers each, straight on the socket's handle, and waits for writability
// (async_wait) only when the socket is full. TLS passes the same buffers to asio::async_write
// on the stream, whose flat_stream layer packs them into as few TLS records as fit (16 KiB
// each) instead of one record per frame.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <sys/uio.h>

#include "skyrelay/core/frame.hpp"
#include "skyrelay/net/aliases.hpp"
#include "skyrelay/net/metrics.hpp"
#include "skyrelay/net/stream.hpp"

namespace skyrelay {

namespace net {

// What one write carries, in this order: the `before` pieces, the frames, the `after` pieces.
// Only the write loop makes and clears it; its owner fills it in write_loop::owner::fill.
class write_batch {
 public:
  // Pieces around the frames, both sides together: an SSE stream's first write is the most
  // (its head, a chunk size and a prefix before, "\r\n" after), and at most max_owned of them
  // owned (the head and the prefix). Sized to what the transports use, as every connection
  // keeps one batch.
  static constexpr std::size_t max_pieces = 4;
  static constexpr std::size_t max_owned = 2;

  // The frames to write, in order; the owner appends to it (outbox::take does).
  std::vector<frame_ptr>& frames() noexcept { return frames_; }
  // Moves `bytes` into the batch, after the `before` pieces added so far. `bytes` comes back
  // empty, holding no heap buffer (a written batch gives its pieces' buffers back, so an idle
  // connection keeps none). Empty bytes add nothing. At most max_pieces in all, of which at
  // most max_owned owned; every `before` piece is added ahead of every `after` one.
  void before(std::string& bytes);
  void after(std::string& bytes);
  // Bytes the batch only points to: a literal, or a member the owner leaves untouched until
  // the write completes (fill() runs only once the write before has completed).
  void before_view(std::string_view bytes);
  void after_view(std::string_view bytes);

  bool empty() const noexcept { return n_pieces_ == 0 && frames_.empty(); }
  // The bytes of the frames alone.
  std::size_t frame_bytes() const noexcept;

 private:
  friend class write_loop;
  std::string& own(std::string& bytes);
  void add(std::string_view bytes, bool is_before);
  void clear() noexcept;

  std::array<std::string, max_owned> owned_;
  // pieces_[0, n_before_) go before the frames, pieces_[n_before_, n_pieces_) after them.
  std::array<std::string_view, max_pieces> pieces_{};
  std::uint8_t n_owned_{0};
  std::uint8_t n_before_{0};
  std::uint8_t n_pieces_{0};
  std::vector<frame_ptr> frames_;
};

class flush_queue;

class write_loop {
 public:
  // The session the loop writes for. Every call comes from the stream's executor.
  class owner {
   public:
    // Adds what to write next to `b`; adding nothing ends the loop until the next run().
    virtual void fill(write_batch& b) = 0;
    // The batch has been written, or the write failed with `ec` (the peer went away, or the
    // stream was closed under it). The loop is idle again, the write counted in the metrics,
    // and its frames released. The loop calls fill() again after this returns.
    virtual void written(boost::system::error_code ec) = 0;
    // A write has been pending for the write timeout: the peer is not reading. The write is
    // still pending; the owner closes the stream (which completes it with an error) or not.
    virtual void write_timed_out() = 0;
    // Keeps the owner (and so the loop it holds) alive while a step is pending.
    virtual std::shared_ptr<void> keep_alive() = 0;
    // The `transport` label its writes are counted under on /metrics. Constant once writing.
    virtual transport_kind metric_transport() const noexcept = 0;
    // After a write that went out at once (once written() has returned): true when fill()
    // would add nothing now and the owner itself will have the loop run when it has something
    // again (its outbox marked idle, so that the next push starts the loop). The loop then
    // skips the turn it would otherwise take only to find that out. False, the default: the
    // loop takes that turn. The check and the marking must be one step against the pushers:
    // a frame queued before it makes it false, one queued after it starts the loop.
    virtual bool idle_after_write() { return false; }

   protected:
    ~owner() = default;
  };

  // `timeout` 0 means no write timeout. The loop lives inside `o`, which outlives it.
  write_loop(stream& s, owner& o, metrics& m, std::chrono::milliseconds timeout);

  write_loop(const write_loop&) = delete;
  write_loop& operator=(const write_loop&) = delete;

  // Writes the next batch if the loop is idle and fill() adds anything. A batch the socket
  // takes at once is done before run() returns (or when the flush's io_uring batch hands its
  // result out), and the loop goes on in a turn posted to the executor, unless the owner says
  // it is idle (owner::idle_after_write); one that must wait goes on from its completion.
  // Either way the loop keeps going until fill() adds nothing. On the stream's executor.
  void run();
  // Cancels the write timer (the owner is finishing); a pending write ends when the stream is
  // closed.
  void stop();

  // The result of the send that run() handed to the flush's io_uring batch (uring_writer),
  // and when the batch's sends were done (steady_ns, read once for all of them).
  void sent(int res, std::int64_t now_ns);

  // While one is open on a thread (flush_queue::drain opens one around the loops it runs),
  // the writes that complete on that thread are counted into it and added to /metrics once,
  // when it closes: a few atomic additions per flush instead of six per write. The counters
  // are exact once the flush has ended. Opened inside another, it leaves that one in charge.
  class metrics_tally {
   public:
    metrics_tally() noexcept;
    ~metrics_tally();
    metrics_tally(const metrics_tally&) = delete;
    metrics_tally& operator=(const metrics_tally&) = delete;

   private:
    bool opened_{false};
  };

  bool busy() const noexcept { return busy_; }
  // Frames of the write in flight (0 when idle).
  std::size_t inflight_frames() const noexcept { return busy_ ? batch_.frames_.size() : 0; }

 private:
  static constexpr int max_sends_per_turn = 16;  // then wait for writability (fairness)

  void gather();
  // Plain TCP: writes what the socket takes now. True when the batch is done (ec_ tells how),
  // false when the rest must wait for writability.
  bool send_now();
  void advance(std::size_t n);
  // The batch went out without waiting (at `now_ns`, or 0: read the clock): complete,
  // continue next turn.
  void sent_at_once(std::int64_t now_ns = 0);
  void wait_writable();
  void write_tls();
  void complete(std::int64_t now_ns = 0);
  void arm_timer(std::chrono::steady_clock::time_point deadline);

  stream& stream_;
  owner& owner_;
  metrics& metrics_;
  flush_queue& flushes_;  // of the stream's I/O context: the next turn after a write at once
  std::chrono::milliseconds timeout_;
  // Made by the first write that has to wait: a connection whose writes all went out at once
  // (every idle one) has none.
  std::unique_ptr<asio::steady_timer> timer_;
  write_batch batch_;
  std::vector<iovec> iov_;  // the batch's buffers; the first `next_` are written
  std::size_t next_{0};
  // TLS: the batch's buffers as Asio's, made by the first TLS write (none on plain TCP).
  std::unique_ptr<std::vector<asio::const_buffer>> tls_buffers_;
  std::size_t written_{0};  // bytes of the batch written so far
  boost::system::error_code ec_;
  std::chrono::steady_clock::time_point started_;
  bool busy_{false};
  bool timer_armed_{false};
  bool continuing_{false};  // a run() is queued on the flush queue
  // Set by flush_queue (a friend) while its drain runs this loop, and when the loop asked it
  // for its next turn (flush_queue::again).
  bool in_drain_{false};
  bool again_{false};
  friend class flush_queue;
};

}  // namespace net
}  // namespace skyrelay
