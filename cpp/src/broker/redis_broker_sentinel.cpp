// The Redis broker behind Sentinel: before each connect, the sentinels say where the master is
// (redis_sentinel.hpp). A failover closes the old master's connections (it died, or Sentinel
// made it a replica and killed its clients), the broker's reconnect asks again, and the
// connections go to the new master; the catch-up rules are those of any reconnect.
#include "redis_broker_impl.hpp"
#include "redis_sentinel.hpp"

namespace skyrelay::redis {

void redis_broker::impl::locate(unsigned g) {
  // While searching, `cmd` is the search's connection, so lost() and the destructor close it.
  auto track = [this, g](std::shared_ptr<redis_connection> c) {
    if (g != gen || stopping) return false;
    cmd = std::move(c);
    return true;
  };
  locate_master(io.get_executor(), opts.url, track,
                [this, g](std::optional<redis_endpoint> master, std::string why) {
    if (g != gen || stopping) return;
    if (!master) return lost(g, "redis+sentinel: " + why);
    opts.url.host = master->host;
    opts.url.port = master->port;
    located = true;
    connect();
  });
}

}  // namespace skyrelay::redis
