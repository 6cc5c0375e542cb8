// One HTTP/1.1 connection: serves /health, /metrics and static files with keep-alive, and hands
// WebSocket upgrades on /ws and /ws/<topic> to a ws_session.
#pragma once

#include <memory>

#include "skyrelay/net/aliases.hpp"

namespace skyrelay {

class server;

// Starts serving an accepted socket. Defined in http_session.cpp, the only translation unit that
// includes Beast's HTTP headers.
void start_http_session(tcp::socket socket, server& srv);

}  // namespace skyrelay
