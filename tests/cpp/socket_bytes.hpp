// What the write-loop tests (test_write_loop.cpp, test_uring_writer.cpp) send and read back on
// a real socket: a payload that differs per frame and per byte, so a reordered, lost or
// repeated piece shows, and a reader that takes whatever arrives until it has enough.
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <string>

namespace skyrelay::test {

// `size` bytes that depend on `index` and on each byte's position.
inline std::string pattern(std::size_t index, std::size_t size) {
  std::string s(size, '\0');
  for (std::size_t j = 0; j < size; ++j) s[j] = static_cast<char>((index * 131 + j * 7) % 251);
  return s;
}

// Reads from `fd` until `want` bytes, end of stream or 20 s without a byte, in small reads
// (1,500 bytes: a partial write's boundary can fall anywhere in what arrives).
inline std::string read_all(int fd, std::size_t want) {
  std::string got;
  std::array<char, 1500> buf;
  for (int idle_polls = 0; got.size() < want && idle_polls < 200;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) {
      ++idle_polls;
      continue;
    }
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    idle_polls = 0;
    got.append(buf.data(), static_cast<std::size_t>(n));
  }
  return got;
}

// The same, from a socket object (an Asio socket).
template <class Socket>
std::string read_all(Socket& s, std::size_t want) {
  return read_all(s.native_handle(), want);
}

}  // namespace skyrelay::test
