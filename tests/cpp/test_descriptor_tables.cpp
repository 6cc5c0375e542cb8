// Per-thread descriptor tables (net/descriptor_tables.hpp) on a real server on 127.0.0.1: each
// accepted socket is in exactly one I/O thread's own table, numbered at or above the floor,
// never in the process's table; closed connections leave every table; stopping the server
// closes the port.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <utility>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "skyrelay/net/descriptor_tables.hpp"
#include "skyrelay/net/server.hpp"
#include "blocking_client.hpp"

namespace skyrelay {
namespace {

namespace fs = std::filesystem;

// The sockets (by inode) numbered at or above `floor` in the process's descriptor table and in
// each thread's table of its own.
struct table_sockets {
  std::vector<std::string> process;
  std::vector<std::vector<std::string>> own;
};

table_sockets list_sockets(int floor) {
  table_sockets out;
  auto sockets_in = [floor](const fs::path& dir) {
    std::vector<std::string> found;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const int fd = std::atoi(it->path().filename().c_str());
      if (fd < floor) continue;
      std::error_code lec;
      const auto target = fs::read_symlink(it->path(), lec).string();
      if (!lec && target.rfind("socket:", 0) == 0) found.push_back(target);
    }
    return found;
  };
  out.process = sockets_in("/proc/self/fd");
  const auto main_tid = std::to_string(::getpid());
  std::error_code ec;
  for (fs::directory_iterator it("/proc/self/task", ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename() == main_tid) continue;
    // A table of its own has every number below the floor taken (by /dev/null); the
    // process's has the number just below the floor free.
    std::error_code lec;
    const auto theirs = fs::read_symlink(it->path() / "fd" / std::to_string(floor - 1), lec);
    if (lec || theirs != "/dev/null") continue;
    out.own.push_back(sockets_in(it->path() / "fd"));
  }
  return out;
}

// The connections' sockets across the tables of their own: each table also holds a copy of
// the listening socket (one inode in every table), which is left out. Returns the count, and
// whether every connection is in exactly one table.
std::pair<std::size_t, bool> connections_in_own_tables(const table_sockets& t) {
  std::map<std::string, std::size_t> seen;
  for (const auto& table : t.own)
    for (const auto& inode : table) ++seen[inode];
  std::size_t n = 0;
  bool once = true;
  for (const auto& [inode, tables] : seen) {
    if (tables == t.own.size() && t.own.size() > 1) continue;  // the listening socket
    ++n;
    once = once && tables == 1;
  }
  return {n, once};
}

class DescriptorTables : public ::testing::Test {
 protected:
  void SetUp() override {
    server_config cfg;
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.io_threads = 3;
    cfg.descriptor_tables = "per_thread";
    server_ = std::make_unique<server>(cfg, app_hooks{});
    server_->start();
  }
  void TearDown() override {
    if (server_) server_->stop();
  }
  std::unique_ptr<server> server_;
};

TEST_F(DescriptorTables, EachSocketIsInOneThreadsOwnTableAndLeavesItWhenClosed) {
  constexpr int floor = 1024;  // the least floor: this process holds few descriptors
  std::vector<std::unique_ptr<testing::blocking_client>> clients;
  for (int i = 0; i < 30; ++i) {
    clients.push_back(std::make_unique<testing::blocking_client>(server_->port()));
    clients.back()->send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  }
  for (auto& c : clients) ASSERT_NE(c->read_until("\r\n\r\n").find("HTTP/1.1 200"), std::string::npos);
  auto tables = list_sockets(floor);
  EXPECT_EQ(tables.own.size(), 3u);  // three I/O threads with tables of their own
  auto [held, once] = connections_in_own_tables(tables);
  EXPECT_EQ(held, 30u);                 // every accepted socket in their tables,
  EXPECT_TRUE(once);                    // each in exactly one,
  EXPECT_TRUE(tables.process.empty());  // none in the process's table above its floor

  clients.clear();  // the server's ends see the close and close on their own threads
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    held = connections_in_own_tables(list_sockets(floor)).first;
    if (held == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(held, 0u);
  EXPECT_EQ(net::descriptor_tables::misses(), 0u);
  EXPECT_NE(server_->metrics_text().find("skyrelay_descriptor_tables 3\n"), std::string::npos);

  const auto port = server_->port();
  server_->stop();
  server_.reset();
  // Every copy of the listening socket is closed: nothing answers on the port.
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket s(ioc);
  boost::system::error_code ec;
  s.connect({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
  EXPECT_EQ(ec, boost::asio::error::connection_refused);
}

TEST(DescriptorTablesConfig, IoThreadsLeftAtZeroAreAsManyAsMaxConnectionsNeed) {
  // A low soft limit (restored after): 1,500 descriptors leave each table ~686 above a floor
  // of 750, so 5,000 connections need 8 tables, more than this machine's cores.
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = 1500;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  const std::size_t room = net::descriptor_tables::room_per_table();
  ASSERT_GT(room, 0u);
  const std::size_t want =
      std::max<std::size_t>((5000 + room - 1) / room, std::thread::hardware_concurrency());
  EXPECT_GE(want, 8u);
  {
    server_config cfg;
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.io_threads = 0;
    cfg.max_connections = 5000;
    cfg.descriptor_tables = "per_thread";
    server s(cfg, app_hooks{});
    s.start();
    EXPECT_NE(s.metrics_text().find("skyrelay_descriptor_tables " + std::to_string(want) + "\n"),
              std::string::npos);
    s.stop();
  }
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

TEST(DescriptorTablesConfig, RefusesAnUnknownModeAndWorkerHandOff) {
  server_config cfg;
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  cfg.io_threads = 1;
  cfg.descriptor_tables = "many";
  {
    server s(cfg, app_hooks{});
    EXPECT_THROW(s.start(), std::invalid_argument);
  }
  cfg.descriptor_tables = "per_thread";
  cfg.worker_index = 0;
  cfg.worker_handoff_fds = {0};
  server s(cfg, app_hooks{});
  EXPECT_THROW(s.start(), std::invalid_argument);
}

}  // namespace
}  // namespace skyrelay
