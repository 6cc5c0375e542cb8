#include "skyrelay/net/manager_bridge.hpp"

#include "skyrelay/broker/redis_broker.hpp"
#include "skyrelay/net/server.hpp"

namespace skyrelay {

namespace {
// True when `sid` is a connection of this node in namespace `nsp`.
bool local_in(server& s, const std::string& sid, const std::string& nsp) {
  auto c = s.get_hub().find(sid);
  return c && c->nsp() == nsp;
}
}  // namespace

std::unique_ptr<redis::redis_sio_bridge> make_manager_bridge(server& s) {
  const server_config& cfg = s.config();
  auto* broker = dynamic_cast<redis::redis_broker*>(&s.get_broker());
  if (!broker || cfg.redis_manager_channels.empty()) return nullptr;
  const auto parsed = redis::parse_broker_url(cfg.broker);
  redis::redis_sio_bridge_options o;
  o.url = parsed.url;
  o.seeds = parsed.seeds;  // redis+cluster: keyed commands by slot (redis_sio_bridge.hpp)
  o.prefix = parsed.prefix;
  o.node_id = broker->node_id();
  o.channels = cfg.redis_manager_channels;
  redis::manager_actions a;
  a.publish = [&s](const publication& p) { s.publish(p); };
  a.here = [&s](const std::string& sid, const std::string& nsp) { return local_in(s, sid, nsp); };
  a.warm = [&s](const channel& room, std::function<void()> done) {
    s.get_broker().warm({room}, [done = std::move(done)](bool) { done(); });
  };
  // An application's join: the room's role requirement holds for it too.
  a.enter = [&s](const std::string& sid, const channel& room) {
    if (local_in(s, sid, room.nsp)) s.join_checked(sid, room);
  };
  a.leave = [&s](const std::string& sid, const channel& room) {
    if (local_in(s, sid, room.nsp)) s.leave(sid, room);
  };
  a.close_room = [&s](const channel& room) {
    for (const auto& sid : s.get_hub().room_members(room)) s.leave(sid, room);
  };
  a.disconnect = [&s](const std::string& sid, const std::string& nsp) {
    if (!local_in(s, sid, nsp)) return;
    if (!s.sio().disconnect(sid))
      s.disconnect(sid, close_code::server_disconnect, "disconnected by the server");
  };
  return std::make_unique<redis::redis_sio_bridge>(std::move(o), std::move(a));
}

void append_manager_metrics(std::string& out, const redis::redis_sio_bridge* bridge) {
  if (!bridge) return;
  const redis::manager_counters c = bridge->counters();
  auto add = [&out](const char* name, const char* help, const char* type, std::uint64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + std::to_string(v) + "\n";
  };
  add("skyrelay_manager_received_messages_total",
      "Messages received on the python-socketio / Flask-SocketIO manager channels.", "counter",
      c.received);
  add("skyrelay_manager_republished_total",
      "Manager emits this node republished through the broker as the leader.", "counter",
      c.republished);
  add("skyrelay_manager_applied_total",
      "Manager room methods and disconnects handled on this node.", "counter", c.applied);
  add("skyrelay_manager_malformed_total",
      "Manager channel messages dropped as malformed.", "counter", c.malformed);
  add("skyrelay_manager_acks_dropped_total",
      "Republished manager emits that asked for an ack, delivered without one.", "counter",
      c.acks_dropped);
  add("skyrelay_manager_publish_failures_total",
      "Manager emits the broker could not publish (Redis unreachable).", "counter", c.failed);
  add("skyrelay_manager_order_waits_total",
      "Manager room methods this leader waited for before republishing later emits.",
      "counter", c.order_waits);
  add("skyrelay_manager_order_timeouts_total",
      "Of those, waits given up (the sid's node did not confirm in time).", "counter",
      c.order_timeouts);
  add("skyrelay_manager_leased_channels",
      "Manager channels whose lease this node holds (it republishes their emits).", "gauge",
      c.leading);
}

}  // namespace skyrelay
