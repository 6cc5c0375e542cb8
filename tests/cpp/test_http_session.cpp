// http_session through a real server on 127.0.0.1: one request per route file (the publish
// API, Engine.IO polling, the WebSocket and SSE handshakes, the application bridge, health,
// metrics, static files and the read limits), over plain blocking sockets. In the Debug and
// ASan builds (no NDEBUG) the session's asserts run on every step: its state machine, the
// executor it runs on and its admission slot.
#include <gtest/gtest.h>

#include <boost/asio.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/net/server.hpp"
#include "skyrelay/net/sio_server.hpp"
#include "blocking_client.hpp"

namespace skyrelay {
namespace {

// One client connection with a receive timeout, so no test can hang.
class client : public testing::blocking_client {
 public:
  using blocking_client::blocking_client;

  // The next response: its head, then as many body bytes as Content-Length says (none for a
  // 101 or an event stream, whose bodies do not end).
  std::string response() {
    auto& got = buffer();
    if (read_until("\r\n\r\n").find("\r\n\r\n") == std::string::npos) return got;
    const auto head_end = got.find("\r\n\r\n") + 4;
    std::size_t length = 0;
    if (auto at = lower(got.substr(0, head_end)).find("content-length: ");
        at != std::string::npos)
      length = std::stoul(got.substr(at + 16));
    fill(head_end + length);
    std::string out = got.substr(0, head_end + length);
    got.erase(0, out.size());
    return out;
  }

 private:
  static std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
};

std::string status_line(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}

class HttpSession : public ::testing::Test {
 protected:
  void SetUp() override {
    server_config cfg;
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.io_threads = 2;
    cfg.publish_token = "secret";
    cfg.max_header_size = 2048;
    cfg.client_topics = std::make_shared<const auth::client_topic_policy>(
        std::vector<std::string>{"news"});
    app_hooks hooks;
    hooks.on_http = [this](const http_request_info& info) {
      app_calls_.fetch_add(1);
      srv_->http_reply(info.id, 201, {{"Content-Type", "text/plain"}},
                       info.method + " " + info.target);
    };
    srv_ = std::make_unique<server>(cfg, hooks);
    srv_->start();
  }
  void TearDown() override { srv_->stop(); }

  client connect() { return client(srv_->port()); }

