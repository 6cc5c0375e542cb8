#include "skyrelay/net/worker_handoff.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "skyrelay/core/random.hpp"
#include "skyrelay/net/http_session.hpp"
#include "skyrelay/net/listener.hpp"
#include "skyrelay/net/session_context.hpp"

namespace skyrelay {

namespace {

// Leads every datagram: `size` bytes follow, in the datagram itself when size <= inline_limit,
// else in a memfd passed as the second descriptor.
struct wire_header {
  std::uint32_t magic;
  std::uint32_t size;
};
constexpr std::uint32_t wire_magic = 0x736b7201;  // "skr", version 1
// Datagrams read per wake-up before the loop goes back to the other handlers of its context.
constexpr int receive_batch = 32;

void close_all(const std::vector<int>& fds) {
  for (int fd : fds) ::close(fd);
}

// A memfd holding `bytes`, or -1.
int memfd_of(std::string_view bytes) {
  int fd = ::memfd_create("skyrelay-handoff", MFD_CLOEXEC);
  if (fd < 0) return -1;
  std::size_t done = 0;
  while (done < bytes.size()) {
    auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return -1;
    }
    done += static_cast<std::size_t>(n);
  }
  return fd;
}

// `size` bytes from the start of a memfd; false when fewer are there.
bool read_memfd(int fd, std::size_t size, std::string& out) {
  out.resize(size);
  std::size_t done = 0;
  while (done < size) {
    auto n = ::pread(fd, out.data() + done, size - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

int duplicate(int fd) {
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0)
    throw boost::system::system_error(errno, boost::system::system_category(),
                                      "worker handoff inbox");
  return copy;
}

}  // namespace

worker_handoff::worker_handoff(asio::io_context& ioc, session_context& ctx, int index,
                               std::vector<int> peer_fds, int inbox_fd)
    : ctx_(ctx), index_(index), peer_fds_(std::move(peer_fds)), inbox_(ioc, duplicate(inbox_fd)) {}

void worker_handoff::start() { do_wait(); }

void worker_handoff::stop() {
  asio::post(inbox_.get_executor(), [this] {
    boost::system::error_code ignored;
    inbox_.close(ignored);
  });
}

std::string worker_handoff::new_sid() const {
  return std::to_string(index_) + "." + skyrelay::new_sid();
}

int worker_handoff::owner_of(std::string_view sid) const noexcept {
  int index = 0;
  std::size_t i = 0;
  for (; i < sid.size() && i < 5 && sid[i] >= '0' && sid[i] <= '9'; ++i)
    index = index * 10 + (sid[i] - '0');
  if (i == 0 || i >= sid.size() || sid[i] != '.') return -1;
  return index < static_cast<int>(peer_fds_.size()) ? index : -1;
}

worker_handoff::send_result worker_handoff::send(int to, int fd, std::string_view bytes) const {
  if (to < 0 || to >= static_cast<int>(peer_fds_.size()) || to == index_ ||
      bytes.size() > UINT32_MAX)
    return send_result::failed;
  const bool in_line = bytes.size() <= inline_limit;
  wire_header header{wire_magic, static_cast<std::uint32_t>(bytes.size())};
  std::array<int, 2> fds{fd, in_line ? -1 : memfd_of(bytes)};
  if (!in_line && fds[1] < 0) return send_result::failed;
  const std::size_t nfds = in_line ? 1 : 2;
  std::array<iovec, 2> iov{iovec{&header, sizeof header},
                           iovec{const_cast<char*>(bytes.data()), in_line ? bytes.size() : 0}};
  alignas(cmsghdr) std::array<char, CMSG_SPACE(2 * sizeof(int))> control{};
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  msg.msg_control = control.data();
  msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
  cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
  std::memcpy(CMSG_DATA(cm), fds.data(), nfds * sizeof(int));
  ssize_t n;
  do {
    n = ::sendmsg(peer_fds_[static_cast<std::size_t>(to)], &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  const int err = errno;
  if (!in_line) ::close(fds[1]);  // the datagram holds its own reference
  if (n >= 0) return send_result::sent;
  return err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS ? send_result::busy
                                                               : send_result::failed;
}

void worker_handoff::do_wait() {
  inbox_.async_wait(asio::posix::descriptor_base::wait_read, [this](boost::system::error_code ec) {
    if (ec) return;  // closed by stop()
    receive_some();
    do_wait();
  });
}

void worker_handoff::receive_some() {
  auto& m = ctx_.get_metrics();
  const std::size_t max_bytes =
      ctx_.config().max_header_size + ctx_.config().max_body_size + 64 * 1024;
  std::string buffer(sizeof(wire_header) + inline_limit, '\0');
  for (int i = 0; i < receive_batch; ++i) {
    iovec iov{buffer.data(), buffer.size()};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(4 * sizeof(int))> control{};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    const ssize_t n = ::recvmsg(inbox_.native_handle(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // EAGAIN: nothing more for now
    }
    std::vector<int> fds;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t k = 0; k < count; ++k) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof fd);
        fds.push_back(fd);
      }
    }
    wire_header header{};
    if (static_cast<std::size_t>(n) >= sizeof header) std::memcpy(&header, buffer.data(), sizeof header);
    const bool in_line = header.size <= inline_limit;
    std::string bytes;
    const bool ok = !(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && header.magic == wire_magic &&
                    fds.size() == (in_line ? 1u : 2u) && header.size <= max_bytes &&
                    (in_line ? static_cast<std::size_t>(n) == sizeof header + header.size
                             : read_memfd(fds[1], header.size, bytes));
    if (!ok) {
      m.add(m.local().handoffs_failed);
      close_all(fds);
      continue;
    }
    if (in_line) bytes.assign(buffer.data() + sizeof header, header.size);
    else ::close(fds[1]);
    serve(fds[0], std::move(bytes));
  }
}

void worker_handoff::serve(int fd, std::string bytes) {
  auto& m = ctx_.get_metrics();
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      (addr.ss_family != AF_INET && addr.ss_family != AF_INET6)) {
    m.add(m.local().handoffs_failed);
    ::close(fd);
    return;
  }
  auto& ioc = ctx_.next_context();
  tcp::socket socket(ioc);
  boost::system::error_code ec;
  socket.assign(addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) {
    m.add(m.local().handoffs_failed);
    ::close(fd);
    return;
  }
  // The connection is admitted here as if accepted here; the sender gave its slot back.
  const auto remote = socket.remote_endpoint(ec);
  if (ec) {  // the client has gone already
    m.add(m.local().handoffs_failed);
    socket.close(ec);
    return;
  }
  connection_refusal why = connection_refusal::total;
  auto slot = admit_peer(ctx_, remote.address().to_string(), why);
  if (!slot) {
    // Refused as the listener refuses: counted, and answered 503 on the connection's own
    // context (the request the sender read is dropped; the answer does not depend on it).
    asio::post(ioc, [socket = std::move(socket), &ctx = ctx_, why]() mutable {
      refuse_connection(ctx, std::move(socket), why);
    });
    return;
  }
  m.add(m.local().handoffs_received);
  asio::post(ioc, [socket = std::move(socket), slot = std::move(slot), &ctx = ctx_,
                   bytes = std::move(bytes)]() mutable {
    start_http_session(std::move(socket), ctx, std::move(slot), std::move(bytes));
  });
}

}  // namespace skyrelay
