// The server's side of the Socket.IO manager bridge (broker/redis_sio_bridge.hpp): what the
// bridge's messages do to this node's connections, and its counters on /metrics.
#pragma once

#include <memory>
#include <string>

#include "skyrelay/broker/redis_sio_bridge.hpp"

namespace skyrelay {

class server;

// A bridge for `s` when its broker is Redis and server_config::redis_manager_channels is not
// empty; null otherwise. Call from the server's constructor, after its broker is made. The
// actions reach connections of this node only: a sid must be a connection of the message's
// namespace here (hub::find), else the message does nothing on this node.
std::unique_ptr<redis::redis_sio_bridge> make_manager_bridge(server& s);

// Appends the bridge's counters (Prometheus text); nothing when `bridge` is null.
void append_manager_metrics(std::string& out, const redis::redis_sio_bridge* bridge);

}  // namespace skyrelay
