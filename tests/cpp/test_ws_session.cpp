// The WebSocket transport (net/ws_session) with a protocol of the test's own plugged in as its
// ws_handler, over a real socket on 127.0.0.1: what a future endpoint gets from the transport
// without writing any of it (framing and its limits, pings, the close handshake) and what it
// sees of it (one call per message, its open and its end). The JSON protocol and Engine.IO are
// handlers on the same transport (tests/python/test_ws_transport.py runs both).
#include <gtest/gtest.h>

#include <boost/asio.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "skyrelay/net/server.hpp"
#include "skyrelay/net/session_context.hpp"
#include "skyrelay/net/ws_session.hpp"
#include "blocking_client.hpp"

namespace skyrelay {
namespace {

using tcp = boost::asio::ip::tcp;
constexpr auto wait_limit = std::chrono::seconds(5);

// A protocol of one rule: "echo:<text>" for each text message, "binary:<size>" for each binary
// one; "hello" first. Records what the transport told it, for the test thread.
class echo_handler : public ws_handler {
 public:
  void on_ws_open(ws_session& s) override { s.send_first("hello"); }
  void on_ws_text(ws_session& s, std::string_view text) override {
    record("text:" + std::string(text));
    s.send_text("echo:" + std::string(text));
  }
  void on_ws_binary(ws_session& s, std::string_view bytes) override {
    record("binary:" + std::to_string(bytes.size()));
    s.send_text("binary:" + std::to_string(bytes.size()));
  }
  void on_ws_closed(ws_session&, disconnect_reason why) override {
    record("closed:" + std::string(to_string(why)));
  }

  // What it was told, once `n` calls have come (or the wait limit passed).
  std::vector<std::string> calls(std::size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, wait_limit, [&] { return calls_.size() >= n; });
    return calls_;
  }

 private:
  void record(std::string call) {
    {
      std::lock_guard lock(mu_);
      calls_.push_back(std::move(call));
    }
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> calls_;
};

// A blocking client that writes masked frames and reads the server's unmasked ones.
class ws_client : public testing::blocking_client {
 public:
  using blocking_client::blocking_client;

  void send(std::uint8_t op, const std::string& payload) { send_frame(op, payload); }
  // The next frame (opcode, payload), or nothing when the connection ends or stays silent.
  std::optional<std::pair<std::uint8_t, std::string>> frame() { return read_frame(); }

  // The code of the close frame that comes next, or 0.
  std::uint16_t close_code() {
    auto f = frame();
    if (!f || f->first != 0x8 || f->second.size() < 2) return 0;
    return static_cast<std::uint16_t>((static_cast<unsigned char>(f->second[0]) << 8) |
                                      static_cast<unsigned char>(f->second[1]));
  }
};

class WsSession : public ::testing::Test {
 protected:
  void SetUp() override {
    server_config cfg;
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.io_threads = 1;
    cfg.max_message_size = 1024;
    srv_ = std::make_unique<server>(cfg, app_hooks{});
    srv_->start();
  }
  void TearDown() override { srv_->stop(); }

  // A connected pair on 127.0.0.1: the server's end becomes a ws_session for `handler`.
  ws_client open(const std::shared_ptr<echo_handler>& handler) {
    tcp::acceptor acceptor(local_, {boost::asio::ip::make_address("127.0.0.1"), 0});
    tcp::socket client_end(local_);
    client_end.connect(acceptor.local_endpoint());
    auto& ctx = srv_->context();
    tcp::socket server_end(ctx.next_context());
    acceptor.accept(server_end);
    auto session = std::make_shared<ws_session>(net::stream(std::move(server_end)), ctx,
                                                "test-session", "", "", ctx.encoders().json_ws);
    session->start_with(handler, "");
    return ws_client(std::move(client_end));
  }

  boost::asio::io_context local_;
  std::unique_ptr<server> srv_;
};

TEST_F(WsSession, AHandlerGetsEachMessageAndTheTransportAnswersTheRest) {
  auto handler = std::make_shared<echo_handler>();
  auto c = open(handler);
  EXPECT_EQ(c.frame(), (std::pair<std::uint8_t, std::string>{0x1, "hello"}));
  c.send(0x1, "abc");
  EXPECT_EQ(c.frame(), (std::pair<std::uint8_t, std::string>{0x1, "echo:abc"}));
  c.send(0x2, std::string("\x00\x01\x02", 3));
  EXPECT_EQ(c.frame(), (std::pair<std::uint8_t, std::string>{0x1, "binary:3"}));
  c.send(0x9, "beat");  // the transport's business: answered, the handler not told
  EXPECT_EQ(c.frame(), (std::pair<std::uint8_t, std::string>{0xA, "beat"}));
  c.send(0x8, std::string("\x03\xe8", 2));  // close 1000
  EXPECT_EQ(c.close_code(), 1000);
  EXPECT_EQ(handler->calls(3),
            (std::vector<std::string>{"text:abc", "binary:3", "closed:client_close"}));
}

TEST_F(WsSession, TheTransportsLimitsCloseBeforeTheHandlerSeesAnything) {
  auto handler = std::make_shared<echo_handler>();
  auto c = open(handler);
  ASSERT_TRUE(c.frame());  // hello
  c.send(0x1, std::string(1024, 'x'));  // at max_message_size: passes
  auto echoed = c.frame();
  ASSERT_TRUE(echoed);
  EXPECT_EQ(echoed->second.size(), 5 + 1024u);
  c.send(0x1, std::string(1025, 'x'));
  EXPECT_EQ(c.close_code(), 1009);
  EXPECT_EQ(handler->calls(2),
            (std::vector<std::string>{"text:" + std::string(1024, 'x'), "closed:message_too_big"}));
}

TEST_F(WsSession, InvalidUtf8AndUnknownOpcodesAreTheTransports) {
  for (const auto& [op, payload, code] :
       {std::tuple<std::uint8_t, std::string, std::uint16_t>{0x1, "\xc0\xaf", 1007},
        {0x3, "", 1002}}) {
    auto handler = std::make_shared<echo_handler>();
    auto c = open(handler);
    ASSERT_TRUE(c.frame());  // hello
    c.send(op, payload);
    EXPECT_EQ(c.close_code(), code);
    EXPECT_EQ(handler->calls(1), std::vector<std::string>{"closed:protocol_error"});
  }
}

}  // namespace
}  // namespace skyrelay
