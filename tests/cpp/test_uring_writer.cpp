// net::uring_writer over real loopback TCP connections: the loops one flush starts send in one
// io_uring submission per uring_writer::sends_per_enter sends; every result is handed out by
// the flush that sent it, so a loop's next batch goes out with no later flush to push it; a
// send the socket takes only in part, or not at all, goes on through
// epoll and arrives whole and in order; the write timeout and a peer that left end a write as
// on the epoll path; a context not enabled never opens a ring. Skipped, with the reason, where
// the build has no liburing or the kernel (or a seccomp filter) refuses io_uring.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <chrono>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "skyrelay/net/flush_queue.hpp"
#include "skyrelay/net/metrics.hpp"
#include "skyrelay/net/uring_writer.hpp"
#include "skyrelay/net/write_loop.hpp"
#include "socket_bytes.hpp"

namespace skyrelay {
namespace {

using namespace std::chrono_literals;

struct planned_batch {
  std::string before, after;
  std::vector<frame_ptr> frames;
};

class writer : public net::write_loop::owner, public std::enable_shared_from_this<writer> {
 public:
  writer(tcp::socket s, metrics& m, std::chrono::milliseconds timeout)
      : stream_(std::move(s)), loop_(stream_, *this, m, timeout) {}

  void fill(net::write_batch& b) override {
    if (plan_.empty()) return;
    auto& next = plan_.front();
    b.before(next.before);
    b.frames() = std::move(next.frames);
    b.after(next.after);
    plan_.pop_front();
  }
  void written(boost::system::error_code ec) override {
    ++written_;
    if (ec) error_ = ec;
  }
  void write_timed_out() override {
    timed_out_ = true;
    stream_.close();
  }
  std::shared_ptr<void> keep_alive() override { return shared_from_this(); }
  transport_kind metric_transport() const noexcept override { return transport_kind::json; }

  std::deque<planned_batch> plan_;
  net::stream stream_;
  net::write_loop loop_;
  int written_{0};
  boost::system::error_code error_;
  bool timed_out_{false};
};

using test::pattern;
using test::read_all;

// An I/O context with io_uring enabled, its flush queue, and `count` connected pairs.
struct rig {
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  metrics m{1};
  std::vector<tcp::socket> clients;
  std::vector<std::shared_ptr<writer>> writers;

