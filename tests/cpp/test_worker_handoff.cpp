// The handoff of connections between worker processes (net/worker_handoff.hpp), with two real
// servers in one process standing for workers 0 and 1: each listens on its own port, and the
// AF_UNIX datagram pairs connect them as `skyrelay run --workers 2` connects its processes.
// An Engine.IO session opened on worker 0 (the raw echo endpoint) is then reached through
// worker 1: its polls and posts, small and over the datagram's inline limit, are answered by
// worker 0, and a sid that names no worker is unknown on whichever worker reads it.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio.hpp>

#include <array>
#include <memory>
#include <string>

#include "skyrelay/net/server.hpp"
#include "skyrelay/net/worker_handoff.hpp"

namespace skyrelay {
namespace {

using tcp = boost::asio::ip::tcp;

// One HTTP/1.1 request with Connection: close; the whole answer (reads time out after 5 s).
std::string exchange(std::uint16_t port, const std::string& method, const std::string& target,
                     const std::string& body = "") {
  boost::asio::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  timeval tv{5, 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string request = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        "Connection: close\r\nContent-Type: text/plain;charset=UTF-8\r\n"
                        "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  boost::asio::write(socket, boost::asio::buffer(request));
  std::string got;
  std::array<char, 16384> data;
  for (;;) {
    boost::system::error_code ec;
    const auto n = socket.read_some(boost::asio::buffer(data), ec);
    if (ec) break;
    got.append(data.data(), n);
  }
  return got;
}

std::string body_of(const std::string& response) {
  const auto at = response.find("\r\n\r\n");
  return at == std::string::npos ? std::string() : response.substr(at + 4);
}

double metric(const server& s, const std::string& key) {
  const std::string text = s.metrics_text();
  const auto at = text.find(key + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + key.size() + 1));
}

class WorkerHandoff : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto& pair : pairs_) ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM, 0, pair.data()), 0);
    for (int i = 0; i < 2; ++i) {
      server_config cfg;
      cfg.host = "127.0.0.1";
      cfg.port = 0;
      cfg.io_threads = 1;
      cfg.engineio_echo_path = "/echo/";
      cfg.worker_index = i;
      cfg.worker_handoff_fds = {pairs_[0][0], pairs_[1][0]};
      cfg.worker_inbox_fd = pairs_[i][1];
      if (i == 0) cfg.max_connections = first_max_connections_;
      workers_[i] = std::make_unique<server>(cfg, app_hooks{});
      workers_[i]->start();
    }
  }
  void TearDown() override {
    for (auto& w : workers_) w->stop();
    for (auto& pair : pairs_)
      for (int fd : pair) ::close(fd);
  }

  // Opens an Engine.IO session on worker 0: its sid.
  std::string open_on_first() {
    const auto open = body_of(exchange(workers_[0]->port(), "GET",
                                       "/echo/?EIO=4&transport=polling"));
    const auto start = open.find("\"sid\":\"") + 7;
    return open.substr(start, open.find('"', start) - start);
  }

  std::size_t first_max_connections_ = 100'000;  // worker 0's limit (a test may lower it first)
  std::array<std::array<int, 2>, 2> pairs_{};
  std::array<std::unique_ptr<server>, 2> workers_;
};

TEST_F(WorkerHandoff, SidsNameTheirWorker) {
  const std::string sid = open_on_first();
  ASSERT_EQ(sid.size(), 18u) << sid;
  EXPECT_EQ(sid.substr(0, 2), "0.");
  const std::string other = open_on_first();
  EXPECT_NE(sid, other);
}

