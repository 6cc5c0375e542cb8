// The application's control of connections, through a real server on 127.0.0.1:
// - server::join_checked (Python's Server.join): the room's role requirement is checked on the
//   roles the connect hook granted, a refusal joins nothing and is counted, and a join without
//   a requirement is hub::join's answer;
// - server::respond and send_error go to JSON-protocol WebSockets only: an SSE stream's sid is
//   refused and its stream carries nothing but SSE;
// - the connect hooks are told each handshake's scheme (connect_info::scheme,
//   sio_connect_info::scheme).
#include <gtest/gtest.h>

#include <boost/asio.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "skyrelay/auth/access_policy.hpp"
#include "skyrelay/net/client_address.hpp"
#include "skyrelay/net/server.hpp"
#include "blocking_client.hpp"

namespace skyrelay {
namespace {

constexpr const char* ws_handshake =
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

// A JSON-protocol WebSocket (or, with another request, an SSE stream) whose handshake waits for
// the connect hook; reads time out after 5 s, so no test can hang.
class raw_client : public testing::blocking_client {
 public:
  explicit raw_client(std::uint16_t port, const std::string& request = ws_handshake)
      : blocking_client(port) {
    send(request);
  }

  // The status line of the handshake's answer (empty when none came).
  std::string status_line() {
    const auto& got = read_until("\r\n");
    return got.substr(0, got.find("\r\n"));
  }
};

class ServerControl : public ::testing::Test {
 protected:
  void SetUp() override {
    server_config cfg;
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.io_threads = 1;
    cfg.roles_from_connect = true;
    auto policy = std::make_shared<auth::access_policy>();
    policy->require_room("/", "ops:*", {"admin"});
    cfg.access = policy;
    cfg.client_topics = std::make_shared<const auth::client_topic_policy>(
        std::vector<std::string>{"lobby"});
    app_hooks hooks;
    hooks.on_connect = [this](const connect_info& info) {
      std::lock_guard lock(mu_);
      connected_.push_back(info.sid);
    };
    srv_ = std::make_unique<server>(cfg, hooks);
    srv_->start();
  }
  void TearDown() override { srv_->stop(); }

  // The sid of the next connection the hook hears of (at most 5 s of 10 ms polls).
  std::string next_sid() {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard lock(mu_);
        if (seen_ < connected_.size()) return connected_[seen_++];
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return {};
  }

  // skyrelay_forbidden_total{scope="room"} on /metrics.
  double forbidden_rooms() const {
    const std::string key = "skyrelay_forbidden_total{scope=\"room\"} ";
    const std::string text = srv_->metrics_text();
    const auto at = text.find(key);
    return at == std::string::npos ? -1 : std::stod(text.substr(at + key.size()));
  }

