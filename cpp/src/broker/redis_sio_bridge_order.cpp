// The Socket.IO manager bridge's order between room methods and emits (redis_sio_bridge.hpp;
// docs/architecture.md "The Socket.IO manager bridge").
//
// Every node applies enter_room / leave_room / close_room / disconnect in the order Redis
// sent them. An enter_room for a connection of this node first makes the node follow the room
// (broker::warm: subscribed, at the cluster's position), then joins; the methods after it
// wait meanwhile. Once applied here, the node publishes the method's applied_key() on the
// channel's `manager:applied:` channel.
//
// The leader of a channel holds back every emit that came after an enter_room or leave_room
// until the sid's node announced it (a barrier). It finds that node through the broker's sid
// registry (`<prefix>sid:<sid>` = the node's id, "-" once closed): for a sid on no live node
// there is nothing to wait for. A barrier ends at the latest after order_timeout, and when
// more than order_max emits wait, the oldest barrier ends early (counted).
#include <boost/asio/post.hpp>

#include "redis_sio_bridge_impl.hpp"

namespace skyrelay::redis {

std::string redis_sio_bridge::impl::applied_key(const manager_message& m) {
  // Length-prefixed fields: no sid, namespace or room can spell another method's key.
  std::string key = m.what == manager_message::kind::enter_room ? "enter" : "leave";
  for (const std::string* f : {&m.room.nsp, &m.room.room, &m.sid})
    key += ' ' + std::to_string(f->size()) + ':' + *f;
  return key;
}

void redis_sio_bridge::impl::on_room_method(const std::string& channel, manager_message m) {
  using kind = manager_message::kind;
  if (m.what == kind::enter_room || m.what == kind::leave_room) {
    auto l = leases.find(channel);
    if (l != leases.end() && holds(l->second)) await_method(channel, m);
  }
  applies.emplace_back(channel, std::move(m));
  run_applies();
}

void redis_sio_bridge::impl::run_applies() {
  using kind = manager_message::kind;
  while (!applying && !applies.empty()) {
    const std::string channel = std::move(applies.front().first);
    const manager_message m = std::move(applies.front().second);
    applies.pop_front();
    ++applied;
    switch (m.what) {
      case kind::enter_room: {
        if (!actions.here(m.sid, m.room.nsp)) break;  // another node's connection
        applying = true;
        const unsigned g = ++apply_gen;
        // Weak both ways: a warm that ends after stop() must not keep the bridge alive.
        auto done = [w = self, g, channel, m] {
          if (auto i = w.lock())
            asio::post(i->io, [w, g, channel, m] {
              if (auto i = w.lock()) i->applied_here(g, channel, m);
            });
        };
        apply_timer.expires_after(opts.order_timeout);
        apply_timer.async_wait([this, g, channel, m](boost::system::error_code ec) {
          // No warm answer in time: join anyway; the order is then best effort.
          if (!ec) applied_here(g, channel, m);
        });
        actions.warm(m.room, std::move(done));
        break;
      }
      case kind::leave_room:
        if (!actions.here(m.sid, m.room.nsp)) break;
        actions.leave(m.sid, m.room);
        announce(channel, m);
        break;
      case kind::close_room: actions.close_room(m.room); break;
      case kind::disconnect: actions.disconnect(m.sid, m.room.nsp); break;
      default: break;
    }
  }
}

// The enter_room whose warm ended (or timed out): join, announce, go on with the next method.
void redis_sio_bridge::impl::applied_here(unsigned g, const std::string& channel,
                                          const manager_message& m) {
  if (!applying || g != apply_gen || stopping) return;
  applying = false;
  apply_timer.cancel();
  actions.enter(m.sid, m.room);
  announce(channel, m);
  run_applies();
}

// Tells the channel's leader that this node applied `m` (lost with the connection: the
// leader's wait then ends at its deadline).
void redis_sio_bridge::impl::announce(const std::string& channel, const manager_message& m) {
  if (cmd && ready)
    cmd->execute({"PUBLISH", opts.prefix + "manager:applied:" + channel, applied_key(m)},
                 nullptr);
}

void redis_sio_bridge::impl::await_method(const std::string& channel, const manager_message& m) {
  auto b = std::make_shared<barrier>();
  b->key = applied_key(m);
  order.push_back({channel, std::nullopt, b});
  ++order_waits;
  const unsigned g = gen;
  keyed_get(opts.prefix + "sid:" + m.sid, [this, g, b](std::error_code ec, redis_value v) {
                 if (g != gen || stopping) return;
                 b->looked_up = true;
                 // A live sid names its node; "-" (closed) or nothing: no one will apply it.
                 b->wait_ack = !ec && v.type == redis_value::kind::string && !v.str.empty() &&
                               v.str != "-";
                 b->deadline = clock_type::now() + opts.order_timeout;
                 drain();
               });
}

void redis_sio_bridge::impl::on_applied(const std::string& key) {
  for (auto& q : order)
    if (q.wait && q.wait->key == key && !q.wait->acked) {
      q.wait->acked = true;
      break;
    }
  drain();
}

// Republishes the emits at the front of the queue whose barriers ended.
void redis_sio_bridge::impl::drain() {
  const auto now = clock_type::now();
  std::size_t emits = 0;
  for (const auto& q : order) emits += q.emit.has_value();
  while (!order.empty()) {
    auto& q = order.front();
    if (q.wait) {
      const auto& b = *q.wait;
      const bool over = emits > opts.order_max || (b.looked_up && now >= b.deadline);
      const bool done = b.looked_up && (!b.wait_ack || b.acked);
      if (!done && !over) break;
      if (!done) ++order_timeouts;
    } else {
      --emits;
      auto l = leases.find(q.channel);
      if (l != leases.end()) handle_emit(*q.emit, l->second);
    }
    order.pop_front();
  }
  arm_order_timer();
}

void redis_sio_bridge::impl::arm_order_timer() {
  if (order.empty() || !order.front().wait || !order.front().wait->looked_up) return;
  order_timer.expires_at(order.front().wait->deadline);
  order_timer.async_wait([this](boost::system::error_code ec) {
    if (!ec && !stopping) drain();
  });
}

void redis_sio_bridge::impl::clear_order() {
  // Without the lease the held emits are another leader's to republish.
  order.clear();
  order_timer.cancel();
}

}  // namespace skyrelay::redis
