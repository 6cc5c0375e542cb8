// The hub (connections, rooms, fan-out) and the dispatcher.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "skyrelay/hub/dispatcher.hpp"
#include "skyrelay/hub/hub.hpp"
#include "hub_test_sink.hpp"

using skyrelay::dispatcher;
using skyrelay::frame_ptr;
using skyrelay::hub;
using skyrelay::overflow_policy;
using skyrelay::publication;
using skyrelay::publish_meta;
using skyrelay::subscriber;
using skyrelay::encoder_id;

namespace {

// What the test encoder put into a frame, read back.
struct decoded {
  std::string format;
  std::string event;
  std::string topic;
  std::uint64_t seq;
  std::string data;
  bool operator==(const decoded&) const = default;
  friend void PrintTo(const decoded& d, std::ostream* os) {
    *os << d.format << "|" << d.event << "|" << d.topic << "|" << d.seq << "|" << d.data;
  }
};

// The shared sink, reading back what the fixture's encoders wrote (encoder 0 is "json").
class recorder : public skyrelay::testing::sink {
 public:
  using sink::sink;
  std::vector<decoded> got() const;
};

// Frame bytes: format|event|topic|seq|data|id. Fields in these tests contain no '|'.
std::vector<std::string> fields(const std::string& bytes) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    auto bar = bytes.find('|', start);
    parts.push_back(bytes.substr(start, bar - start));
    if (bar == std::string::npos) break;
    start = bar + 1;
  }
  EXPECT_EQ(parts.size(), 6u) << bytes;
  parts.resize(6);
  return parts;
}

decoded parse(const std::string& bytes) {
  const auto parts = fields(bytes);
  return decoded{parts[0], parts[1], parts[2], parts[3].empty() ? 0 : std::stoull(parts[3]), parts[4]};
}

// The publication id the fixture's encoders write last.
std::uint64_t id_of(const frame_ptr& f) { return std::stoull(fields(f->bytes)[5]); }

std::vector<decoded> recorder::got() const {
  std::vector<decoded> out;
  for (const auto& f : frames()) out.push_back(parse(f->bytes));
  return out;
}

// A hub with two registered encoders, standing for two transports, that count their calls.
struct fixture {
  hub h;
  std::atomic<int> json_encodes{0};
  std::atomic<int> sio_encodes{0};
  encoder_id json;
  encoder_id sio;

  fixture()
      : json(h.add_encoder([this](const publication& p, const publish_meta& m) {
          json_encodes.fetch_add(1);
          return encode("json", p, m);
        })),
        sio(h.add_encoder([this](const publication& p, const publish_meta& m) {
          sio_encodes.fetch_add(1);
          return encode("sio", p, m);
        })) {}
  static frame_ptr encode(const std::string& fmt, const publication& p, const publish_meta& m) {
    return std::make_shared<const skyrelay::frame>(
        skyrelay::frame{fmt + "|" + p.event + "|" + std::string(m.topic) + "|" +
                            std::to_string(m.seq) + "|" + p.data + "|" + std::to_string(m.id),
                        m.publish_ns, true, 0, {}, 0, m.positions});
  }
  int encodes() const { return json_encodes.load() + sio_encodes.load(); }

  std::shared_ptr<recorder> add(const std::string& sid) { return add(sid, json); }
  std::shared_ptr<recorder> add(const std::string& sid, encoder_id enc,
                                const std::string& nsp = "/") {
    auto r = std::make_shared<recorder>(sid, enc, nsp);
    EXPECT_TRUE(h.add(r)) << sid;
    return r;
  }
  std::size_t emit(const std::string& event, std::vector<std::string> to = {},
                   std::vector<std::string> skip = {},
                   std::optional<overflow_policy> policy = std::nullopt, std::string data = "{}") {
    publication p;
    p.event = event;
    p.data = std::move(data);
    p.to = std::move(to);
    p.skip = std::move(skip);
    p.policy = policy;
    return h.publish(p);
  }
};

using sids = std::vector<std::string>;

skyrelay::channel ch(std::string room, std::string nsp = "/") {
  return {std::move(nsp), std::move(room)};
}

// The room names of a rooms_of() answer, in its order.
sids names(const std::vector<skyrelay::channel>& rooms) {
  sids out;
  for (const auto& c : rooms) out.push_back(c.room);
  return out;
}

