// net::write_loop over real loopback TCP connections: batches of more frames than one sendmsg
// takes (IOV_MAX), written through a small send buffer so that writes stop part-way through a
// buffer, arrive whole and in order; the write timeout and a peer that leaves end a write with
// an error; messages carry their WebSocket header in front and their bare payload behind it;
// the flush queue starts many loops with one post, in the order of the executor's other work;
// a loop whose write took all its owner had takes no further turn, and frames pushed by
// another thread while it writes all arrive, in order.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "skyrelay/net/flush_queue.hpp"
#include "skyrelay/net/metrics.hpp"
#include "skyrelay/net/outbox.hpp"
#include "skyrelay/net/write_loop.hpp"
#include "socket_bytes.hpp"
#include "skyrelay/proto/ws_frame.hpp"

namespace skyrelay {
namespace {

using namespace std::chrono_literals;

// What one batch carries: own bytes before and after the frames.
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
    returned_.push_back(next.before.capacity());  // what the batch gave back for it
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
    stream_.close();  // completes the pending write with an error
  }
  std::shared_ptr<void> keep_alive() override { return shared_from_this(); }
  // Not the first transport, so that counting under the owner's label is what is tested.
  transport_kind metric_transport() const noexcept override { return transport_kind::sse; }

  std::deque<planned_batch> plan_;
  net::stream stream_;
  net::write_loop loop_;
  int written_{0};
  std::vector<std::size_t> returned_;  // capacity of the string each fill got back
  boost::system::error_code error_;
  bool timed_out_{false};
};

// A connected pair on 127.0.0.1: the server side for the writer, the client side for a reader.
struct connection {
  asio::io_context ioc;
  tcp::socket server{ioc}, client{ioc};

  // Small buffers make a big write stop part-way (the kernel may round them up). No Nagle, as
  // on the server's sockets: small windows would otherwise wait for delayed ACKs.
  explicit connection(bool small_buffers = false) {
    tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    if (small_buffers) {  // before connecting, so that the window is small from the start
      client.open(tcp::v4());
      client.set_option(asio::socket_base::receive_buffer_size(64 * 1024));
    }
    client.connect(acceptor.local_endpoint());
    acceptor.accept(server);
    server.set_option(tcp::no_delay(true));
    if (small_buffers) server.set_option(asio::socket_base::send_buffer_size(16 * 1024));
  }
};

using test::pattern;
using test::read_all;

TEST(WriteLoop, PartialWritesOfMoreThanIovMaxFramesArriveWholeAndInOrder) {
  connection c(true);
  metrics m(1);
  auto w = std::make_shared<writer>(std::move(c.server), m, 0ms);
  std::string expected;
  std::size_t frames = 0;
  for (std::size_t batch = 0; batch < 2; ++batch) {
    planned_batch b;
    b.before = "head" + std::to_string(batch);
    expected += b.before;
    // More frames than one sendmsg takes, with sizes that end writes anywhere in a buffer.
    const std::size_t count = batch == 0 ? 3 * IOV_MAX + 17 : 1500;
    for (std::size_t i = 0; i < count; ++i, ++frames) {
      auto bytes = pattern(frames, 1 + (frames * 37) % 900);
      expected += bytes;
      b.frames.push_back(make_frame(std::move(bytes)));
    }
    b.after = "tail" + std::to_string(batch);
    expected += b.after;
    w->plan_.push_back(std::move(b));
  }
  w->loop_.run();
  // The first batch is far bigger than both socket buffers: nothing reads yet, so it waits.
  ASSERT_TRUE(w->loop_.busy());
  EXPECT_EQ(w->loop_.inflight_frames(), 3 * IOV_MAX + 17);
  std::string got;
  std::thread reader([&] { got = read_all(c.client, expected.size()); });
  c.ioc.run_for(30s);  // ends when the loop has nothing left to wait for
  reader.join();
  EXPECT_EQ(w->written_, 2);
  EXPECT_FALSE(w->error_) << w->error_.message();
  EXPECT_FALSE(w->loop_.busy());
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected) << "bytes out of order or damaged";
  constexpr auto sse = transport_kind::sse;
  EXPECT_EQ(m.total(sse, &metrics::traffic::writes), 2u);
  EXPECT_EQ(m.total(sse, &metrics::traffic::frames_out), frames);
  EXPECT_EQ(m.total(sse, &metrics::traffic::messages_out), frames);
  EXPECT_EQ(m.total(sse, &metrics::traffic::bytes_out), expected.size());
  EXPECT_EQ(m.total(transport_kind::json, &metrics::traffic::bytes_out), 0u);
}