  std::unique_ptr<server> srv_;
  std::atomic<int> app_calls_{0};
};

TEST_F(HttpSession, KeepAliveServesHealthThenMetrics) {
  auto c = connect();
  c.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  auto health = c.response();
  EXPECT_EQ(status_line(health), "HTTP/1.1 200 OK");
  EXPECT_NE(health.find("\"status\":\"ok\""), std::string::npos);
  c.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  auto metrics = c.response();
  EXPECT_EQ(status_line(metrics), "HTTP/1.1 200 OK");
  EXPECT_NE(metrics.find("skyrelay_"), std::string::npos);
}

TEST_F(HttpSession, PublishApiChecksTheTokenThenPublishes) {
  auto c = connect();
  const std::string body = R"({"event":"e","data":{"n":1},"to":"news"})";
  c.send("POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  EXPECT_EQ(status_line(c.response()), "HTTP/1.1 401 Unauthorized");
  c.send("POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         "Authorization: Bearer secret\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body);
  auto ok = c.response();
  EXPECT_EQ(status_line(ok), "HTTP/1.1 200 OK");
  EXPECT_NE(ok.find("\"published\":{\"id\":"), std::string::npos);
  EXPECT_NE(ok.find("\"delivered\":0"), std::string::npos);  // nobody is subscribed
}

TEST_F(HttpSession, WebSocketAndSseHandshakesHandTheConnectionOver) {
  auto ws = connect();
  ws.send("GET /ws/news HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n");
  auto upgraded = ws.response();
  EXPECT_EQ(status_line(upgraded), "HTTP/1.1 101 Switching Protocols");
  EXPECT_NE(upgraded.find("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), std::string::npos);
  auto sse = connect();
  sse.send("GET /sse/news HTTP/1.1\r\nHost: x\r\n\r\n");
  auto stream = sse.response();
  EXPECT_EQ(status_line(stream), "HTTP/1.1 200 OK");
  EXPECT_NE(stream.find("text/event-stream"), std::string::npos);
}

TEST_F(HttpSession, BadHandshakesAreRefusedWithTheirCodes) {
  auto c = connect();
  c.send("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n");
  auto refused = c.response();
  EXPECT_EQ(status_line(refused), "HTTP/1.1 400 Bad Request");
  EXPECT_NE(refused.find("\"bad_handshake\""), std::string::npos);
  auto big = connect();
  big.send("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4096, 'a') + "\r\n\r\n");
  EXPECT_EQ(status_line(big.response()), "HTTP/1.1 431 Request Header Fields Too Large");
}

TEST_F(HttpSession, EngineIoPollingHandshakeOpensASession) {
  auto c = connect();
  c.send("OPTIONS /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(status_line(c.response()), "HTTP/1.1 204 No Content");
  c.send("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n");
  auto open = c.response();
  EXPECT_EQ(status_line(open), "HTTP/1.1 200 OK");
  EXPECT_NE(open.find("\r\n\r\n0{\"sid\":"), std::string::npos);
  c.send("GET /socket.io/?EIO=3&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(status_line(c.response()), "HTTP/1.1 400 Bad Request");
}

// The body of a polling answer (after the head).
std::string polling_body(const std::string& response) {
  return response.substr(response.find("\r\n\r\n") + 4);
}

TEST_F(HttpSession, SocketIoAcksCarryTheirAttachments) {
  // sio_server::ack builds the ACK in one string: a BINARY_ACK must count its attachments
  // before they are handed on (once they were moved first, and a binary answer went out as
  // a plain ACK whose placeholder the client could not resolve).
  auto c = connect();
  c.send("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n");
  const auto open = polling_body(c.response());
  ASSERT_EQ(open.rfind("0{\"sid\":\"", 0), 0u) << open;
  const auto eio_sid = open.substr(9, open.find('"', 9) - 9);
  const std::string path = "/socket.io/?EIO=4&transport=polling&sid=" + eio_sid;
  c.send("POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
         "Content-Length: 2\r\n\r\n40");
  EXPECT_EQ(polling_body(c.response()), "ok");
  c.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n");
  const auto connected = polling_body(c.response());
  ASSERT_EQ(connected.rfind("40{\"sid\":\"", 0), 0u) << connected;
  const auto sio_sid = connected.substr(10, connected.find('"', 10) - 10);

  const std::string args = R"(["bin",{"_placeholder":true,"num":0}])";
  ASSERT_TRUE(srv_->sio().ack(sio_sid, 7, args, {std::string("\x00\x01\xff", 3)}));
  ASSERT_TRUE(srv_->sio().ack(sio_sid, 8, "[1]", {}));
  EXPECT_FALSE(srv_->sio().ack("no-such-sid", 9, "[1]", {}));
  std::string got;
  for (int i = 0; i < 3 && got.find("438[1]") == std::string::npos; ++i) {
    if (!got.empty()) got += '\x1e';
    c.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n");
    got += polling_body(c.response());
  }
  // The BINARY_ACK with its count, its attachment (base64 over polling), then the plain ACK.
  EXPECT_EQ(got, "461-7" + args + "\x1e" "bAAH/" "\x1e" "438[1]");
}

TEST_F(HttpSession, UnservedRequestsGoToTheApplication) {
  auto c = connect();
  c.send("POST /form?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  auto answer = c.response();
  EXPECT_EQ(status_line(answer), "HTTP/1.1 201 Created");
  EXPECT_NE(answer.find("POST /form?a=1"), std::string::npos);
  c.send("GET /no/such/file HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(status_line(c.response()), "HTTP/1.1 201 Created");
  EXPECT_EQ(app_calls_.load(), 2);
}

}  // namespace
}  // namespace skyrelay
