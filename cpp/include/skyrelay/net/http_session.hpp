// One HTTP/1.1 connection: serves /health, /metrics, static files, the publish API and the
// application's routes with keep-alive, and hands WebSocket and SSE handshakes (/ws, /sse,
// Engine.IO) to the sessions that take the connection over.
#pragma once

#include <memory>
#include <string>

#include "skyrelay/net/aliases.hpp"

namespace skyrelay {

class session_context;

// Starts serving an accepted socket, on the socket's executor. The session's class is private to
// cpp/src/net (http_session_impl.hpp), so only its files include Beast's HTTP headers.
// `slot` is the connection's admission (admission::admit); it is held for as long as the
// connection lives, whatever it becomes. `received` holds bytes already read from the socket
// (a connection another worker handed over, net/worker_handoff.hpp): they are parsed first.
void start_http_session(tcp::socket socket, session_context& ctx, std::shared_ptr<void> slot,
                        std::string received = {});

}  // namespace skyrelay
