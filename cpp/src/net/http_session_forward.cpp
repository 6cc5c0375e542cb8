// http_session's handoff of a request for another worker's Engine.IO session (several worker
// processes on one port, net/worker_handoff.hpp): the request, as read, and the connection go
// to the worker that holds the session, which answers it and keeps the connection.
#include <sstream>

#include "http_session_impl.hpp"
#include "skyrelay/net/worker_handoff.hpp"

namespace skyrelay {

namespace {

// While the owner's inbox is full, the request waits and tries again: 200 times, 2 ms apart
// (about half a second, longer than a busy worker takes to empty an inbox of ten datagrams).
constexpr int forward_attempts = 200;
constexpr std::chrono::milliseconds forward_retry{2};

}  // namespace

void http_session::forward(const request& req, int owner, const cors_list& cors) {
  auto& m = ctx_.get_metrics();
  if (stream_.is_tls()) {
    // A TLS session's keys live in this process: the connection cannot move (docs/deployment.md).
    m.add(m.local().handoffs_failed);
    return eio_error(req, cors, eio::error_code::unknown_sid);
  }
  // The request as the client sent it (Beast writes it back out), then whatever the client
  // sent after it (a pipelined request).
  std::ostringstream out;
  out << req;
  auto bytes = std::make_shared<std::string>(std::move(out).str());
  bytes->append(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  try_forward(std::move(bytes), owner, forward_attempts, std::make_shared<request>(req), cors);
}

void http_session::try_forward(std::shared_ptr<std::string> bytes, int owner, int attempts_left,
                               std::shared_ptr<request> req, cors_list cors) {
  assert(on_own_executor());
  auto& m = ctx_.get_metrics();
  const auto result = ctx_.workers()->send(owner, stream_.socket().native_handle(), *bytes);
  if (result == worker_handoff::send_result::sent) {
    m.add(m.local().handoffs_sent);
    // Only this process's descriptor closes (no shutdown): the owner has the connection.
    net::stream moved = hand_off();
    return;
  }
  if (result == worker_handoff::send_result::busy && attempts_left > 0) {
    if (state_ != state::parked) set_state(state::parked);
    auto timer = std::make_shared<asio::steady_timer>(stream_.get_executor(), forward_retry);
    timer->async_wait([self = shared_from_this(), timer, bytes = std::move(bytes), owner,
                       attempts_left, req = std::move(req),
                       cors = std::move(cors)](boost::system::error_code) mutable {
      self->try_forward(std::move(bytes), owner, attempts_left - 1, std::move(req),
                        std::move(cors));
    });
    return;
  }
  // The owner is gone (or stays too busy): its session cannot go on, as after a restart.
  m.add(m.local().handoffs_failed);
  eio_error(*req, cors, eio::error_code::unknown_sid);
}

}  // namespace skyrelay
