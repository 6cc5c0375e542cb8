// One HTTP/1.1 connection: serves /health, /metrics and static files with keep-alive, and hands
// WebSocket upgrades on /ws and /ws/<topic> to a ws_session.
#pragma once

#include <memory>

#include "skyrelay/net/aliases.hpp"

namespace skyrelay {

class server;

// Starts serving an accepted socket. Defined in http_session.cpp, the only translation unit that
// includes Beast's HTTP headers.
// `slot` is the connection's admission (server::admit); it is held for as long as the
// connection lives, whatever it becomes.
void start_http_session(tcp::socket socket, server& srv, std::shared_ptr<void> slot);

}  // namespace skyrelay