// A frame written around a shared one (frame::base: a Socket.IO event with its socket's offset)
// goes out as its header, the shared text and its tail, between frames written whole; the
// outbox and the batch count its wire size.
TEST(WriteLoop, AFrameAroundASharedOneIsWrittenAsItsThreeParts) {
  connection c;
  metrics m(1);
  auto w = std::make_shared<writer>(std::move(c.server), m, 0ms);
  const auto shared = make_message("42[\"e\",{\"n\":1}]", 1);
  frame own;
  own.middle = shared->payload().substr(0, shared->payload().size() - 1);
  own.tail = ",\"7\"]";
  ws::append_header(own.bytes, ws::opcode::text, own.middle.size() + own.tail.size());
  own.payload_at = static_cast<std::uint8_t>(own.bytes.size());
  own.ws_opcode = 1;
  own.base = shared;
  const auto around = std::make_shared<const frame>(std::move(own));
  const std::string whole = ws::encode(ws::opcode::text, "42[\"e\",{\"n\":1},\"7\"]");
  EXPECT_EQ(around->wire_size(), whole.size());
  std::string text;
  around->append_payload(text);
  EXPECT_EQ(text, "42[\"e\",{\"n\":1},\"7\"]");
  planned_batch b;
  b.frames = {shared, around, shared};
  w->plan_.push_back(std::move(b));
  const std::string expected = shared->bytes + whole + shared->bytes;
  w->loop_.run();
  std::string got;
  std::thread reader([&] { got = read_all(c.client, expected.size()); });
  c.ioc.run_for(10s);
  reader.join();
  EXPECT_EQ(got, expected);
  EXPECT_EQ(m.total(transport_kind::sse, &metrics::traffic::bytes_out), expected.size());
  EXPECT_EQ(m.total(transport_kind::sse, &metrics::traffic::messages_out), 3u);
}

// A written batch gives its pieces' buffers back (an idle connection keeps none of its 101
// response or welcome): the next batch's big piece gets no used buffer in return, and it is
// written whole, as is every later one.
TEST(WriteLoop, AWrittenBatchGivesItsPiecesBuffersBack) {
  connection c;
  metrics m(1);
  auto w = std::make_shared<writer>(std::move(c.server), m, 0ms);
  std::string expected;
  for (std::size_t batch = 0; batch < 3; ++batch) {
    planned_batch b;
    b.before = pattern(batch, 5000);
    b.after = pattern(batch + 10, 3000);
    auto bytes = pattern(batch + 20, 100);
    expected += b.before + bytes + b.after;
    b.frames.push_back(make_frame(std::move(bytes)));
    w->plan_.push_back(std::move(b));
  }
  std::string got;
  std::thread reader([&] { got = read_all(c.client, expected.size()); });
  w->loop_.run();
  c.ioc.run_for(5s);
  reader.join();
  EXPECT_EQ(w->written_, 3);
  EXPECT_FALSE(w->error_) << w->error_.message();
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected) << "bytes out of order or damaged";
  // Each fill got back an empty string with no heap buffer (a 5,000-byte one before).
  ASSERT_EQ(w->returned_.size(), 3u);
  for (auto cap : w->returned_) EXPECT_LT(cap, 64u);
}

TEST(WriteLoop, NothingToWriteWritesNothing) {
  connection c;
  metrics m(1);
  auto w = std::make_shared<writer>(std::move(c.server), m, 0ms);
  w->loop_.run();
  EXPECT_FALSE(w->loop_.busy());
  c.ioc.run_for(50ms);
  EXPECT_EQ(w->written_, 0);
  EXPECT_EQ(m.total(transport_kind::sse, &metrics::traffic::writes), 0u);
}

