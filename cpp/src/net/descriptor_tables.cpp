#include "skyrelay/net/descriptor_tables.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace skyrelay::net::descriptor_tables {

namespace {
std::atomic<bool> g_per_thread{false};
thread_local const asio::io_context* t_own = nullptr;
std::atomic<std::uint64_t> g_misses{0};

// The lowest floor, so that the shared table (the application's files, sockets and pools)
// stays far below the numbers the I/O threads use, however busy the application is.
constexpr int min_floor = 1024;
// What an I/O thread opens besides its connections (its io_uring ring, a static file being
// served, a copy of the listening socket), kept free in its table.
constexpr int own_reserve = 64;

// Marks an io_context whose thread has a table of its own (several servers, some sharing the
// process's table, may run in one process).
struct own_table_mark : asio::execution_context::service {
  using key_type = own_table_mark;
  static inline asio::execution_context::id id;
  explicit own_table_mark(asio::execution_context& c) : asio::execution_context::service(c) {}
  void shutdown() override {}
};

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }
}  // namespace

bool per_thread() noexcept { return g_per_thread.load(std::memory_order_relaxed); }

const asio::io_context* own_context() noexcept { return t_own; }

namespace {
// The descriptors open in this thread's table now.
std::vector<int> open_descriptors() {
  std::vector<int> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    out.push_back(std::atoi(name.c_str()));
  }
  if (ec) throw std::runtime_error("per-thread descriptor tables: cannot list /proc/self/fd: " +
                                   ec.message());
  return out;
}

long soft_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    throw std::runtime_error(errno_text("per-thread descriptor tables: getrlimit"));
  return rl.rlim_cur == RLIM_INFINITY ? (1L << 20) : static_cast<long>(rl.rlim_cur);
}

// Each table's numbers are below the soft limit. The process's table takes the lowest free
// number for each new descriptor, so its numbers stay below the floor while it holds fewer
// descriptors than that; four times what it holds now leaves the application room to grow.
// (A number above the floor open now, inherited say, is filled in every I/O thread's table:
// no socket of theirs takes it.) Returns the floor, or 0 when the limit leaves no room.
long floor_for(long held, long soft) {
  long floor = std::max<long>(min_floor, 4L * held);
  if (floor > soft / 2) floor = soft / 2;
  if (floor <= 2 * held || soft - floor <= own_reserve) return 0;
  return floor;
}
}  // namespace

plan prepare() {
  plan p;
  p.foreign = open_descriptors();
  const long soft = soft_limit();
  const long held = static_cast<long>(p.foreign.size());
  const long floor = floor_for(held, soft);
  if (floor == 0)
    throw std::runtime_error(
        "per-thread descriptor tables: the open-file limit (" + std::to_string(soft) +
        ") leaves too little room above the " + std::to_string(held) +
        " descriptors open now; raise the limit");
  p.floor = static_cast<int>(floor);
  p.per_table = static_cast<std::size_t>(soft - floor - own_reserve);
  g_per_thread.store(true, std::memory_order_relaxed);
  return p;
}

std::size_t room_per_table() {
  const long soft = soft_limit();
  const long floor = floor_for(static_cast<long>(open_descriptors().size()), soft);
  return floor == 0 ? 0 : static_cast<std::size_t>(soft - floor - own_reserve);
}

int enter_own_table(const plan& p, asio::io_context& ctx, int listen_fd, std::string& error) {
  if (unshare(CLONE_FILES) != 0) {
    error = errno_text("unshare(CLONE_FILES)");
    return -1;
  }
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) {
    error = errno_text("open /dev/null");
    return -1;
  }
  // The copies of the application's descriptors: replaced, so this table does not hold them
  // open (standard input and output stay: a sanitizer's report goes to stderr).
  for (int fd : p.foreign)
    if (fd > 2 && fd != null_fd && ::dup3(null_fd, fd, O_CLOEXEC) < 0 && errno != EBADF) {
      error = errno_text("dup3");
      return -1;
    }
  // Every free number below the floor taken, so this thread's own descriptors come above it.
  for (int fd = 0; fd < p.floor; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    if (::dup3(null_fd, fd, O_CLOEXEC) < 0) {
      error = errno_text("dup3");
      return -1;
    }
  }
  int own = -1;
  if (listen_fd >= 0) {
    own = ::fcntl(listen_fd, F_DUPFD_CLOEXEC, p.floor);
    if (own < 0 || ::dup3(null_fd, listen_fd, O_CLOEXEC) < 0) {
      error = errno_text("copying the listening socket");
      return -1;
    }
  }
  asio::use_service<own_table_mark>(ctx);
  t_own = &ctx;
  return own;
}

bool settle(tcp::socket& s) noexcept {
  if (!s.is_open()) return false;
  auto& ctx = static_cast<asio::io_context&>(s.get_executor().context());
  if (t_own == &ctx || !asio::has_service<own_table_mark>(ctx)) return false;
  if (t_own) g_misses.fetch_add(1, std::memory_order_relaxed);
  boost::system::error_code ec;
  if (!ctx.stopped()) {
    try {
      // Moved out (no system call); closed, and deregistered, on the thread that holds it. Were
      // the handler destroyed unrun (its context stopping meanwhile), the close it makes on
      // this thread would hit a number at or above the floor: not one the shared table uses.
      asio::post(ctx, [sock = std::move(s)]() mutable {
        boost::system::error_code ignored;
        sock.shutdown(tcp::socket::shutdown_both, ignored);
        sock.close(ignored);
      });
      return true;
    } catch (...) {
    }
  }
  // Its thread has ended, and its table, closing the socket, with it.
  s.release(ec);
  return true;
}

std::uint64_t misses() noexcept { return g_misses.load(std::memory_order_relaxed); }

}  // namespace skyrelay::net::descriptor_tables
