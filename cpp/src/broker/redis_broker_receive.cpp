// The Redis broker's receiving side: which channels the node follows, the messages that come
// back, their order and gaps, catch-ups from the streams, and warming the hub's logs.
//
// Order rule, per followed channel (epoch, last seq delivered): a message's seq == last + 1 is
// new; <= last was delivered already (a message to several channels comes once per channel:
// the first copy delivers it, the others are skipped); > last + 1 is a gap: live messages are
// held in `buffer` while the missing ones are read from the channel's stream (XRANGE) and
// handed first; what the stream no longer holds becomes an explicit hole in the hub's log
// (resumes get history_gap). Another epoch: the sequence restarted, from its seq 1.
#include <boost/asio/steady_timer.hpp>

#include "redis_broker_impl.hpp"

namespace skyrelay::redis {

namespace {
constexpr std::chrono::seconds unwarm_after{10};  // a room warmed for nobody is dropped then
// uids remembered to deliver direct targets once (on a cluster: every publication once, its
// copies from several slots arriving apart)
constexpr std::size_t recent_max = 4096, cluster_recent_max = 65536;

std::uint64_t entry_seq(const std::string& id) {
  std::uint64_t n = 0;
  for (char c : id) {
    if (c < '0' || c > '9') break;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return n;
}

// The message held by one stream entry ([id, [field, value, ...]]), empty if none.
const std::string* entry_message(const redis_value& e) {
  if (e.elements.size() != 2 || e.elements[1].elements.size() < 2) return nullptr;
  return &e.elements[1].elements[1].str;
}

std::optional<stored_entry> stored(const redis_value& e) {
  const std::string* m = entry_message(e);
  if (!m) return std::nullopt;
  message_header h;
  std::string_view body;
  stored_entry out;
  out.seq = entry_seq(e.elements[0].str);
  if (!out.seq || !split_message(*m, h, body) || !decode_body(body, out.pub, out.ts))
    return std::nullopt;
  out.single = h.channels.size() == 1 && h.direct.empty() && out.pub.to.size() == 1 &&
               out.pub.to_conns.empty();
  return out;
}
}  // namespace

void redis_broker::impl::want(const channel& ch) {
  const std::string tag = room_tag(ch);
  auto& f = chans[tag];
  f.ch = ch;
  f.wanted = true;
  if (ready && !f.subscribed) start_follow(tag, nullptr);
}

void redis_broker::impl::unwant(const channel& ch) {
  auto it = chans.find(room_tag(ch));
  if (it == chans.end()) return;
  if (it->second.subscribed && ready) unfollow_channel(it->first);
  for (auto& w : it->second.waiters) w(false);
  chans.erase(it);  // followed again later: it starts from where the channel stands then
}

void redis_broker::impl::refresh() {
  const auto now = clock_type::now();
  last_refresh = now;
  const std::string ttl = ms_ttl();
  std::vector<std::string> drop;
  for (auto& [tag, f] : chans) {
    if (f.broadcasts && !f.wanted) continue;  // another namespace's: followed by pattern only
    if (!f.broadcasts && !f.wanted && now - f.warmed > unwarm_after) {
      drop.push_back(tag);  // warmed for a resume that never joined
      continue;
    }
    // A followed channel's keys do not expire: its epoch stays while it has members.
    exec(tag, {"PEXPIRE", key(tag, ":m"), ttl}, nullptr);
    exec(tag, {"PEXPIRE", key(tag, ":s"), ttl}, nullptr);
  }
  for (const auto& tag : drop) {
    if (chans.at(tag).subscribed) unfollow_channel(tag);
    chans.erase(tag);
  }
}

void redis_broker::impl::start_follow(const std::string& tag, std::function<void(bool)> done) {
  auto& f = chans.at(tag);
  if (done) f.waiters.push_back(std::move(done));
  if (f.starting) return;
  f.starting = true;
  const unsigned g = gen;
  auto finish = [this, tag](bool ok) {
    auto it = chans.find(tag);
    if (it == chans.end()) return;
    it->second.starting = false;
    auto waiters = std::move(it->second.waiters);
    it->second.waiters.clear();
    if (ok) sync(tag);  // what was published while it loaded and subscribed
    for (auto& w : waiters) w(ok);
  };
  auto subscribe = [this, g, tag, finish] {
    auto it = chans.find(tag);
    if (it != chans.end() && it->second.broadcasts) {
      it->second.subscribed = true;  // broadcasts come by the pattern subscription
      return finish(true);
    }
    follow_channel(tag, [this, g, tag, finish](std::error_code ec, redis_value) {
      if (g != gen) return;
      auto it = chans.find(tag);
      if (it != chans.end() && !ec) it->second.subscribed = true;
      finish(!ec);
    });
  };
  if (f.known) return subscribe();
  // Where the channel stands and its stored tail go into the hub's log first, so a member's
  // position and replay are Redis's, then live messages continue from there.
  // A channel with no sequence yet gets one now, so its members are told Redis's epoch.
  exec(tag, {"EVAL", start_script(), "2", key(tag, ":m"), key(tag, ":s"),
             hub_.epoch_prefix(), ms_ttl(), replid_of(tag)},
       [this, g, tag, finish, subscribe](std::error_code ec, redis_value v) {
    if (g != gen) return;
    if (ec || v.elements.size() != 2 || v.elements[0].type == redis_value::kind::nil)
      return finish(false);
    const std::string epoch = v.elements[0].str;
    const std::uint64_t seq = entry_seq(v.elements[1].str);
    exec(tag, {"XREVRANGE", key(tag, ":s"), "+", "-", "COUNT",
               std::to_string(std::max<std::size_t>(opts.history_max, 1))},
         [this, g, tag, epoch, seq, finish, subscribe](std::error_code ec, redis_value v) {
      if (g != gen) return;
      auto it = chans.find(tag);
      if (ec || it == chans.end()) return finish(false);
      std::vector<stored_entry> entries;
      for (auto e = v.elements.rbegin(); e != v.elements.rend(); ++e)
        if (auto s = stored(*e); s && s->seq <= seq) entries.push_back(std::move(*s));
      auto& f = it->second;
      hub_.load_history(f.ch, f.broadcasts, epoch, seq, std::move(entries));
      f.known = true;
      f.epoch = epoch;
      f.last = seq;
      subscribe();
    });
  });
}

void redis_broker::impl::on_message(unsigned g, redis_message m) {
  if (g != gen) return;
  last_heard = clock_type::now();  // any message shows the subscriber connection hears
  if (m.channel == node_channel && m.payload == heartbeat_payload) return;
  ++received;
  if (syncing > 0 || !buffer.empty()) {
    if (buffer.size() >= opts.buffer_max) {
      // Too much to hold: drop it all and catch every channel up from its stream afterwards.
      buffer.clear();
      overflowed = true;
      return;
    }
    buffer.push_back(std::move(m.payload));
    return;
  }
  if (!handle(m.payload)) buffer.push_back(std::move(m.payload));
}

bool redis_broker::impl::handle(const std::string& payload) {
  message_header h;
  std::string_view body;
  if (!split_message(payload, h, body)) return true;  // not ours: ignored
  ordered_route r;
  std::vector<follow*> took;
  bool gap = false;
  for (const auto& c : h.channels) {
    auto it = chans.find(c.tag);
    if (it == chans.end()) {
      auto t = parse_tag(c.tag);
      if (!t || !t->broadcasts) continue;  // a room this node does not follow
      auto& f = chans[c.tag];  // a namespace's broadcasts, first seen: followed from here
      f.ch = t->ch;
      f.broadcasts = f.known = true;
      f.epoch = c.epoch;
      f.last = c.seq - 1;
      it = chans.find(c.tag);
    }
    auto& f = it->second;
    if (!f.known) continue;  // its start_follow reads where it stands, then catches up
    if (f.epoch != c.epoch) {
      f.epoch = c.epoch;  // the sequence restarted (keys expired, or a new redis)
      f.last = 0;
    }
    if (c.seq <= f.last) continue;  // delivered already
    if (c.seq > f.last + 1 && !f.just_synced) {
      gap = true;
      sync(c.tag);
      continue;
    }
    if (c.seq > f.last + 1) ++resets;  // caught up just now, still missing: a hole
    took.push_back(&f);
    r.channels.push_back({f.ch, f.broadcasts, c.epoch, c.seq});
  }
  if (gap) return false;
  const bool seen = recent.count(h.uid) > 0;
  if (!seen)
    for (auto& [node, sids] : h.direct)
      if (node == opts.node_id) r.direct = sids;
  // A cluster's copies of one publication (one per hash slot): the first goes to the members
  // of every room it names, the later ones only advance their rooms' logs.
  if (!seen)
    for (const auto& tag : h.all)
      if (auto t = parse_tag(tag); t && !t->broadcasts) r.also.push_back(std::move(t->ch));
  r.record_only = seen && clustered();
  if (r.channels.empty() && r.direct.empty()) return true;
  publication p;
  if (!decode_body(body, p, r.ts)) return true;
  for (std::size_t i = 0; i < took.size(); ++i) {
    took[i]->last = r.channels[i].seq;
    took[i]->just_synced = false;
  }
  r.everyone = h.channels.size() == 1 && !r.channels.empty() && r.channels.front().broadcasts;
  r.single = h.channels.size() == 1 && h.direct.empty() && !r.everyone && p.to.size() == 1 &&
             p.to_conns.empty();
  if (!seen) {
    recent.insert(h.uid);
    recent_order.push_back(h.uid);
    if (recent_order.size() > (clustered() ? cluster_recent_max : recent_max)) {
      recent.erase(recent_order.front());
      recent_order.pop_front();
    }
  }
  hub_.publish_ordered(p, r);
  return true;
}

void redis_broker::impl::sync(const std::string& tag) {
  auto it = chans.find(tag);
  if (it == chans.end() || it->second.syncing || !ready) return;
  it->second.syncing = true;
  ++syncing;
  const unsigned g = gen;
  // Hands the entries read (oldest first) in front of the held live messages.
  auto finish = [this, tag](std::vector<std::string> entries) {
    if (auto it = chans.find(tag); it != chans.end()) {
      it->second.syncing = false;
      it->second.just_synced = true;
    }
    for (auto e = entries.rbegin(); e != entries.rend(); ++e) buffer.push_front(std::move(*e));
    --syncing;
    drain();
  };
  exec(tag, {"HMGET", key(tag, ":m"), "epoch", "seq"},
       [this, g, tag, finish](std::error_code ec, redis_value v) {
    if (g != gen || ec) return;  // a loss: the next connection syncs again
    auto it = chans.find(tag);
    if (it == chans.end() || v.elements.size() != 2 ||
        v.elements[0].type == redis_value::kind::nil)
      return finish({});  // nothing stored: nothing to catch up
    const std::string epoch = v.elements[0].str;
    const std::uint64_t seq = entry_seq(v.elements[1].str);
    const auto& f = it->second;
    const std::uint64_t from = f.known && f.epoch == epoch ? f.last : 0;
    if (seq <= from) return finish({});
    exec(tag, {"XRANGE", key(tag, ":s"), std::to_string(from + 1) + "-1", "+", "COUNT",
               std::to_string(seq - from)},
         [this, g, tag, finish, epoch, seq, from](std::error_code ec, redis_value v) {
      if (g != gen || ec) return;
      auto it = chans.find(tag);
      if (it == chans.end()) return finish({});
      auto& f = it->second;
      std::vector<std::string> entries;
      std::uint64_t first = 0;
      for (const auto& e : v.elements) {
        const std::string* m = entry_message(e);
        if (!m) continue;
        if (!first) first = entry_seq(e.elements[0].str);
        entries.push_back(*m);
      }
      if (first != from + 1) {
        // The stream no longer holds the start of what was missed: the hub's log is reset to
        // where the stream starts (an explicit hole), and delivery goes on from there.
        ++resets;
        const std::uint64_t upto = first ? first - 1 : seq;
        hub_.load_history(f.ch, f.broadcasts, epoch, upto, {});
        f.last = upto;
      } else {
        ++gaps;
        if (f.epoch != epoch) f.last = 0;
      }
      f.epoch = epoch;
      f.known = true;
      finish(std::move(entries));
    });
  });
}

void redis_broker::impl::drain() {
  while (syncing == 0 && !buffer.empty()) {
    if (!handle(buffer.front())) return;  // another gap: that catch-up drains again
    buffer.pop_front();
  }
  if (syncing == 0 && overflowed) {
    overflowed = false;
    std::vector<std::string> tags;
    for (const auto& [tag, f] : chans)
      if (f.known) tags.push_back(tag);
    for (const auto& tag : tags) sync(tag);
  }
}

void redis_broker::impl::warm(const std::vector<channel>& rooms, std::function<void(bool)> done) {
  if (quiet) return;
  if (!ready) return done(false);
  if (rooms.empty()) return done(true);
  struct state {
    std::size_t left;
    bool ok{true}, called{false};
    std::function<void(bool)> done;
    std::shared_ptr<asio::steady_timer> timer;
  };
  auto st = std::make_shared<state>();
  st->left = rooms.size();
  st->done = std::move(done);
  st->timer = std::make_shared<asio::steady_timer>(io, opts.warm_timeout);
  st->timer->async_wait([this, st](boost::system::error_code ec) {
    if (ec || st->called || quiet) return;
    st->called = true;
    st->done(false);  // too slow: the caller answers with a reset, never a silent hole
  });
  auto one = [this, st](bool ok) {
    st->ok = st->ok && ok;
    if (--st->left > 0 || st->called || quiet) return;
    st->called = true;
    st->timer->cancel();
    st->done(st->ok);
  };
  const auto now = clock_type::now();
  for (const auto& room : rooms) {
    const std::string tag = room_tag(room);
    auto& f = chans[tag];
    f.ch = room;
    if (!f.wanted) f.warmed = now;
    if (f.subscribed && f.known && !f.starting) one(true);
    else start_follow(tag, one);
  }
}

}  // namespace skyrelay::redis