  std::unique_ptr<server> srv_;
  std::mutex mu_;
  std::vector<std::string> connected_;
  std::size_t seen_{0};
};

TEST_F(ServerControl, TheRoomsRoleRequirementIsCheckedOnTheGrantedRoles) {
  raw_client admin(srv_->port());
  const std::string admin_sid = next_sid();
  ASSERT_FALSE(admin_sid.empty());
  ASSERT_TRUE(srv_->accept(admin_sid, std::vector<std::string>{"admin"}));
  ASSERT_EQ(admin.status_line(), "HTTP/1.1 101 Switching Protocols");

  raw_client viewer(srv_->port());
  const std::string viewer_sid = next_sid();
  ASSERT_FALSE(viewer_sid.empty());
  ASSERT_TRUE(srv_->accept(viewer_sid, std::vector<std::string>{"viewer"}));
  ASSERT_EQ(viewer.status_line(), "HTTP/1.1 101 Switching Protocols");

  const channel ops{"/", "ops:1"};
  auto ok = srv_->join_checked(admin_sid, ops);
  EXPECT_TRUE(ok.joined);
  EXPECT_FALSE(ok.refusal);
  EXPECT_EQ(forbidden_rooms(), 0);

  auto refused = srv_->join_checked(viewer_sid, ops);
  EXPECT_FALSE(refused.joined);
  ASSERT_TRUE(refused.refusal);
  EXPECT_FALSE(refused.refusal->empty());
  EXPECT_EQ(forbidden_rooms(), 1);
  EXPECT_EQ(srv_->get_hub().room_members(ops), std::vector<std::string>{admin_sid});

  // A room without a requirement: hub::join's answer, for the viewer too.
  auto lobby = srv_->join_checked(viewer_sid, channel{"/", "lobby"});
  EXPECT_TRUE(lobby.joined);
  EXPECT_FALSE(lobby.refusal);
}

TEST_F(ServerControl, AnUnknownSidJoinsNothing) {
  auto free_room = srv_->join_checked("no-such-sid", channel{"/", "lobby"});
  EXPECT_FALSE(free_room.joined);
  EXPECT_FALSE(free_room.refusal);
  // Gone connections have no roles: a guarded room refuses them, and says why.
  auto guarded = srv_->join_checked("no-such-sid", channel{"/", "ops:2"});
  EXPECT_FALSE(guarded.joined);
  EXPECT_TRUE(guarded.refusal);
  EXPECT_EQ(srv_->get_hub().room_size(channel{"/", "ops:2"}), 0u);
}

TEST_F(ServerControl, AnswersGoToJsonProtocolConnectionsNotToStreams) {
  raw_client ws(srv_->port());
  const std::string ws_sid = next_sid();
  ASSERT_TRUE(srv_->accept(ws_sid));
  raw_client sse(srv_->port(), "GET /sse/lobby HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  const std::string sse_sid = next_sid();
  ASSERT_FALSE(sse_sid.empty());
  ASSERT_TRUE(srv_->accept(sse_sid));
  ASSERT_NE(sse.read_until("event: welcome").find("event: welcome"), std::string::npos);

  EXPECT_FALSE(srv_->respond(sse_sid, "7", true, "{}", ""));
  EXPECT_FALSE(srv_->respond(sse_sid, "7", false, "bad_request", "no"));
  EXPECT_FALSE(srv_->send_error(sse_sid, "bad_request", "no"));
  EXPECT_TRUE(srv_->respond(ws_sid, "7", true, "{}", ""));
  EXPECT_TRUE(srv_->send_error(ws_sid, "bad_request", "no"));

  publication p;
  p.event = "after";
  p.data = "1";
  p.to = {"lobby"};
  EXPECT_EQ(srv_->publish(p), 1u);
  const std::string& stream = sse.read_until("event: after");
  ASSERT_NE(stream.find("event: after\ndata: 1\n\n"), std::string::npos);
  // Nothing but SSE text: no WebSocket frame header (0x81, a final text frame) and none of
  // the answers' JSON.
  EXPECT_EQ(stream.find('\x81'), std::string::npos);
  EXPECT_EQ(stream.find("bad_request"), std::string::npos);
  EXPECT_EQ(stream.find("\"type\":\"response\""), std::string::npos);
}

// What a trusted proxy says its client used (X-Forwarded-Proto), else the connection's own:
// on the JSON protocol's WebSocket, SSE, and Socket.IO, whose Engine.IO session keeps its
// handshake's for the CONNECTs that come later (here over polling, on another request).
TEST(HandshakeScheme, TheConnectHooksAreToldWhatTheTrustedProxySays) {
  std::mutex mu;
  std::vector<std::string> told;
  server_config cfg;
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  cfg.io_threads = 1;
  cfg.trusted_proxies = std::make_shared<const proxy_set>(
      std::get<proxy_set>(proxy_set::parse({"127.0.0.1"}, proxy_header::x_forwarded_for)));
  cfg.client_topics = std::make_shared<const auth::client_topic_policy>(
      std::vector<std::string>{"lobby"});
  app_hooks hooks;
  hooks.on_connect = [&](const connect_info& info) {
    std::lock_guard lock(mu);
    told.push_back(info.path + " " + info.scheme);
  };
  hooks.on_sio_connect = [&](const sio_connect_info& info) {
    std::lock_guard lock(mu);
    told.push_back("sio " + info.scheme);
  };
  server srv(cfg, hooks);
  srv.start();
  // What the hooks were told once `n` handshakes reached them (at most 5 s of 10 ms polls).
  auto told_after = [&](std::size_t n) {
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard lock(mu);
        if (told.size() >= n) return told;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::lock_guard lock(mu);
    return told;
  };
  const std::string https = "X-Forwarded-Proto: https\r\n";
  const std::string ws(ws_handshake, std::string_view(ws_handshake).size() - 2);  // open head
  raw_client secure(srv.port(), ws + https + "\r\n");
  EXPECT_EQ(told_after(1), std::vector<std::string>{"/ws https"});
  raw_client plain(srv.port());
  EXPECT_EQ(told_after(2).back(), "/ws http");
  raw_client stream(srv.port(),
                    "GET /sse/lobby HTTP/1.1\r\nHost: 127.0.0.1\r\n" + https + "\r\n");
  EXPECT_EQ(told_after(3).back(), "/sse/lobby https");

  raw_client sio(srv.port(), "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n"
                             "Host: 127.0.0.1\r\n" + https + "\r\n");
  const std::string& open = sio.read_until("\"pingInterval\"");
  const auto at = open.find("\"sid\":\"");
  ASSERT_NE(at, std::string::npos) << open;
  const std::string sid = open.substr(at + 7, open.find('"', at + 7) - at - 7);
  sio.buffer().clear();
  sio.send("POST /socket.io/?EIO=4&transport=polling&sid=" + sid +
           " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain;charset=UTF-8\r\n"
           "Content-Length: 2\r\n\r\n40");
  EXPECT_EQ(told_after(4).back(), "sio https");
  srv.stop();
}

}  // namespace
}  // namespace skyrelay
