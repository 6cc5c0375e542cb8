#include "redis_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace skyrelay::testing {
namespace {

using namespace std::chrono_literals;

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// A port the kernel just gave out and took back; another process may take it before
// redis-server binds it, in which case spawn() sees the server exit and tries another.
std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  auto a = loopback(0);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error("no free port");
  ::close(fd);
  return ntohs(a.sin_port);
}

}  // namespace

redis_process::redis_process(std::vector<std::string> extra) : extra_(extra) {
  char tmpl[] = "/tmp/skyrelay-redis-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  for (int attempt = 0; attempt < 3; ++attempt)
    if (spawn(extra)) return;
  std::filesystem::remove_all(dir_);
  throw std::runtime_error("redis-server did not start (log in the temporary directory)");
}

redis_process::~redis_process() {
  stop();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

bool redis_process::spawn(const std::vector<std::string>& extra, std::uint16_t port) {
  port_ = port ? port : free_port();
  std::vector<std::string> args = {"redis-server", "--port", std::to_string(port_), "--bind",
                                   "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir_};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  std::string log = dir_ + "/redis.log";
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  int rc = ::posix_spawnp(&pid_, "redis-server", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot run redis-server (apt-get install redis-server)");
  for (int i = 0; i < 200; ++i) {  // up to ~5 s
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;  // exited: most likely the port was taken meanwhile
      return false;
    }
    if (answers()) return true;
    std::this_thread::sleep_for(25ms);
  }
  reap(SIGKILL);
  return false;
}

// True when the server answers an inline PING with any RESP line (+PONG, or -NOAUTH).
bool redis_process::answers() const {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  auto a = loopback(port_);
  bool ok = false;
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6) {
    char c = 0;
    ok = ::recv(fd, &c, 1, 0) == 1 && (c == '+' || c == '-');
  }
  ::close(fd);
  return ok;
}

void redis_process::stop() { reap(SIGTERM); }

void redis_process::kill_now() { reap(SIGKILL); }

void redis_process::restart() {
  reap(SIGTERM);
  for (int attempt = 0; attempt < 40; ++attempt) {  // the old socket may linger a moment
    if (spawn(extra_, port_)) return;
    std::this_thread::sleep_for(50ms);
  }
  throw std::runtime_error("redis-server did not start again on its port");
}

namespace {

// True when the node on `port` answers CLUSTER INFO with cluster_state:ok.
bool cluster_ok(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  auto a = loopback(port);
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string got;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::send(fd, "CLUSTER INFO\r\n", 14, MSG_NOSIGNAL) == 14) {
    char buf[4096];
    for (int i = 0; i < 8 && got.find("cluster_size") == std::string::npos; ++i) {
      const auto n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return got.find("cluster_state:ok") != std::string::npos;
}

}  // namespace

redis_cluster::redis_cluster(int masters) {
  std::vector<std::string> args{"redis-cli", "--cluster", "create"};
  for (int i = 0; i < masters; ++i) {
    nodes_.push_back(std::make_unique<redis_process>(std::vector<std::string>{
        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", "2000", "--cluster-port", std::to_string(free_port())}));
    args.push_back("127.0.0.1:" + std::to_string(nodes_.back()->port()));
  }
  for (const char* a : {"--cluster-replicas", "0", "--cluster-yes"}) args.push_back(a);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, "redis-cli", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot run redis-cli (apt-get install redis-server)");
  int status = 0;
  for (int i = 0; i < 1200 && ::waitpid(pid, &status, WNOHANG) != pid; ++i)  // up to ~30 s
    std::this_thread::sleep_for(25ms);
  if (::waitpid(pid, &status, WNOHANG) == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("redis-cli --cluster create failed");
  for (int i = 0; i < 400; ++i) {  // up to ~10 s
    bool all = true;
    for (auto& n : nodes_) all = all && cluster_ok(n->port());
    if (all) return;
    std::this_thread::sleep_for(25ms);
  }
  throw std::runtime_error("the cluster did not reach cluster_state:ok");
}

void redis_process::reap(int first_signal) {
  if (pid_ <= 0) return;
  ::kill(pid_, first_signal);
  for (int i = 0; i < 200; ++i) {  // up to ~5 s
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(25ms);
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

}  // namespace skyrelay::testing