  rig(int count, std::chrono::milliseconds timeout, bool small_buffers = false,
      bool enable = true) {
    asio::use_service<net::uring_writer>(ioc).enable(enable);
    for (int i = 0; i < count; ++i) {
      tcp::socket client(ioc), server(ioc);
      client.open(tcp::v4());
      if (small_buffers) client.set_option(asio::socket_base::receive_buffer_size(64 * 1024));
      client.connect(acceptor.local_endpoint());
      acceptor.accept(server);
      server.set_option(tcp::no_delay(true));
      if (small_buffers) server.set_option(asio::socket_base::send_buffer_size(16 * 1024));
      server.non_blocking(true);
      clients.push_back(std::move(client));
      writers.push_back(std::make_shared<writer>(std::move(server), m, timeout));
    }
  }
  // Starts every loop through the flush queue, as a publication does.
  void flush() {
    auto& queue = asio::use_service<net::flush_queue>(ioc);
    for (auto& w : writers) queue.add(w, w->loop_, ioc.get_executor());
  }
  bool ring_active() { return asio::use_service<net::uring_writer>(ioc).active(); }
};

// Why io_uring cannot be tested here, or empty when it can.
std::string unavailable() {
  if (!net::uring_writer::compiled_in()) return "built without liburing (liburing-dev)";
  rig r(1, 0ms);
  r.writers[0]->plan_.push_back(planned_batch{"probe", "", {}});
  r.flush();
  r.ioc.run_for(2s);
  if (!r.ring_active()) return "the kernel or a seccomp filter refuses io_uring here";
  return {};
}

#define SKIP_WITHOUT_URING()                                              \
  if (const auto why = unavailable(); !why.empty()) GTEST_SKIP() << why

TEST(UringWriter, OneFlushSendsToManySocketsInAFewSubmissions) {
  SKIP_WITHOUT_URING();
  constexpr int count = 300;
  rig r(count, 0ms);
  std::vector<std::string> expected(count);
  for (int i = 0; i < count; ++i) {
    planned_batch b;
    // Half one buffer (SEND), half a head and two frames (SENDMSG of three buffers).
    if (i % 2) b.before = "head" + std::to_string(i);
    auto payload = pattern(i, 64 + i);
    b.frames.push_back(make_frame(std::string(payload)));
    if (i % 2) b.frames.push_back(make_frame(pattern(i + 1, 10)));
    for (const auto& f : b.frames) expected[i] += f->bytes;
    expected[i] = b.before + expected[i];
    r.writers[i]->plan_.push_back(std::move(b));
  }
  const auto submissions0 = net::uring_stats::submissions.load();
  const auto sends0 = net::uring_stats::sends.load();
  r.flush();
  r.ioc.run_for(2s);
  EXPECT_TRUE(r.ring_active());
  // One io_uring_enter per sends_per_enter sends (300: 5), none waiting for results.
  constexpr auto per = net::uring_writer::sends_per_enter;
  EXPECT_EQ(net::uring_stats::submissions.load() - submissions0, (count + per - 1) / per);
  EXPECT_EQ(net::uring_stats::sends.load() - sends0, static_cast<std::uint64_t>(count));
  for (int i = 0; i < count; ++i) {
    EXPECT_EQ(r.writers[i]->written_, 1) << i;
    EXPECT_FALSE(r.writers[i]->error_) << i << ": " << r.writers[i]->error_.message();
    EXPECT_EQ(read_all(r.clients[i], expected[i].size()), expected[i]) << i;
  }
  EXPECT_EQ(r.m.total(transport_kind::json, &metrics::traffic::writes),
            static_cast<std::uint64_t>(count));
}

// One flush, then nothing from outside: every send's result reaches its loop within that flush
// (none is left in the ring for the next flush, which here never comes), so each loop goes on
// to its second batch by itself and every peer gets both. A completion held until the next
// flush would leave every loop busy with its first write and the second batches unsent.
TEST(UringWriter, NoResultWaitsForALaterFlush) {
  SKIP_WITHOUT_URING();
  constexpr int count = 200;
  rig r(count, 0ms);
  std::vector<std::string> expected(count);
  for (int i = 0; i < count; ++i) {
    for (int k = 0; k < 2; ++k) {
      planned_batch b;
      b.frames.push_back(make_frame(pattern(i + k, 40 + i % 50)));
      expected[i] += b.frames.back()->bytes;
      r.writers[i]->plan_.push_back(std::move(b));
    }
  }
  const auto sends0 = net::uring_stats::sends.load();
  r.flush();
  // Runs the context until it has nothing left to do (bounded by a generous 20 s): no other
  // flush is started from outside.
  r.ioc.run_for(20s);
  // Both batches through the ring: the second from the flush that the first one's
  // continuation started.
  EXPECT_EQ(net::uring_stats::sends.load() - sends0, static_cast<std::uint64_t>(2 * count));
  for (int i = 0; i < count; ++i) {
    EXPECT_EQ(r.writers[i]->written_, 2) << i;
    EXPECT_FALSE(r.writers[i]->loop_.busy()) << i;
    EXPECT_TRUE(r.writers[i]->plan_.empty()) << i;
    EXPECT_FALSE(r.writers[i]->error_) << i << ": " << r.writers[i]->error_.message();
    EXPECT_EQ(read_all(r.clients[i], expected[i].size()), expected[i]) << i;
  }
}

// A batch far bigger than the socket's buffers: the submission writes part of it (or nothing)
// and the rest goes on through epoll, in order, while the peer reads.
TEST(UringWriter, APartialSendGoesOnThroughEpollAndArrivesWhole) {
  SKIP_WITHOUT_URING();
  rig r(2, 0ms, true);
  std::vector<std::string> expected(2);
  for (int w = 0; w < 2; ++w) {
    planned_batch b;
    b.before = "head";
    for (std::size_t i = 0; i < 600; ++i) b.frames.push_back(make_frame(pattern(i + w, 700 + i)));
    b.after = "tail";
    expected[w] = b.before;
    for (const auto& f : b.frames) expected[w] += f->bytes;
    expected[w] += b.after;
    r.writers[w]->plan_.push_back(std::move(b));
  }
  const auto sends0 = net::uring_stats::sends.load();
  r.flush();
  r.ioc.poll();  // the flush: one submission, then both wait for writability
  EXPECT_EQ(net::uring_stats::sends.load() - sends0, 2u);
  ASSERT_TRUE(r.writers[0]->loop_.busy()) << "the socket took 400 KB at once";
  std::vector<std::string> got(2);
  std::thread reader0([&] { got[0] = read_all(r.clients[0], expected[0].size()); });
  std::thread reader1([&] { got[1] = read_all(r.clients[1], expected[1].size()); });
  r.ioc.run_for(20s);
  reader0.join();
  reader1.join();
  for (int w = 0; w < 2; ++w) {
    EXPECT_EQ(r.writers[w]->written_, 1);
    EXPECT_FALSE(r.writers[w]->error_) << r.writers[w]->error_.message();
    ASSERT_EQ(got[w].size(), expected[w].size());
    EXPECT_TRUE(got[w] == expected[w]) << "bytes out of order or damaged";
  }
}

TEST(UringWriter, AWriteThePeerDoesNotReadTimesOutAsOnEpoll) {
  SKIP_WITHOUT_URING();
  rig r(1, 200ms, true);
  planned_batch b;
  for (std::size_t i = 0; i < 64; ++i) b.frames.push_back(make_frame(pattern(i, 64 * 1024)));
  r.writers[0]->plan_.push_back(std::move(b));
  r.flush();
  r.ioc.run_for(10s);
  EXPECT_TRUE(r.writers[0]->timed_out_);
  EXPECT_EQ(r.writers[0]->written_, 1);
  EXPECT_TRUE(r.writers[0]->error_);
  EXPECT_FALSE(r.writers[0]->loop_.busy());
}

TEST(UringWriter, APeerThatLeftEndsTheWriteWithAnError) {
  SKIP_WITHOUT_URING();
  rig r(1, 0ms, true);
  r.clients[0].close();
  planned_batch b;
  for (std::size_t i = 0; i < 64; ++i) b.frames.push_back(make_frame(pattern(i, 64 * 1024)));
  r.writers[0]->plan_.push_back(std::move(b));
  r.flush();
  r.ioc.run_for(10s);
  EXPECT_EQ(r.writers[0]->written_, 1);
  EXPECT_TRUE(r.writers[0]->error_);  // EPIPE or ECONNRESET from the ring or sendmsg
  EXPECT_FALSE(r.writers[0]->loop_.busy());
}

// io_uring="off": the context never opens a ring, and the writes go out through sendmsg.
TEST(UringWriter, AContextNotEnabledWritesThroughEpoll) {
  rig r(3, 0ms, false, false);
  for (auto& w : r.writers) w->plan_.push_back(planned_batch{"plain", "", {}});
  const auto sends0 = net::uring_stats::sends.load();
  r.flush();
  r.ioc.run_for(1s);
  EXPECT_FALSE(r.ring_active());
  EXPECT_EQ(net::uring_stats::sends.load(), sends0);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r.writers[i]->written_, 1);
    EXPECT_EQ(read_all(r.clients[i], 5), "plain");
  }
}

}  // namespace
}  // namespace skyrelay