TEST(WriteLoop, AWriteThePeerDoesNotReadTimesOut) {
  connection c(true);
  metrics m(1);
  auto w = std::make_shared<writer>(std::move(c.server), m, 200ms);
  planned_batch b;
  for (std::size_t i = 0; i < 64; ++i) b.frames.push_back(make_frame(pattern(i, 64 * 1024)));
  w->plan_.push_back(std::move(b));
  w->loop_.run();
  ASSERT_TRUE(w->loop_.busy());
  c.ioc.run_for(10s);  // ends once the timeout has closed the stream and the write is done
  EXPECT_TRUE(w->timed_out_);
  EXPECT_EQ(w->written_, 1);
  EXPECT_TRUE(w->error_);
  EXPECT_FALSE(w->loop_.busy());
}

TEST(WriteLoop, APeerThatLeavesEndsTheWriteWithAnError) {
  connection c(true);
  metrics m(1);
  auto w = std::make_shared<writer>(std::move(c.server), m, 0ms);
  c.client.close();
  planned_batch b;
  for (std::size_t i = 0; i < 64; ++i) b.frames.push_back(make_frame(pattern(i, 64 * 1024)));
  w->plan_.push_back(std::move(b));
  w->loop_.run();
  c.ioc.run_for(10s);
  EXPECT_EQ(w->written_, 1);
  EXPECT_TRUE(w->error_);  // EPIPE or ECONNRESET, and no SIGPIPE
  EXPECT_FALSE(w->loop_.busy());
}

// Loops queued on one I/O context's flush queue run in one handler, in the order they were
// queued, after what was posted before and before what is posted after; each writes its batch.
TEST(FlushQueue, StartsManyLoopsWithOnePostInTheExecutorsOrder) {
  asio::io_context ioc;
  tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  metrics m(1);
  constexpr int count = 3;
  std::vector<std::string> log;
  std::vector<tcp::socket> clients;
  std::vector<std::shared_ptr<writer>> writers;
  for (int i = 0; i < count; ++i) {
    tcp::socket client(ioc), server(ioc);
    client.connect(acceptor.local_endpoint());
    acceptor.accept(server);
    clients.push_back(std::move(client));
    writers.push_back(std::make_shared<writer>(std::move(server), m, 0ms));
    planned_batch b;
    b.before = "loop" + std::to_string(i);
    writers.back()->plan_.push_back(std::move(b));
  }
  auto& queue = asio::use_service<net::flush_queue>(ioc);
  const auto ex = ioc.get_executor();
  asio::post(ex, [&] { log.push_back("before"); });
  // Added in reverse, from another thread (as the publisher does): run in that order.
  std::thread publisher([&] {
    for (int i = count - 1; i >= 0; --i) queue.add(writers[i], writers[i]->loop_, ex);
  });
  publisher.join();
  asio::post(ex, [&] { log.push_back("after"); });
  EXPECT_EQ(ioc.poll_one(), 1u);
  EXPECT_EQ(log, std::vector<std::string>{"before"});
  EXPECT_EQ(ioc.poll_one(), 1u);  // one handler: every loop
  for (const auto& w : writers) EXPECT_EQ(w->written_, 1);
  EXPECT_EQ(ioc.poll_one(), 1u);
  EXPECT_EQ(log, (std::vector<std::string>{"before", "after"}));
  ioc.poll();
  for (int i = 0; i < count; ++i) {
    const std::string want = "loop" + std::to_string(i);
    EXPECT_EQ(read_all(clients[i], want.size()), want);
  }
}

// An owner fed as a session is: frames pushed into an outbox by any thread, the loop started
// through the flush queue when a push finds it idle. `idle_after_write` off leaves the
// default (a turn after every write at once).
class outbox_writer : public net::write_loop::owner,
                      public std::enable_shared_from_this<outbox_writer> {
 public:
  outbox_writer(tcp::socket s, metrics& m, bool idle_after_write)
      : stream_(std::move(s)),
        loop_(stream_, *this, m, 0ms),
        box_(outbox::limits{std::size_t{1} << 30, std::size_t{1} << 24}),
        idle_after_write_(idle_after_write) {}

  void push(const frame_ptr& f) {  // any thread
    const auto r = box_.push(f, overflow_policy::disconnect);
    ASSERT_TRUE(r.accepted);
    if (r.start_writer)
      asio::use_service<net::flush_queue>(
          static_cast<asio::io_context&>(stream_.get_executor().context()))
          .add(shared_from_this(), loop_);
  }
  void fill(net::write_batch& b) override {
    ++fills_;
    box_.take(b.frames());
  }
  void written(boost::system::error_code ec) override {
    if (ec) error_ = ec;
  }
  void write_timed_out() override {}
  std::shared_ptr<void> keep_alive() override { return shared_from_this(); }
  transport_kind metric_transport() const noexcept override { return transport_kind::json; }
  bool idle_after_write() override { return idle_after_write_ && box_.idle_if_empty(); }

  net::stream stream_;
  net::write_loop loop_;
  outbox box_;
  const bool idle_after_write_;
  int fills_{0};  // on the executor
  boost::system::error_code error_;
};