TEST_F(WorkerHandoff, TheOwnerAnswersWhatAnotherWorkerReads) {
  const std::string sid = open_on_first();
  const std::string target = "/echo/?EIO=4&transport=polling&sid=" + sid;
  const auto posted = exchange(workers_[1]->port(), "POST", target, "4hello");
  EXPECT_EQ(posted.substr(0, 15), "HTTP/1.1 200 OK") << posted;
  EXPECT_EQ(body_of(posted), "ok");
  EXPECT_EQ(body_of(exchange(workers_[1]->port(), "GET", target)), "4hello");

  // Over the inline limit: the bytes go in a memfd beside the connection.
  const std::string big = "4" + std::string(worker_handoff::inline_limit * 3, 'x');
  EXPECT_EQ(body_of(exchange(workers_[1]->port(), "POST", target, big)), "ok");
  EXPECT_EQ(body_of(exchange(workers_[1]->port(), "GET", target)), big);

  // The sender counts a handoff just after it went, so the answer can arrive first: wait
  // (bounded) for the count.
  for (int i = 0; i < 200 && metric(*workers_[1], "skyrelay_worker_handoffs_total{result=\"sent\"}") < 4; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(metric(*workers_[1], "skyrelay_worker_handoffs_total{result=\"sent\"}"), 4);
  EXPECT_EQ(metric(*workers_[0], "skyrelay_worker_handoffs_total{result=\"received\"}"), 4);
  EXPECT_EQ(metric(*workers_[0], "skyrelay_worker_handoffs_total{result=\"failed\"}"), 0);
  EXPECT_EQ(metric(*workers_[1], "skyrelay_worker_handoffs_total{result=\"failed\"}"), 0);
}

TEST_F(WorkerHandoff, ASidOfNoWorkerIsUnknownWhereItArrives) {
  for (const std::string sid : {"7.AAAAAAAAAAAAAAAA", "1.AAAAAAAAAAAAAAAA", "x.1", "12345678"}) {
    const auto answer = exchange(workers_[0]->port(), "GET",
                                 "/echo/?EIO=4&transport=polling&sid=" + sid);
    EXPECT_EQ(answer.substr(0, 24), "HTTP/1.1 400 Bad Request") << sid;
    EXPECT_NE(body_of(answer).find("\"code\":1"), std::string::npos) << body_of(answer);
  }
  EXPECT_EQ(metric(*workers_[0], "skyrelay_worker_handoffs_total{result=\"sent\"}"), 1);
  EXPECT_EQ(metric(*workers_[1], "skyrelay_worker_handoffs_total{result=\"received\"}"), 1);
}

// Worker 0 with room for two connections: its polling session takes one slot.
class WorkerHandoffFull : public WorkerHandoff {
 protected:
  void SetUp() override {
    first_max_connections_ = 2;
    WorkerHandoff::SetUp();
  }
};

TEST_F(WorkerHandoffFull, AConnectionTheOwnerRefusesIsAnswered503) {
  const std::string sid = open_on_first();  // one slot (the session); the handshake's is free
  boost::asio::io_context ioc;
  tcp::socket holder(ioc);  // the second slot, held open
  holder.connect({boost::asio::ip::make_address("127.0.0.1"), workers_[0]->port()});
  // Worker 0 is full once its own listener refuses a connection (the holder's accept may lag).
  std::string direct;
  for (int i = 0; i < 200; ++i) {
    direct = exchange(workers_[0]->port(), "GET", "/health");
    if (direct.rfind("HTTP/1.1 503", 0) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(direct.substr(0, 12), "HTTP/1.1 503") << direct;
  const std::string refused = "skyrelay_limit_hits_total{limit=\"connections_total\"}";
  const double before = metric(*workers_[0], refused);

  // Worker 1 reads the poll and hands it to worker 0, which is full: a 503 with the reason, as
  // its own listener answers, not a silent close.
  const auto answer = exchange(workers_[1]->port(), "GET",
                               "/echo/?EIO=4&transport=polling&sid=" + sid);
  EXPECT_EQ(answer.substr(0, 32), "HTTP/1.1 503 Service Unavailable") << answer;
  EXPECT_NE(body_of(answer).find("\"too_many_connections\""), std::string::npos) << answer;
  EXPECT_EQ(metric(*workers_[0], refused), before + 1);
  EXPECT_EQ(metric(*workers_[0], "skyrelay_worker_handoffs_total{result=\"received\"}"), 0);
}

}  // namespace
}  // namespace skyrelay