sids sorted(sids v) {
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

// ---- connections and rooms ------------------------------------------------------------------

TEST(Hub, AddRefusesADuplicateSid) {
  fixture t;
  auto first = t.add("a");
  auto second = std::make_shared<recorder>("a");
  EXPECT_FALSE(t.h.add(second));
  EXPECT_EQ(t.h.connection_count(), 1u);
  EXPECT_EQ(t.h.find("a"), first);  // the original stays
  EXPECT_EQ(t.emit("x"), 1u);
  EXPECT_EQ(first->count(), 1u);
  EXPECT_EQ(second->count(), 0u);
}

TEST(Hub, FindAndCounts) {
  fixture t;
  EXPECT_EQ(t.h.connection_count(), 0u);
  EXPECT_EQ(t.h.room_count(), 0u);
  EXPECT_EQ(t.h.find("nobody"), nullptr);
  auto a = t.add("a");
  t.add("b");
  EXPECT_EQ(t.h.find("a"), a);
  EXPECT_EQ(t.h.connection_count(), 2u);
}

TEST(Hub, JoinLeaveAndRoomsOf) {
  fixture t;
  t.add("a");
  t.add("b");
  EXPECT_TRUE(t.h.join("a", ch("r2")));
  EXPECT_TRUE(t.h.join("a", ch("r1")));
  EXPECT_TRUE(t.h.join("a", ch("r1")));  // already a member: still true, no duplicate
  EXPECT_TRUE(t.h.join("b", ch("r1")));
  EXPECT_FALSE(t.h.join("ghost", ch("r1")));
  EXPECT_EQ(names(t.h.rooms_of("a")), (sids{"r1", "r2"}));  // sorted
  EXPECT_EQ(names(t.h.rooms_of("b")), sids{"r1"});
  EXPECT_TRUE(names(t.h.rooms_of("ghost")).empty());
  EXPECT_EQ(t.h.room_size(ch("r1")), 2u);
  EXPECT_EQ(sorted(t.h.room_members(ch("r1"))), (sids{"a", "b"}));
  EXPECT_EQ(t.h.room_count(), 2u);

  EXPECT_TRUE(t.h.leave("a", ch("r1")));
  EXPECT_FALSE(t.h.leave("a", ch("r1")));     // no longer a member
  EXPECT_FALSE(t.h.leave("a", ch("never")));  // never was
  EXPECT_FALSE(t.h.leave("ghost", ch("r1")));
  EXPECT_EQ(t.h.room_members(ch("r1")), sids{"b"});
  EXPECT_EQ(names(t.h.rooms_of("a")), sids{"r2"});
  EXPECT_TRUE(t.h.leave("a", ch("r2")));
  EXPECT_EQ(t.h.room_size(ch("r2")), 0u);
  EXPECT_EQ(t.h.room_count(), 1u);  // an empty room is not counted
  EXPECT_TRUE(t.h.room_members(ch("r2")).empty());
}

TEST(Hub, RemoveCleansEveryRoom) {
  fixture t;
  auto a = t.add("a");
  t.add("b");
  for (auto room : {"r1", "r2", "r3"}) t.h.join("a", ch(room));
  t.h.join("b", ch("r3"));
  EXPECT_EQ(t.h.room_count(), 3u);

  t.h.remove("a");
  EXPECT_EQ(t.h.connection_count(), 1u);
  EXPECT_EQ(t.h.find("a"), nullptr);
  EXPECT_TRUE(names(t.h.rooms_of("a")).empty());
  EXPECT_EQ(t.h.room_size(ch("r1")), 0u);
  EXPECT_EQ(t.h.room_size(ch("r2")), 0u);
  EXPECT_EQ(t.h.room_members(ch("r3")), sids{"b"});
  EXPECT_EQ(t.h.room_count(), 1u);
  EXPECT_FALSE(t.h.join("a", ch("r1")));

  t.h.remove("a");      // idempotent
  t.h.remove("ghost");  // unknown
  EXPECT_EQ(t.h.connection_count(), 1u);

  // Nothing reaches a removed connection, whichever way it is addressed.
  EXPECT_EQ(t.emit("all"), 1u);
  EXPECT_EQ(t.emit("room", {"r1"}), 0u);
  EXPECT_EQ(t.emit("sid", {"a"}), 0u);
  EXPECT_EQ(a->count(), 0u);

  // The sid can be used again, starting with no rooms.
  auto again = t.add("a");
  EXPECT_TRUE(names(t.h.rooms_of("a")).empty());
  EXPECT_EQ(t.emit("room", {"r3"}), 1u);
  EXPECT_EQ(again->count(), 0u);
}

// ---- publishing -----------------------------------------------------------------------------

TEST(Hub, PublishToEveryoneEncodesOnce) {
  fixture t;
  std::vector<std::shared_ptr<recorder>> all;
  for (int i = 0; i < 100; ++i) all.push_back(t.add("s" + std::to_string(i)));
  t.h.join("s3", ch("some-room"));
  EXPECT_EQ(t.emit("hello", {}, {}, std::nullopt, R"({"n":1})"), 100u);
  EXPECT_EQ(t.json_encodes.load(), 1);
  for (const auto& r : all) {
    ASSERT_EQ(r->count(), 1u);
    EXPECT_EQ(r->got()[0], (decoded{"json", "hello", "", 0, R"({"n":1})"}));
    EXPECT_EQ(r->frames()[0].get(), all[0]->frames()[0].get());  // one shared frame
  }
  EXPECT_EQ(t.emit("again"), 100u);
  EXPECT_EQ(t.json_encodes.load(), 2);  // one per publication
}

TEST(Hub, EncodedOncePerFormatAmongRecipients) {
  fixture t;
  std::vector<std::shared_ptr<recorder>> js, io;
  for (int i = 0; i < 10; ++i) {
    js.push_back(t.add("j" + std::to_string(i), t.json));
    io.push_back(t.add("i" + std::to_string(i), t.sio));
    t.h.join("j" + std::to_string(i), ch("mixed"));
    t.h.join("i" + std::to_string(i), ch("mixed"));
    t.h.join("j" + std::to_string(i), ch("json-only"));
  }
  EXPECT_EQ(t.emit("e", {"mixed"}), 20u);
  EXPECT_EQ(t.json_encodes.load(), 1);
  EXPECT_EQ(t.sio_encodes.load(), 1);
  EXPECT_EQ(js[4]->got()[0].format, "json");
  EXPECT_EQ(io[7]->got()[0].format, "sio");
  // A format with no recipient is not encoded at all.
  EXPECT_EQ(t.emit("e", {"json-only"}), 10u);
  EXPECT_EQ(t.json_encodes.load(), 2);
  EXPECT_EQ(t.sio_encodes.load(), 1);
}

TEST(Hub, PublishToAnEmptyTargetReturnsZero) {
  fixture t;
  EXPECT_EQ(t.emit("nobody home"), 0u);  // no connections at all
  t.add("a");
  t.h.join("a", ch("r"));
  t.h.leave("a", ch("r"));
  EXPECT_EQ(t.emit("e", {"r"}), 0u);            // a room that emptied
  EXPECT_EQ(t.emit("e", {"no-such-thing"}), 0u);  // neither room nor sid
  EXPECT_EQ(t.emit("e", {"x", "y", "z"}), 0u);
  EXPECT_EQ(t.emit("e", {}, {"a"}), 0u);  // everyone, but everyone is skipped
  EXPECT_EQ(t.encodes(), 0);  // nothing to send, nothing encoded
}

TEST(Hub, RoomPublicationsCarryTopicAndPerRoomSequence) {
  fixture t;
  auto a = t.add("a");
  auto b = t.add("b");
  t.h.join("a", ch("WELL-001"));
  t.h.join("b", ch("WELL-001"));
  t.h.join("b", ch("WELL-002"));
  EXPECT_EQ(t.emit("tick", {"WELL-001"}), 2u);
  EXPECT_EQ(t.emit("tick", {"WELL-002"}), 1u);
  EXPECT_EQ(t.emit("tick", {"WELL-001"}), 2u);
  EXPECT_EQ(t.emit("tick", {"WELL-001"}), 2u);
  EXPECT_EQ(t.emit("tick", {"WELL-002"}), 1u);

  auto seqs = [](const recorder& r, const std::string& topic) {
    std::vector<std::uint64_t> out;
    for (const auto& d : r.got())
      if (d.topic == topic) out.push_back(d.seq);
    return out;
  };
  EXPECT_EQ(seqs(*a, "WELL-001"), (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(seqs(*b, "WELL-001"), (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(seqs(*b, "WELL-002"), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(a->count(), 3u);
  EXPECT_EQ(b->count(), 5u);
}

TEST(Hub, SeveralRoomsDeliverOnceToOverlappingMembers) {
  fixture t;
  auto a = t.add("a");
  auto b = t.add("b");
  auto c = t.add("c");
  auto d = t.add("d");
  t.h.join("a", ch("r1"));
  t.h.join("a", ch("r2"));
  t.h.join("a", ch("r3"));
  t.h.join("b", ch("r2"));
  t.h.join("c", ch("r3"));
  // Rooms, a sid that is also a member of one of them, and a name that is nothing.
  EXPECT_EQ(t.emit("m", {"r1", "r2", "r3", "b", "missing"}), 3u);
  EXPECT_EQ(a->count(), 1u);
  EXPECT_EQ(b->count(), 1u);
  EXPECT_EQ(c->count(), 1u);
  EXPECT_EQ(d->count(), 0u);
  EXPECT_EQ(t.json_encodes.load(), 1);
  // Not a single topic: no topic and no sequence number.
  EXPECT_EQ(a->got()[0], (decoded{"json", "m", "", 0, "{}"}));
  // The same room named twice is still once.
  EXPECT_EQ(t.emit("twice", {"r2", "r2"}), 2u);
  EXPECT_EQ(b->count(), 2u);
  // A multi-room publication is not part of any room's sequence.
  t.emit("single", {"r1"});
  EXPECT_EQ(a->got().back(), (decoded{"json", "single", "r1", 1, "{}"}));
}

TEST(Hub, SidTargets) {
  fixture t;
  auto a = t.add("a");
  auto b = t.add("b");
  EXPECT_EQ(t.emit("direct", {"b"}), 1u);
  EXPECT_EQ(a->count(), 0u);
  ASSERT_EQ(b->count(), 1u);
  EXPECT_EQ(b->got()[0], (decoded{"json", "direct", "", 0, "{}"}));
  EXPECT_EQ(t.emit("both", {"a", "b"}), 2u);
  EXPECT_EQ(t.emit("dup", {"a", "a"}), 1u);
  EXPECT_EQ(a->count(), 2u);
  // A live connection's sid wins over a room of the same name (see RoomNamedLikeASid...).
  t.h.join("b", ch("a"));
  EXPECT_EQ(t.emit("named", {"a"}), 1u);
  EXPECT_EQ(a->got().back(), (decoded{"json", "named", "", 0, "{}"}));
  EXPECT_EQ(b->count(), 2u);  // "direct" and "both" only
}

// ---- addresses that cannot collide ----------------------------------------------------------

namespace {
publication to_room(std::string nsp, std::vector<std::string> to, std::string event = "e") {
  publication p;
  p.event = std::move(event);
  p.data = "1";
  p.nsp = std::move(nsp);
  p.to = std::move(to);
  return p;
}
}  // namespace

TEST(HubAddresses, SameRoomNameInTwoNamespacesIsTwoRooms) {
  fixture t;
  auto admin = t.add("adm", t.sio, "/admin");
  auto plain = t.add("pln", t.json, "/");
  auto spelled = t.add("spl", t.json, "/");
  ASSERT_TRUE(t.h.join("adm", ch("alerts", "/admin")));
  ASSERT_TRUE(t.h.join("pln", ch("alerts")));
  ASSERT_TRUE(t.h.join("spl", ch("/admin#alerts")));  // what a client could spell
  EXPECT_EQ(t.h.room_size(ch("alerts", "/admin")), 1u);
  EXPECT_EQ(t.h.room_members(ch("alerts", "/admin")), sids{"adm"});
  EXPECT_EQ(t.h.room_members(ch("alerts")), sids{"pln"});
  EXPECT_EQ(t.h.room_members(ch("/admin#alerts")), sids{"spl"});
  EXPECT_EQ(t.h.rooms_of("adm"), (std::vector<skyrelay::channel>{ch("alerts", "/admin")}));

  EXPECT_EQ(t.h.publish(to_room("/admin", {"alerts"}, "secret")), 1u);
  EXPECT_EQ(t.h.publish(to_room("/admin", {"alerts"}, "secret")), 1u);
  EXPECT_EQ(t.h.publish(to_room("/", {"alerts"}, "open")), 1u);
  ASSERT_EQ(admin->count(), 2u);
  EXPECT_EQ(admin->got()[1], (decoded{"sio", "secret", "alerts", 2, "1"}));
  ASSERT_EQ(plain->count(), 1u);
  EXPECT_EQ(plain->got()[0], (decoded{"json", "open", "alerts", 1, "1"}));  // its own seq
  EXPECT_EQ(spelled->count(), 0u);

  // History and positions are per (namespace, room) too: no replay of /admin's events.
  EXPECT_EQ(t.h.position(ch("alerts", "/admin")).seq, 2u);
  EXPECT_EQ(t.h.position(ch("alerts")).seq, 1u);
  EXPECT_EQ(t.h.position(ch("/admin#alerts")).seq, 0u);
  t.add("late");
  std::vector<frame_ptr> replay;
  ASSERT_TRUE(t.h.subscribe("late", {"/admin#alerts"}, 0, "", [&](skyrelay::subscribe_outcome& o) {
    replay = o.replay;
    EXPECT_EQ(o.positions.front().seq, 0u);
  }));
  EXPECT_TRUE(replay.empty());
  std::vector<frame_ptr> sse;
  t.add("sse", t.json);
  // An SSE cursor from the start of every channel it reads.
  std::vector<skyrelay::stream_point> start;
  ASSERT_TRUE(t.h.subscribe_after("sse", {"/admin#alerts"}, std::nullopt,
                                  [&](auto&, std::string_view, const auto& now) { start = now; }));
  for (auto& p : start) p.pos = 0;
  ASSERT_TRUE(t.h.subscribe_after("sse", {"/admin#alerts"}, start,
                                  [&](std::vector<frame_ptr>& f, std::string_view reset,
                                      const auto&) {
                                    EXPECT_EQ(reset, "");
                                    sse = f;
                                  }));
  EXPECT_TRUE(sse.empty());
  EXPECT_NE(t.h.position(ch("/admin#alerts")).epoch, t.h.position(ch("alerts", "/admin")).epoch);
}

TEST(HubAddresses, RoomNamedLikeALiveSidTakesNoneOfItsDirectMessages) {
  fixture t;
  auto victim = t.add("victim");
  auto thief = t.add("thief");
  auto sio = t.add("sio-victim", t.sio, "/chat");
  t.h.subscribe("thief", {"victim", "sio-victim"}, std::nullopt, "",
                [](skyrelay::subscribe_outcome&) {});
  ASSERT_EQ(t.h.room_size(ch("victim")), 1u);
  // By name: the registry wins over the room.
  EXPECT_EQ(t.emit("by-name", {"victim"}), 1u);
  // Through the registry only.
  publication p = to_room("/", {});
  p.event = "by-conn";
  p.to_conns = {"victim"};
  EXPECT_EQ(t.h.publish(p), 1u);
  ASSERT_EQ(victim->count(), 2u);
  EXPECT_EQ(victim->got()[0].event, "by-name");
  EXPECT_EQ(victim->got()[1].event, "by-conn");
  // A Socket.IO socket's sid, addressed in its namespace, and from "/" (another namespace).
  EXPECT_EQ(t.h.publish(to_room("/chat", {"sio-victim"}, "mine")), 1u);
  EXPECT_EQ(t.emit("not-yours", {"sio-victim"}), 0u);
  p.to_conns = {"sio-victim"};
  EXPECT_EQ(t.h.publish(p), 0u);  // to_conns also stays inside the namespace
  ASSERT_EQ(sio->count(), 1u);
  EXPECT_EQ(sio->got()[0].event, "mine");
  EXPECT_EQ(thief->count(), 0u);
  // Nothing of it went into the room's history either.
  EXPECT_EQ(t.h.position(ch("victim")).seq, 0u);
  EXPECT_EQ(t.h.position(ch("sio-victim")).seq, 0u);
}

TEST(HubAddresses, ToConnsIsNeverARoom) {
  fixture t;
  auto member = t.add("m");
  t.h.join("m", ch("room-not-conn"));
  publication p = to_room("/", {});
  p.to_conns = {"room-not-conn", "nobody"};
  EXPECT_EQ(t.h.publish(p), 0u);
  EXPECT_EQ(member->count(), 0u);
  EXPECT_EQ(t.h.position(ch("room-not-conn")).seq, 0u);
  // Both lists: the room and the connection, each recipient once.
  p.to = {"room-not-conn"};
  p.to_conns = {"m"};
  EXPECT_EQ(t.h.publish(p), 1u);
  EXPECT_EQ(member->count(), 1u);
}

TEST(HubAddresses, ARecentlyClosedSidIsNotARoom) {
  fixture t;
  auto gone = t.add("gone");
  auto thief = t.add("thief");
  EXPECT_EQ(t.h.closed_sid_count(), 0u);
  t.h.remove("gone");
  EXPECT_EQ(t.h.closed_sid_count(), 1u);
  // Subscribed after the victim left: still no room by that name for publish.
  t.h.subscribe("thief", {"gone"}, std::nullopt, "", [](skyrelay::subscribe_outcome&) {});
  EXPECT_EQ(t.emit("for-gone", {"gone"}), 0u);
  EXPECT_EQ(thief->count(), 0u);
  EXPECT_EQ(gone->count(), 0u);
  EXPECT_EQ(t.h.position(ch("gone")).seq, 0u);  // and no history kept under it
  // A name that never was a sid is a room as usual.
  EXPECT_EQ(t.emit("for-room", {"never-a-sid"}), 0u);
  EXPECT_EQ(t.h.position(ch("never-a-sid")).seq, 1u);
  t.h.sweep();  // within the ttl: kept
  EXPECT_EQ(t.h.closed_sid_count(), 1u);
}

TEST(ClosedSids, ExpireAfterTheTtlAndStayBounded) {
  using skyrelay::closed_sids;
  closed_sids c;
  const std::int64_t ttl =
      std::chrono::duration_cast<std::chrono::nanoseconds>(closed_sids::ttl).count();
  c.add("a", 1000);
  c.add("a", 5000);  // keeps its first time
  c.add("b", 2000);
  EXPECT_TRUE(c.contains("a"));
  EXPECT_EQ(c.size(), 2u);
  c.expire(1000 + ttl);
  EXPECT_TRUE(c.contains("a"));
  c.expire(1001 + ttl);
  EXPECT_FALSE(c.contains("a"));
  EXPECT_TRUE(c.contains("b"));
  c.expire(2001 + ttl);
  EXPECT_EQ(c.size(), 0u);
  for (std::size_t i = 0; i < closed_sids::max_count + 5; ++i)
    c.add("s" + std::to_string(i), 10'000);
  EXPECT_EQ(c.size(), closed_sids::max_count);
  EXPECT_FALSE(c.contains("s4"));  // the oldest went first
  EXPECT_TRUE(c.contains("s5"));
}

TEST(Hub, SkipList) {
  fixture t;
  auto a = t.add("a");
  auto b = t.add("b");
  auto c = t.add("c");
  t.h.join("a", ch("r"));
  t.h.join("b", ch("r"));
  EXPECT_EQ(t.emit("room", {"r"}, {"a"}), 1u);
  EXPECT_EQ(t.emit("all", {}, {"a", "c", "not-connected"}), 1u);
  EXPECT_EQ(t.emit("sid", {"c"}, {"c"}), 0u);
  EXPECT_EQ(t.emit("rooms", {"r", "c"}, {"b"}), 2u);
  EXPECT_EQ(a->count(), 1u);
  EXPECT_EQ(b->count(), 2u);
  EXPECT_EQ(c->count(), 1u);
  EXPECT_EQ(a->got()[0].event, "rooms");
}

TEST(Hub, BroadcastStaysInItsNamespace) {
  fixture t;
  auto root = t.add("root", t.json, "/");
  auto chat = t.add("chat", t.sio, "/chat");
  EXPECT_EQ(t.emit("hi"), 1u);
  EXPECT_EQ(root->count(), 1u);
  EXPECT_EQ(chat->count(), 0u);
  publication p;
  p.event = "hey";
  p.data = "1";
  p.nsp = "/chat";
  EXPECT_EQ(t.h.publish(p), 1u);
  EXPECT_EQ(chat->got()[0], (decoded{"sio", "hey", "", 0, "1"}));
  // Rooms of another namespace report their plain name as topic.
  t.h.join("chat", ch("lobby", "/chat"));
  p.to = {"lobby"};
  EXPECT_EQ(t.h.publish(p), 1u);
  EXPECT_EQ(chat->got().back(), (decoded{"sio", "hey", "lobby", 1, "1"}));
}

TEST(Hub, PolicyPassedToDeliver) {
  fixture t;
  auto a = t.add("a");
  t.h.join("a", ch("volatile"));
  t.h.join("a", ch("plain"));
  t.h.set_room_policy(ch("volatile"), overflow_policy::drop_oldest);

  t.emit("x", {"volatile"});                                  // the room's policy
  t.emit("x", {"plain"});                                     // the default
  t.emit("x", {"volatile"}, {}, overflow_policy::disconnect);  // the emit's policy wins
  t.emit("x", {"plain"}, {}, overflow_policy::drop_oldest);
  t.emit("x", {}, {}, overflow_policy::drop_oldest);          // broadcast with a policy
  t.emit("x");                                                // broadcast without
  t.emit("x", {"a"}, {}, overflow_policy::drop_oldest);        // sid target
  using P = overflow_policy;
  EXPECT_EQ(a->policies(), (std::vector<P>{P::drop_oldest, P::disconnect, P::disconnect,
                                           P::drop_oldest, P::drop_oldest, P::disconnect,
                                           P::drop_oldest}));
}

TEST(Hub, RoomPolicyOutlivesMembersUntilCleared) {
  fixture t;
  auto a = t.add("a");
  t.h.set_room_policy(ch("positions"), overflow_policy::drop_oldest);  // before anyone joins
  t.h.join("a", ch("positions"));
  t.emit("p", {"positions"});
  t.h.leave("a", ch("positions"));
  t.h.join("a", ch("positions"));
  t.emit("p", {"positions"});
  t.h.set_room_policy(ch("positions"), std::nullopt);
  t.emit("p", {"positions"});
  EXPECT_EQ(a->policies(), (std::vector<overflow_policy>{overflow_policy::drop_oldest,
                                                          overflow_policy::drop_oldest,
                                                          overflow_policy::disconnect}));
  EXPECT_EQ(t.h.room_count(), 1u);
  t.h.leave("a", ch("positions"));
  EXPECT_EQ(t.h.room_count(), 0u);
}

TEST(Hub, EncoderReturningNothingDeliversNothing) {
  hub h;
  const encoder_id nothing =
      h.add_encoder([](const publication&, const publish_meta&) { return frame_ptr{}; });
  auto a = std::make_shared<recorder>("a", nothing);
  auto s = std::make_shared<recorder>("s", encoder_id{5});  // no encoder registered as 5
  h.add(a);
  h.add(s);
  EXPECT_EQ(h.publish(publication{"e", "{}"}), 0u);
  EXPECT_EQ(a->count(), 0u);
  EXPECT_EQ(s->count(), 0u);
}

TEST(Hub, MetaHasTimestamps) {
  hub h;
  std::vector<std::pair<std::string, std::int64_t>> seen;  // ts, publish_ns
  h.add_encoder([&](const publication&, const publish_meta& m) {
    seen.emplace_back(m.ts, m.publish_ns);
    return skyrelay::make_frame("x");
  });
  h.add(std::make_shared<recorder>("a"));
  for (int i = 0; i < 3; ++i) h.publish(publication{"e", "{}"});
  ASSERT_EQ(seen.size(), 3u);
  for (std::size_t i = 0; i < seen.size(); ++i) {
    const auto& ts = seen[i].first;
    // ISO-8601 UTC, such as 2026-01-01T00:00:00.000Z
    ASSERT_GE(ts.size(), 20u) << ts;
    EXPECT_EQ(ts[4], '-') << ts;
    EXPECT_EQ(ts[10], 'T') << ts;
    EXPECT_EQ(ts.back(), 'Z') << ts;
    if (i) EXPECT_GE(seen[i].second, seen[i - 1].second);
  }
}

// ---- concurrency ----------------------------------------------------------------------------

// Connections join, leave, come and go while publishers fan out. Each room has one publisher
// thread, and each connection may only ever join rooms of its own parity. Checked afterwards:
// nothing was delivered outside the allowed rooms, each connection saw each room's sequence
// strictly increasing, every delivery publish() counted arrived, and the membership views of
// rooms and connections agree.
TEST(Hub, ConcurrentMembershipAndPublishing) {
  fixture t;
  constexpr int conns = 48;
  constexpr int rooms = 8;
  constexpr int churn_threads = 4;
  constexpr int churn_iterations = 4000;
  constexpr int publishes_per_room = 1500;

  auto sid_of = [](int i) { return "c" + std::to_string(i); };
  auto room_of = [](int r) { return "room" + std::to_string(r); };

  std::mutex all_mu;
  std::vector<std::shared_ptr<recorder>> everyone;  // every recorder ever added
  auto remember = [&](std::shared_ptr<recorder> r) {
    std::lock_guard lock(all_mu);
    everyone.push_back(std::move(r));
  };
  for (int i = 0; i < conns; ++i) remember(t.add(sid_of(i)));

  std::atomic<std::size_t> counted{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < churn_threads; ++w) {
    threads.emplace_back([&, w] {
      unsigned state = 12345u + static_cast<unsigned>(w);
      auto rnd = [&state] {
        state = state * 1103515245u + 12345u;
        return (state >> 8) & 0xFFFF;
      };
      for (int i = 0; i < churn_iterations; ++i) {
        const int c = static_cast<int>(rnd() % conns);
        const int r = static_cast<int>(rnd() % (rooms / 2)) * 2 + c % 2;  // same parity as c
        switch (rnd() % 10) {
          case 0: {  // reconnect under the same sid
            t.h.remove(sid_of(c));
            auto fresh = std::make_shared<recorder>(sid_of(c));
            if (t.h.add(fresh)) remember(fresh);
            break;
          }
          case 1:
            counted += t.emit("direct", {sid_of(c)});
            break;
          case 2:
          case 3:
          case 4:
            t.h.leave(sid_of(c), ch(room_of(r)));
            break;
          default:
            t.h.join(sid_of(c), ch(room_of(r)));
        }
      }
    });
  }
  for (int r = 0; r < rooms; ++r) {
    threads.emplace_back([&, r] {
      for (int i = 0; i < publishes_per_room; ++i) counted += t.emit("tick", {room_of(r)});
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; i < 300; ++i) counted += t.emit("all");
  });
  for (auto& th : threads) th.join();

  std::size_t received = 0;
  for (const auto& rec : everyone) {
    const int c = std::stoi(rec->sid().substr(1));
    std::map<std::string, std::uint64_t> last_seq;
    for (const auto& d : rec->got()) {
      ++received;
      if (d.event != "tick") continue;
      const int r = std::stoi(d.topic.substr(4));
      EXPECT_EQ(r % 2, c % 2) << rec->sid() << " got " << d.topic;
      EXPECT_GT(d.seq, last_seq[d.topic]) << rec->sid() << " " << d.topic;
      last_seq[d.topic] = d.seq;
    }
  }
  EXPECT_EQ(received, counted.load());

  // Both views of membership agree.
  std::map<std::string, std::set<std::string>> by_conn, by_room;
  for (int i = 0; i < conns; ++i)
    for (const auto& room : names(t.h.rooms_of(sid_of(i)))) by_conn[room].insert(sid_of(i));
  for (int r = 0; r < rooms; ++r) {
    auto members = t.h.room_members(ch(room_of(r)));
    EXPECT_EQ(members.size(), t.h.room_size(ch(room_of(r))));
    if (!members.empty()) by_room[room_of(r)] = std::set<std::string>(members.begin(), members.end());
    EXPECT_EQ(std::set<std::string>(members.begin(), members.end()).size(), members.size())
        << "duplicate member in " << room_of(r);
  }
  EXPECT_EQ(by_conn, by_room);
  EXPECT_EQ(t.h.connection_count(), static_cast<std::size_t>(conns));

  for (int i = 0; i < conns; ++i) t.h.remove(sid_of(i));
  EXPECT_EQ(t.h.connection_count(), 0u);
  EXPECT_EQ(t.h.room_count(), 0u);
  for (int r = 0; r < rooms; ++r) EXPECT_EQ(t.h.room_size(ch(room_of(r))), 0u);
}

// ---- history and replay ---------------------------------------------------------------------

namespace {

// What a JSON-protocol subscribe got: the outcome and the replayed events as decoded.
struct subscribed_result {
  bool ok{false};
  skyrelay::subscribe_outcome outcome;
  std::vector<decoded> replay;
};

subscribed_result subscribe(hub& h, const std::string& sid, std::vector<std::string> topics,
                            std::optional<std::uint64_t> since = std::nullopt,
                            const std::string& epoch = {}) {
  subscribed_result r;
  r.ok = h.subscribe(sid, topics, since, epoch, [&](skyrelay::subscribe_outcome& o) {
    r.outcome = o;
    for (const auto& f : o.replay) r.replay.push_back(parse(f->bytes));
  });
  return r;
}

// Sets the history bounds, adds connection "a" and subscribes it to topic "w"; w's epoch.
std::string a_on_w(fixture& t, std::size_t max_events, std::chrono::milliseconds max_age) {
  t.h.set_history(max_events, max_age);
  t.add("a");
  return subscribe(t.h, "a", {"w"}).outcome.positions[0].epoch;
}

std::vector<std::uint64_t> seqs_of(const std::vector<decoded>& ds) {
  std::vector<std::uint64_t> out;
  for (const auto& d : ds) out.push_back(d.seq);
  return out;
}

}  // namespace

TEST(History, SubscribeReportsEachTopicsPosition) {
  fixture t;
  t.add("a");
  t.emit("e", {"x"});  // nobody in x yet: kept for later
  t.emit("e", {"x"});
  auto r = subscribe(t.h, "a", {"x", "fresh"});
  ASSERT_TRUE(r.ok);
  ASSERT_EQ(r.outcome.positions.size(), 2u);
  EXPECT_EQ(r.outcome.positions[0].seq, 2u);
  EXPECT_EQ(r.outcome.positions[1].seq, 0u);
  EXPECT_FALSE(r.outcome.positions[0].epoch.empty());
  EXPECT_NE(r.outcome.positions[0].epoch, r.outcome.positions[1].epoch);
  EXPECT_FALSE(r.outcome.resumed);
  EXPECT_TRUE(r.replay.empty());
  // Subscribing again reports the same epoch; an unknown sid subscribes nothing.
  EXPECT_EQ(subscribe(t.h, "a", {"x"}).outcome.positions[0].epoch, r.outcome.positions[0].epoch);
  EXPECT_FALSE(subscribe(t.h, "nobody", {"x"}).ok);
  EXPECT_EQ(t.h.room_size(ch("x")), 1u);
}

TEST(History, SinceReplaysExactlyTheMissedEventsInOrder) {
  fixture t;
  auto a = t.add("a");
  t.add("b");
  const auto first = subscribe(t.h, "a", {"w"});
  const std::string epoch = first.outcome.positions[0].epoch;
  for (int i = 1; i <= 6; ++i) t.emit("e" + std::to_string(i), {"w"}, i == 4 ? sids{"b"} : sids{});
  t.emit("other", {"v"});
  t.emit("both", {"w", "v"});  // several rooms: no seq, not part of w's sequence
  ASSERT_EQ(a->count(), 7u);   // 6 on w, and the two-room one

  // b comes back having seen seq 2 of w: gets 3..6 except the one that skipped it.
  auto r = subscribe(t.h, "b", {"w"}, 2, epoch);
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(r.outcome.resumed);
  EXPECT_TRUE(r.outcome.recovered) << r.outcome.reset;
  EXPECT_EQ(seqs_of(r.replay), (std::vector<std::uint64_t>{3, 5, 6}));
  EXPECT_EQ(r.replay[0], (decoded{"json", "e3", "w", 3, "{}"}));
  EXPECT_EQ(r.outcome.positions[0].seq, 6u);
  // Up to date: recovered, nothing to replay. From 0: everything kept.
  auto now = subscribe(t.h, "b", {"w"}, 6, epoch);
  EXPECT_TRUE(now.outcome.recovered);
  EXPECT_TRUE(now.replay.empty());
  EXPECT_EQ(seqs_of(subscribe(t.h, "a", {"w"}, 0, epoch).replay),
            (std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6}));
}

TEST(History, SinceThatCannotBeHonouredIsAResetWithAReason) {
  fixture t;
  const std::string epoch = a_on_w(t, 3, std::chrono::minutes(2));
  for (int i = 0; i < 5; ++i) t.emit("e", {"w"});  // 1, 2 fall out; 3, 4, 5 kept

  auto gap = subscribe(t.h, "a", {"w"}, 1, epoch);
  EXPECT_TRUE(gap.outcome.resumed);
  EXPECT_FALSE(gap.outcome.recovered);
  EXPECT_EQ(gap.outcome.reset, "history_gap");
  EXPECT_TRUE(gap.replay.empty());
  // seq 2 was the last one dropped: from 2 on, everything is still there.
  auto edge = subscribe(t.h, "a", {"w"}, 2, epoch);
  EXPECT_TRUE(edge.outcome.recovered);
  EXPECT_EQ(seqs_of(edge.replay), (std::vector<std::uint64_t>{3, 4, 5}));

  EXPECT_EQ(subscribe(t.h, "a", {"w"}, 6, epoch).outcome.reset, "ahead");
  EXPECT_EQ(subscribe(t.h, "a", {"w"}, 3, epoch + "x").outcome.reset, "epoch_changed");
}

TEST(History, EntriesExpireByAge) {
  fixture t;
  const std::string epoch = a_on_w(t, 100, std::chrono::milliseconds(40));
  t.emit("old", {"w"});
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  t.emit("new", {"w"});  // the old one is past the age bound
  EXPECT_EQ(subscribe(t.h, "a", {"w"}, 0, epoch).outcome.reset, "history_gap");
  auto r = subscribe(t.h, "a", {"w"}, 1, epoch);
  ASSERT_TRUE(r.outcome.recovered);
  EXPECT_EQ(r.replay, (std::vector<decoded>{{"json", "new", "w", 2, "{}"}}));
  EXPECT_EQ(t.h.history_entries(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  t.h.sweep();  // expiry without a publication
  EXPECT_EQ(t.h.history_entries(), 0u);
  EXPECT_EQ(subscribe(t.h, "a", {"w"}, 1, epoch).outcome.reset, "history_gap");
}

TEST(History, OffDropsEverythingButKeepsTheSequence) {
  fixture t;
  const std::string epoch = a_on_w(t, 0, std::chrono::minutes(2));
  t.emit("e", {"w"});
  t.emit("e", {"w"});
  EXPECT_EQ(t.h.history_entries(), 0u);
  EXPECT_EQ(t.h.position(ch("w")).seq, 2u);
  EXPECT_EQ(subscribe(t.h, "a", {"w"}, 1, epoch).outcome.reset, "history_gap");
  EXPECT_TRUE(subscribe(t.h, "a", {"w"}, 2, epoch).outcome.recovered);
  EXPECT_EQ(t.emit("e", {"nobody-here"}), 0u);  // no history, nobody: nothing
  EXPECT_EQ(t.h.position(ch("nobody-here")).seq, 0u);
}

TEST(History, AnIdleTopicIsForgottenAndComesBackWithANewEpoch) {
  fixture t;
  const std::string epoch = a_on_w(t, 10, std::chrono::milliseconds(30));
  t.emit("e", {"w"});
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  t.h.sweep();
  EXPECT_EQ(t.h.position(ch("w")).epoch, epoch);  // a member keeps the topic and its seq
  EXPECT_EQ(t.h.position(ch("w")).seq, 1u);
  t.h.leave("a", ch("w"));
  t.h.sweep();
  EXPECT_EQ(t.h.position(ch("w")).epoch, "");  // no member, no history: forgotten
  auto back = subscribe(t.h, "a", {"w"}, 1, epoch);
  EXPECT_EQ(back.outcome.reset, "epoch_changed");
  EXPECT_NE(back.outcome.positions[0].epoch, epoch);
  EXPECT_EQ(back.outcome.positions[0].seq, 0u);
}

// Ids no longer say delivery order across channels (order is per channel since 2026-12-06):
// within each channel, positions and ids grow at every connection.
TEST(History, EveryConnectionGetsEachChannelInOrder) {
  fixture t;
  constexpr int rooms = 4, per_thread = 400;
  std::vector<std::shared_ptr<recorder>> subs;
  for (int i = 0; i < 8; ++i) {
    subs.push_back(t.add("s" + std::to_string(i)));
    for (int r = 0; r < rooms; ++r)
      if ((i + r) % 2 == 0 || i == 0) t.h.join(subs.back()->sid(), ch("r" + std::to_string(r)));
  }
  std::vector<std::thread> publishers;
  for (int r = 0; r < rooms; ++r)
    publishers.emplace_back([&t, r] {
      for (int k = 0; k < per_thread; ++k)
        t.emit("e", k % 5 == 0 ? sids{} : sids{"r" + std::to_string(r)});
    });
  for (auto& p : publishers) p.join();
  for (const auto& s : subs) {
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> last;  // -> position, id
    for (const auto& f : s->frames()) {
      ASSERT_TRUE(f->positions);
      ASSERT_EQ(f->positions->size(), 1u);
      const auto& p = f->positions->front();
      auto& [pos, id] = last[p.broadcast ? "" : p.room];
      ASSERT_EQ(p.pos, pos + 1) << s->sid() << " " << p.room;  // present throughout
      ASSERT_GT(id_of(f), id) << s->sid();
      pos = p.pos;
      id = id_of(f);
    }
  }
  EXPECT_EQ(subs[0]->count(), static_cast<std::size_t>(rooms * per_thread));
}

// ---- dispatcher -----------------------------------------------------------------------------

namespace {

using cursor = std::vector<skyrelay::stream_point>;

// An SSE-style subscribe: the events replayed after `from`, or the reset reason, and the cursor
// the stream starts from.
struct after_result {
  std::vector<std::string> events;
  std::vector<frame_ptr> frames;
  std::string reset;
  cursor at;
};

after_result subscribe_after(hub& h, const std::string& sid, std::vector<std::string> topics,
                             std::optional<cursor> from) {
  after_result r;
  EXPECT_TRUE(h.subscribe_after(sid, topics, from,
                                [&](std::vector<frame_ptr>& frames, std::string_view reset,
                                    const cursor& at) {
                                  for (const auto& f : frames) r.events.push_back(parse(f->bytes).event);
                                  r.frames = frames;
                                  r.reset = std::string(reset);
                                  r.at = at;
                                }));
  return r;
}

// The cursor moved on by what a stream on `topics` was handed, as its writer does.
cursor advanced(cursor c, const std::vector<std::string>& topics,
                const std::vector<frame_ptr>& frames) {
  for (const auto& f : frames) {
    if (!f->positions) continue;
    for (const auto& p : *f->positions) {
      std::size_t i = 0;
      if (!p.broadcast) {
        auto it = std::find(topics.begin(), topics.end(), p.room);
        if (it == topics.end()) continue;
        i = 1 + static_cast<std::size_t>(it - topics.begin());
      }
      EXPECT_GT(p.pos, c[i].pos);
      c[i].pos = p.pos;
    }
  }
  return c;
}

}  // namespace

TEST(History, SubscribeAfterACursorReplaysTopicsAndBroadcasts) {
  fixture t;
  auto a = t.add("a");
  const std::vector<std::string> topics{"w", "v"};
  auto first = subscribe_after(t.h, "a", topics, std::nullopt);
  EXPECT_TRUE(first.events.empty());
  EXPECT_EQ(first.reset, "");
  ASSERT_EQ(first.at.size(), 3u);  // the broadcasts, w, v
  EXPECT_EQ(t.h.room_size(ch("w")), 1u);
  t.emit("seen", {"w"});
  const cursor from = advanced(first.at, topics, a->frames());
  EXPECT_EQ(from[1].pos, 1u);
  t.h.remove("a");  // the stream dropped
  t.emit("m1", {"v"});
  t.emit("m2", {});
  t.emit("not-mine", {"z"});
  t.emit("m3", {"w", "z"});
  t.emit("m4", {"v", "w"});  // one entry in both: replayed once
  t.add("b");
  auto r = subscribe_after(t.h, "b", topics, from);
  EXPECT_EQ(r.reset, "");
  EXPECT_EQ(r.at, from);
  EXPECT_EQ(r.events, (std::vector<std::string>{"m1", "m2", "m3", "m4"}));
  const cursor now = advanced(r.at, topics, r.frames);
  EXPECT_EQ(now[0].pos, 1u);  // m2
  EXPECT_EQ(now[1].pos, 3u);  // seen, m3, m4
  EXPECT_EQ(now[2].pos, 2u);  // m1, m4
  // From there, nothing is missing.
  t.add("c");
  auto again = subscribe_after(t.h, "c", topics, now);
  EXPECT_EQ(again.reset, "");
  EXPECT_TRUE(again.events.empty());
}

TEST(History, SubscribeAfterResetsWithAReason) {
  fixture t;
  t.h.set_history(2, std::chrono::minutes(2));
  t.add("a");
  const cursor start = subscribe_after(t.h, "a", {"w"}, std::nullopt).at;
  for (int i = 0; i < 4; ++i) t.emit("e", {"w"});
  t.add("b");
  auto at = [&](std::uint64_t pos) {
    cursor c = start;
    c[1].pos = pos;
    return c;
  };
  EXPECT_EQ(subscribe_after(t.h, "b", {"w"}, at(1)).reset, "history_gap");
  auto ok = subscribe_after(t.h, "b", {"w"}, at(2));
  EXPECT_EQ(ok.reset, "");
  EXPECT_EQ(ok.events.size(), 2u);
  EXPECT_EQ(subscribe_after(t.h, "b", {"w"}, at(99)).reset, "ahead");
  cursor other = at(2);
  other[1].epoch = "another.1";
  EXPECT_EQ(subscribe_after(t.h, "b", {"w"}, other).reset, "epoch_changed");
  // A cursor of other topics (one point per channel, in order) is not this stream's.
  EXPECT_EQ(subscribe_after(t.h, "b", {"w", "v"}, at(2)).reset, "bad_id");
  auto gap = subscribe_after(t.h, "b", {"w"}, at(1));
  EXPECT_TRUE(gap.events.empty());
  EXPECT_EQ(gap.at[1].pos, 4u);  // where it stands now
  EXPECT_EQ(gap.at[1].epoch, start[1].epoch);
}

namespace {

// A stream on w sees one event and drops; `missed` is published after it left (or nothing),
// then w expires with no member and sweep() forgets it. The cursor the stream had.
cursor forgotten_after_seen(fixture& t, const char* missed) {
  t.h.set_history(10, std::chrono::milliseconds(30));
  auto a = t.add("a");
  const cursor first = subscribe_after(t.h, "a", {"w"}, std::nullopt).at;
  t.emit("seen", {"w"});
  const cursor from = advanced(first, {"w"}, a->frames());
  t.h.remove("a");
  if (missed) t.emit(missed, {"w"});
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  t.h.sweep();
  EXPECT_EQ(t.h.position(ch("w")).epoch, "");  // forgotten
  return from;
}

}  // namespace

TEST(History, ATopicForgottenWhileNobodyListenedIsAGap) {
  fixture t;
  const cursor from = forgotten_after_seen(t, "missed");
  t.add("b");
  auto gap = subscribe_after(t.h, "b", {"w"}, from);
  EXPECT_EQ(gap.reset, "history_gap");
  // Used again, the topic has a new epoch; the old cursor is still a gap.
  EXPECT_NE(gap.at[1].epoch, from[1].epoch);
  t.emit("new", {"w"});
  t.add("c");
  EXPECT_EQ(subscribe_after(t.h, "c", {"w"}, from).reset, "history_gap");
  // A stream that saw the latest event is fine.
  auto b = t.h.find("b");
  ASSERT_TRUE(b);
  const cursor latest = advanced(gap.at, {"w"}, static_cast<recorder&>(*b).frames());
  t.add("d");
  EXPECT_EQ(subscribe_after(t.h, "d", {"w"}, latest).reset, "");
}

TEST(History, ACursorAtTheEndOfAForgottenSequenceGoesOnIntoTheNext) {
  fixture t;
  const cursor from = forgotten_after_seen(t, nullptr);  // nothing missed by `from`
  t.emit("next", {"w"});  // a new sequence
  t.add("b");
  auto r = subscribe_after(t.h, "b", {"w"}, from);
  EXPECT_EQ(r.reset, "");
  EXPECT_EQ(r.events, (std::vector<std::string>{"next"}));
  EXPECT_NE(r.at[1].epoch, from[1].epoch);  // it starts at the new epoch's 0
  EXPECT_EQ(r.at[1].pos, 0u);
}

// What hub::resume (Socket.IO's former recovery by id) checked, through the SSE cursor: a
// stream on two rooms comes back and gets each room's and the broadcasts' events it missed,
// merged in id order, each once, without the skipped, other rooms', other namespaces' or
// other connections' events; and that is exactly what it was delivered live meanwhile.
TEST(History, ACursorReplaysRoomsAndBroadcastsInIdOrderOnce) {
  fixture t;
  auto a = t.add("a");
  t.add("b");
  auto o = t.add("o", t.sio, "/chat");
  const std::vector<std::string> topics{"r1", "r2"};
  const cursor first = subscribe_after(t.h, "a", topics, std::nullopt).at;
  t.emit("seen", {"r1"});
  const cursor from = advanced(first, topics, a->frames());  // a's client saw up to here
  t.emit("m1", {"r1"});
  t.emit("m2", {"r2"});
  t.emit("m3", {"r1", "r2"});  // both of a's rooms: once
  t.emit("m4", {});            // everyone in "/"
  t.emit("not-mine", {"r3"});  // a room a is not in
  publication other;
  other.event = "other-nsp";
  other.nsp = "/chat";
  t.h.publish(other);  // everyone in /chat
  t.emit("skipped", {"r1"}, {"a"});
  t.emit("to-b", {"b"});  // b alone
  std::vector<std::string> live;
  for (const auto& d : a->got())
    if (d.event != "seen") live.push_back(d.event);
  auto r = subscribe_after(t.h, "a", topics, from);
  EXPECT_EQ(r.reset, "");
  EXPECT_EQ(r.events, (std::vector<std::string>{"m1", "m2", "m3", "m4"}));
  std::vector<std::uint64_t> ids;
  for (const auto& f : r.frames) ids.push_back(id_of(f));
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(live, r.events);  // the hub kept delivering to it meanwhile
  EXPECT_EQ(o->count(), 1u);
}

// A stream that joins late, from the cursor it was given then, gets only what came after.
TEST(History, ACursorFromAJoinSkipsWhatCameBefore) {
  fixture t;
  t.add("a");
  t.emit("before-connect", {});
  t.emit("before-join", {"r"});
  t.emit("before-join", {"r"});
  t.add("late");
  auto joined = subscribe_after(t.h, "late", {"r"}, std::nullopt);
  EXPECT_TRUE(joined.events.empty());
  t.emit("after", {"r"});
  t.add("late2");
  EXPECT_EQ(subscribe_after(t.h, "late2", {"r"}, joined.at).events,
            (std::vector<std::string>{"after"}));
}

// A cursor whose events history lost, in a room or in the broadcasts, is a gap.
TEST(History, ACursorIsAGapWhenHistoryLostSomething) {
  fixture t;
  t.h.set_history(2, std::chrono::minutes(2));
  auto a = t.add("a");
  const cursor first = subscribe_after(t.h, "a", {"r"}, std::nullopt).at;
  t.emit("seen", {"r"});
  const cursor from = advanced(first, {"r"}, a->frames());
  t.emit("m1", {"r"});
  t.emit("m2", {"r"});
  EXPECT_EQ(subscribe_after(t.h, "a", {"r"}, from).reset, "");  // two kept, two missed
  t.emit("m3", {"r"});  // m1 falls out
  EXPECT_EQ(subscribe_after(t.h, "a", {"r"}, from).reset, "history_gap");
  cursor saw_m1 = from;
  ++saw_m1[1].pos;  // a client that saw m1 can still come back
  EXPECT_EQ(subscribe_after(t.h, "a", {"r"}, saw_m1).events,
            (std::vector<std::string>{"m2", "m3"}));
  // Broadcasts count too.
  t.emit("seen-b", {});
  const cursor bfrom = subscribe_after(t.h, "a", {"r"}, std::nullopt).at;  // after seen-b
  for (const char* e : {"x", "y", "z"}) t.emit(e, {});
  EXPECT_EQ(subscribe_after(t.h, "a", {"r"}, bfrom).reset, "history_gap");
}

TEST(Dispatcher, RunsJobsInPostingOrderOnOneThread) {
  dispatcher d(10000);
  d.start();
  std::vector<int> order;  // touched only by the worker until stop() joins it
  std::set<std::thread::id> workers;
  for (int i = 0; i < 5000; ++i) {
    ASSERT_TRUE(d.post([&, i] {
      order.push_back(i);
      workers.insert(std::this_thread::get_id());
    }));
  }
  d.stop();
  ASSERT_EQ(order.size(), 5000u);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(order[i], i);
  EXPECT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers.count(std::this_thread::get_id()), 0u);
}

TEST(Dispatcher, BoundWhileTheWorkerIsBlocked) {
  dispatcher d(3);
  d.start();
  std::promise<void> running;
  std::promise<void> release;
  auto released = release.get_future().share();
  std::vector<std::string> ran;  // worker only, read after stop()
  ASSERT_TRUE(d.post([&] {
    running.set_value();
    released.wait();
    ran.push_back("blocker");
  }));
  running.get_future().wait();  // the worker holds the blocker: the queue is empty
  EXPECT_EQ(d.queued(), 0u);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(d.post([&, i] { ran.push_back("q" + std::to_string(i)); })) << i;
  EXPECT_EQ(d.queued(), 3u);
  EXPECT_FALSE(d.post([&] { ran.push_back("refused"); }));
  EXPECT_FALSE(d.post([&] { ran.push_back("refused"); }));
  // post_always ignores the bound, and the bound still holds for post afterwards.
  EXPECT_TRUE(d.post_always([&] { ran.push_back("always1"); }));
  EXPECT_TRUE(d.post_always([&] { ran.push_back("always2"); }));
  EXPECT_EQ(d.queued(), 5u);
  EXPECT_FALSE(d.post([&] { ran.push_back("refused"); }));
  release.set_value();
  d.stop();
  EXPECT_EQ(ran, (std::vector<std::string>{"blocker", "q0", "q1", "q2", "always1", "always2"}));
}

TEST(Dispatcher, StopRunsWhatIsQueuedThenRefuses) {
  std::atomic<int> ran{0};
  dispatcher d(100);
  d.start();
  std::promise<void> release;
  auto released = release.get_future().share();
  d.post([released] { released.wait(); });
  for (int i = 0; i < 50; ++i) d.post([&] { ran.fetch_add(1); });
  std::thread stopper([&] { d.stop(); });
  release.set_value();
  stopper.join();
  EXPECT_EQ(ran.load(), 50);
  EXPECT_EQ(d.queued(), 0u);
  EXPECT_FALSE(d.post([&] { ran.fetch_add(100); }));
  EXPECT_FALSE(d.post_always([&] { ran.fetch_add(100); }));
  d.stop();  // idempotent
  EXPECT_EQ(ran.load(), 50);
}

TEST(Dispatcher, RefusesBeforeStartAndCanRestart) {
  std::atomic<int> ran{0};
  dispatcher d(4);
  EXPECT_FALSE(d.post([&] { ran.fetch_add(1); }));
  EXPECT_FALSE(d.post_always([&] { ran.fetch_add(1); }));
  d.stop();  // stopping what never started is harmless
  d.start();
  d.start();  // starting twice is harmless
  EXPECT_TRUE(d.post([&] { ran.fetch_add(1); }));
  d.stop();
  EXPECT_EQ(ran.load(), 1);
  d.start();
  EXPECT_TRUE(d.post([&] { ran.fetch_add(10); }));
  d.stop();
  EXPECT_EQ(ran.load(), 11);
}

TEST(Dispatcher, DestructorRunsQueuedJobs) {
  std::atomic<int> ran{0};
  {
    dispatcher d(100);
    d.start();
    for (int i = 0; i < 20; ++i) d.post([&] { ran.fetch_add(1); });
  }
  EXPECT_EQ(ran.load(), 20);
}

TEST(Dispatcher, ManyPostersLoseNothingWithinTheBound) {
  dispatcher d(1 << 20);
  d.start();
  std::atomic<int> ran{0};
  std::vector<std::thread> posters;
  for (int p = 0; p < 4; ++p)
    posters.emplace_back([&] {
      for (int i = 0; i < 5000; ++i)
        if (!d.post([&] { ran.fetch_add(1); })) ADD_FAILURE() << "refused under the bound";
    });
  for (auto& th : posters) th.join();
  d.stop();
  EXPECT_EQ(ran.load(), 20000);
}

// Batches: the scope runs around each batch (at most max_batch jobs), jobs keep their posting
// order across batches, and a blocking job runs outside any scope.
TEST(Dispatcher, RunsBatchesInsideTheScopeAndBlockingJobsOutside) {
  dispatcher d(10000);
  bool in_scope = false;  // worker only
  std::vector<std::size_t> batches;
  std::vector<int> order;
  std::vector<bool> scoped;
  d.set_batch_scope([&](const std::function<void()>& run_jobs) {
    in_scope = true;
    const auto before = order.size();
    run_jobs();
    batches.push_back(order.size() - before);
    in_scope = false;
  });
  d.start();
  std::promise<void> running;
  std::promise<void> release;
  auto released = release.get_future().share();
  ASSERT_TRUE(d.post([&running, released] {  // the rest piles up behind it
    running.set_value();
    released.wait();
  }));
  running.get_future().wait();
  for (int i = 0; i < 300; ++i) {
    const auto kind = i == 100 ? dispatcher::job_kind::blocking : dispatcher::job_kind::app;
    ASSERT_TRUE(d.post([&, i] {
      order.push_back(i);
      scoped.push_back(in_scope);
    }, kind));
  }
  EXPECT_EQ(d.queued(), 300u);
  release.set_value();
  d.stop();
  ASSERT_EQ(order.size(), 300u);
  for (int i = 0; i < 300; ++i) {
    ASSERT_EQ(order[i], i);
    EXPECT_EQ(scoped[i], i != 100) << i;
  }
  EXPECT_LE(*std::max_element(batches.begin(), batches.end()), dispatcher::max_batch);
  EXPECT_LT(batches.size(), 300u);  // jobs that waited together ran in shared batches
}

