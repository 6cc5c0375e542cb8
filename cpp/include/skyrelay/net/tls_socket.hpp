// The server side of a TLS connection, with OpenSSL reading and writing the TCP socket itself
// (SSL_set_fd), for memory: an idle TLS connection keeps its SSL object and nothing else.
//
// Asio's ssl::stream (and Beast's ssl_stream over it) moves every byte through a BIO pair and
// two 17 KiB buffers of its own, allocated and zeroed with each stream: ~70 KB on every idle
// connection whatever it does (docs/benchmarks.md, "Where an idle connection's memory goes").
// Here OpenSSL's record buffers are the only ones, and SSL_MODE_RELEASE_BUFFERS gives them back
// whenever nothing is buffered: an idle connection holds none.
//
// Each operation calls OpenSSL on the non-blocking socket and, when OpenSSL wants to read or
// write first, waits for the socket's readiness (async_wait) and calls it again; a read tries
// SSL_read before it waits, so bytes OpenSSL buffered already are never waited for. A write
// packs a gathered buffer sequence into one TLS record of up to 16 KiB (as Beast's flat_stream
// does), copying small buffers into a scratch buffer that lives as long as the operation.
// Completion handlers never run inside the initiating call. One read and one write may be in
// flight at once (each waits on its own readiness), all on the socket's executor.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/compose.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>

#include "skyrelay/net/aliases.hpp"

namespace skyrelay::net {

class tls_socket {
 public:
  using executor_type = tcp::socket::executor_type;
  static constexpr std::size_t max_record = 16 * 1024;

  // Takes `socket` (connected) and a new SSL of `ctx` in server mode.
  tls_socket(tcp::socket socket, boost::asio::ssl::context& ctx);
  tls_socket(tls_socket&&) noexcept = default;
  tls_socket& operator=(tls_socket&&) noexcept = default;

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  tcp::socket& next_layer() noexcept { return socket_; }
  const tcp::socket& next_layer() const noexcept { return socket_; }
  SSL* native_handle() noexcept { return ssl_.get(); }

  template <class Token>
  auto async_handshake(Token&& token) {
    return run(step_handshake{}, std::forward<Token>(token));
  }
  // Completes once the peer's close_notify came back (or with an error).
  template <class Token>
  auto async_shutdown(Token&& token) {
    return run(step_shutdown{}, std::forward<Token>(token));
  }

  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    boost::asio::mutable_buffer first;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::mutable_buffer b = *it;  // Beast's iterators have no operator->
      if (b.size()) {
        first = b;
        break;
      }
    }
    return run(step_read{first}, std::forward<Token>(token));
  }

  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    return run(pack(buffers), std::forward<Token>(token));
  }

  // Non-blocking: decrypted bytes OpenSSL holds or the socket gives now, into `b`; error
  // would_block when it needs more from the peer first (then wait for read_wait()). Lets an
  // idle reader wait for readiness without lending OpenSSL a buffer meanwhile.
  std::size_t read_some(boost::asio::mutable_buffer b, boost::system::error_code& ec);
  // What the last read_some that would block waits for: readable, or writable when OpenSSL
  // must send something first (a TLS 1.3 key update's answer).
  tcp::socket::wait_type read_wait() const noexcept {
    return read_wants_write_ ? tcp::socket::wait_write : tcp::socket::wait_read;
  }

  // What an OpenSSL call returned, as an error code (0: done; would_block: wait for `want`).
  enum class want : unsigned char { nothing, read, write };
  static boost::system::error_code result(SSL* ssl, int ret, want& w);

 private:
  struct ssl_free {
    void operator()(SSL* s) const noexcept { SSL_free(s); }
  };

  // One step of each operation: 1 with the bytes done in `n`, else <= 0 (SSL_get_error's).
  struct step_handshake {
    static constexpr bool sized = false;
    int operator()(SSL* s, std::size_t& n) const { return n = 0, SSL_do_handshake(s); }
  };
  struct step_shutdown {
    static constexpr bool sized = false;
    int operator()(SSL* s, std::size_t& n) const;
  };
  struct step_read {
    static constexpr bool sized = true;
    boost::asio::mutable_buffer b;
    int operator()(SSL* s, std::size_t& n) const {
      return b.size() ? SSL_read_ex(s, b.data(), b.size(), &n) : (n = 0, 1);
    }
  };
  struct step_write {
    static constexpr bool sized = true;
    boost::asio::const_buffer b;             // what to write (into scratch, or the caller's)
    std::unique_ptr<char[]> scratch;         // several small buffers packed into one record
    int operator()(SSL* s, std::size_t& n) const {
      return b.size() ? SSL_write_ex(s, b.data(), b.size(), &n) : (n = 0, 1);
    }
  };

  template <class ConstBufferSequence>
  static step_write pack(const ConstBufferSequence& buffers) {
    step_write w;
    std::size_t total = 0, count = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers) && total < max_record; ++it) {
      boost::asio::const_buffer b = *it;  // Beast's iterators have no operator->
      if (!b.size()) continue;
      if (!count++) w.b = b;
      total += b.size();
    }
    // One buffer, or a first one that fills a record by itself: written in place.
    if (count <= 1 || w.b.size() >= max_record) {
      if (w.b.size() > max_record) w.b = boost::asio::const_buffer(w.b.data(), max_record);
      return w;
    }
    total = std::min(total, max_record);
    w.scratch.reset(new char[total]);  // not zeroed: every byte is copied in
    std::size_t at = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers) && at < total; ++it) {
      boost::asio::const_buffer b = *it;
      const std::size_t k = std::min(b.size(), total - at);
      if (k) std::memcpy(w.scratch.get() + at, b.data(), k);
      at += k;
    }
    w.b = boost::asio::const_buffer(w.scratch.get(), total);
    return w;
  }

  // The composed operation: calls `step` until it is done, waiting for readiness between.
  template <class Step>
  struct op {
    tls_socket& s;
    Step step;
    std::size_t n{0};
    boost::system::error_code ec;
    bool started{false};
    bool done{false};

    template <class Self>
    void complete(Self& self) {
      if constexpr (Step::sized)
        self.complete(ec, n);
      else
        self.complete(ec);
    }

    template <class Self>
    void operator()(Self& self, boost::system::error_code wait_ec = {}) {
      if (done) return complete(self);
      const bool first = !started;
      started = true;
      if (wait_ec) {
        ec = wait_ec;
      } else {
        ERR_clear_error();
        const int ret = step(s.ssl_.get(), n);
        want w = want::nothing;
        ec = result(s.ssl_.get(), ret, w);
        if (w != want::nothing) {
          s.socket_.async_wait(w == want::read ? tcp::socket::wait_read : tcp::socket::wait_write,
                               std::move(self));
          return;
        }
        if (ec) n = 0;
      }
      if (!first) return complete(self);
      done = true;  // never inside the initiating call
      boost::asio::post(s.socket_.get_executor(), std::move(self));
    }
  };

  template <class Step, class Token>
  auto run(Step step, Token&& token) {
    using signature = std::conditional_t<Step::sized, void(boost::system::error_code, std::size_t),
                                         void(boost::system::error_code)>;
    return boost::asio::async_compose<Token, signature>(
        op<Step>{*this, std::move(step), 0, {}, false, false}, token, socket_);
  }

  tcp::socket socket_;
  std::unique_ptr<SSL, ssl_free> ssl_;
  bool read_wants_write_{false};
};

}  // namespace skyrelay::net
