// The net tests' client: one blocking TCP connection on 127.0.0.1 whose reads time out after
// 5 s, so no test can hang, with what it has read so far; and the WebSocket framing a client
// writes (masked) and reads (unmasked), for the tests that speak WebSocket on it.
#pragma once

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace skyrelay::testing {

class blocking_client {
 public:
  using tcp = boost::asio::ip::tcp;

  // Connects to `port` on 127.0.0.1.
  explicit blocking_client(std::uint16_t port)
      : ioc_(std::make_unique<boost::asio::io_context>()), socket_(*ioc_) {
    socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
    set_timeout();
  }
  // Takes a socket connected already (its io_context must outlive the client).
  explicit blocking_client(tcp::socket connected) : socket_(std::move(connected)) {
    set_timeout();
  }

  void send(std::string_view bytes) { boost::asio::write(socket_, boost::asio::buffer(bytes)); }

  // Reads once more onto buffer(); false when the connection ended or stayed silent for 5 s.
  bool read_more() {
    char data[4096];
    boost::system::error_code ec;
    const auto n = socket_.read_some(boost::asio::buffer(data), ec);
    if (ec) return false;
    buffer_.append(data, n);
    return true;
  }
  // Reads until `text` has arrived (or read_more fails); returns all read so far.
  const std::string& read_until(std::string_view text) {
    while (buffer_.find(text) == std::string::npos)
      if (!read_more()) break;
    return buffer_;
  }
  // Reads until the buffer holds at least `n` bytes; false when they did not come.
  bool fill(std::size_t n) {
    while (buffer_.size() < n)
      if (!read_more()) return false;
    return true;
  }

  // What has been read and not taken by the test (it may erase what it has taken).
  std::string& buffer() noexcept { return buffer_; }

  // WebSocket: sends a masked frame (payloads up to 64 KiB).
  void send_frame(std::uint8_t op, std::string_view payload) {
    std::string out(1, static_cast<char>(0x80 | op));
    const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    if (payload.size() < 126) {
      out += static_cast<char>(0x80 | payload.size());
    } else {
      out += static_cast<char>(0x80 | 126);
      out += static_cast<char>(payload.size() >> 8);
      out += static_cast<char>(payload.size() & 0xFF);
    }
    out.append(reinterpret_cast<const char*>(mask), 4);
    for (std::size_t i = 0; i < payload.size(); ++i)
      out += static_cast<char>(payload[i] ^ mask[i % 4]);
    send(out);
  }
  // WebSocket: the next frame (opcode, payload), or nothing when the connection ends or stays
  // silent (payloads up to 64 KiB).
  std::optional<std::pair<std::uint8_t, std::string>> read_frame() {
    if (!fill(2)) return std::nullopt;
    const auto op = static_cast<std::uint8_t>(buffer_[0] & 0x0F);
    std::size_t n = static_cast<unsigned char>(buffer_[1]) & 0x7F, at = 2;
    if (n == 126) {
      if (!fill(4)) return std::nullopt;
      n = (static_cast<unsigned char>(buffer_[2]) << 8) | static_cast<unsigned char>(buffer_[3]);
      at = 4;
    }
    if (!fill(at + n)) return std::nullopt;
    std::string payload = buffer_.substr(at, n);
    buffer_.erase(0, at + n);
    return std::pair{op, std::move(payload)};
  }

 private:
  void set_timeout() {
    timeval tv{5, 0};
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  std::unique_ptr<boost::asio::io_context> ioc_;  // only when it connected itself
  tcp::socket socket_;
  std::string buffer_;
};

}  // namespace skyrelay::testing