// At light load every write takes the whole outbox. The loop goes idle after it without a
// second turn (one fill per write, not two), and the next push starts it again.
TEST(WriteLoop, AWriteThatTookEverythingTakesNoFurtherTurn) {
  for (const bool idle_after_write : {false, true}) {
    connection c;
    metrics m(1);
    auto w = std::make_shared<outbox_writer>(std::move(c.server), m, idle_after_write);
    std::string expected;
    for (std::size_t i = 0; i < 3; ++i) {
      const std::string bytes = pattern(i, 100);
      w->push(make_frame(bytes));
      expected += bytes;
      c.ioc.poll();
      c.ioc.restart();
      EXPECT_EQ(read_all(c.client, bytes.size()), bytes);
      EXPECT_FALSE(w->loop_.busy());
    }
    // The default: each write's turn after it found the outbox empty.
    EXPECT_EQ(w->fills_, idle_after_write ? 3 : 6) << idle_after_write;
    EXPECT_EQ(m.total(transport_kind::json, &metrics::traffic::writes), 3u);
    EXPECT_EQ(m.total(transport_kind::json, &metrics::traffic::frames_out), 3u);
    EXPECT_FALSE(w->error_);
  }
}

// Frames pushed by another thread while the loop writes: whether a push comes before a write
// takes the outbox, between the take and the write's end, or after the loop went idle, it
// arrives, once and in order (a push whose start were lost would stall the stream here).
TEST(WriteLoop, FramesPushedWhileItWritesAllArriveInOrder) {
  connection c;
  metrics m(1);
  auto w = std::make_shared<outbox_writer>(std::move(c.server), m, true);
  constexpr std::size_t count = 20'000;
  std::string expected;
  std::vector<frame_ptr> frames;
  for (std::size_t i = 0; i < count; ++i) {
    frames.push_back(make_frame(pattern(i, 1 + i % 61)));
    expected += frames.back()->bytes;
  }
  auto guard = asio::make_work_guard(c.ioc);
  std::thread io([&] { c.ioc.run_for(30s); });
  std::thread publisher([&] {
    for (std::size_t i = 0; i < count; ++i) {
      w->push(frames[i]);
      if (i % 97 == 0) std::this_thread::yield();  // let the loop go idle now and then
    }
  });
  const std::string got = read_all(c.client, expected.size());
  publisher.join();
  guard.reset();
  c.ioc.stop();
  io.join();
  EXPECT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected);
  EXPECT_FALSE(w->error_);
  EXPECT_EQ(m.total(transport_kind::json, &metrics::traffic::frames_out), count);
  EXPECT_EQ(m.total(transport_kind::json, &metrics::traffic::bytes_out), expected.size());
}

TEST(MessageFrame, CarriesItsWebSocketHeaderInFrontOfTheBarePayload) {
  for (std::size_t size : {0, 1, 125, 126, 65535, 65536}) {
    const std::string payload = pattern(size, size);
    const auto text = make_message(payload, 1, 5, true);
    EXPECT_EQ(text->bytes, ws::encode(ws::opcode::text, payload)) << size;
    EXPECT_EQ(text->payload(), payload) << size;
    EXPECT_EQ(text->ws_opcode, 1);
    EXPECT_EQ(text->publish_ns, 5);
    const auto binary = make_message(payload, 2);
    EXPECT_EQ(binary->bytes, ws::encode(ws::opcode::binary, payload)) << size;
    EXPECT_EQ(binary->payload(), payload) << size;
  }
  const auto plain = make_frame("abc");
  EXPECT_EQ(plain->payload(), "abc");
}

}  // namespace
}  // namespace skyrelay
