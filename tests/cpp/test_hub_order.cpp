// Order per channel: publishers on several threads to many rooms (one room, several rooms at
// once) and to single connections, while members check each room's order and each connection
// its direct messages' order.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "hub_test_sink.hpp"
#include "skyrelay/hub/hub.hpp"

using skyrelay::frame;
using skyrelay::frame_ptr;
using skyrelay::hub;
using skyrelay::publication;
using skyrelay::publish_meta;
using skyrelay::testing::sink;

namespace {

constexpr int rooms = 24;
constexpr int members = 32;
constexpr int publishers = 4;
constexpr int per_publisher = 3000;

std::string room_name(int r) { return "room-" + std::to_string(r); }

// The event name says who sent what: "<publisher>:<n>", n counting that publisher's
// publications of that kind from 1.
struct stamp {
  int publisher{0};
  int n{0};
};

stamp read_stamp(const std::string& bytes) {
  const auto colon = bytes.find(':');
  return {std::stoi(bytes.substr(0, colon)), std::stoi(bytes.substr(colon + 1))};
}

struct order_fixture {
  hub h;
  std::vector<std::shared_ptr<sink>> conns;
  std::vector<std::set<int>> rooms_of;  // which rooms each connection is in throughout

  order_fixture() {
    h.set_history(64, std::chrono::minutes(1));
    // The frame is the event name with the positions the hub gave (what SSE's writer reads).
    h.add_encoder([](const publication& p, const publish_meta& m) {
      return std::make_shared<const frame>(
          frame{p.event, m.publish_ns, true, 0, {}, 0, m.positions});
    });
    std::mt19937 rng(11);
    for (int c = 0; c < members; ++c) {
      conns.push_back(std::make_shared<sink>("c" + std::to_string(c)));
      EXPECT_TRUE(h.add(conns.back()));
      std::set<int> mine;
      while (mine.size() < 5) mine.insert(static_cast<int>(rng() % rooms));
      for (int r : mine) EXPECT_TRUE(h.join(conns.back()->sid(), {"/", room_name(r)}));
      rooms_of.push_back(std::move(mine));
    }
  }
};

// Each publisher sends, in a fixed random mix: to one room, to two or three rooms at once (in
// a random order of names, so lock order is the hub's business), and to one connection.
void publish_mix(hub& h, int who, std::vector<int>& directs_sent) {
  std::mt19937 rng(static_cast<unsigned>(100 + who));
  int rooms_n = 0;
  std::vector<int> direct_n(members, 0);
  for (int i = 0; i < per_publisher; ++i) {
    publication p;
    p.data = "1";
    const unsigned kind = rng() % 10;
    if (kind < 2) {
      const int c = static_cast<int>(rng() % members);
      p.event = std::to_string(who) + ":" + std::to_string(++direct_n[c]);
      p.to_conns = {"c" + std::to_string(c)};
      ++directs_sent[c];
    } else {
      p.event = std::to_string(who) + ":" + std::to_string(++rooms_n);
      const unsigned count = kind < 7 ? 1 : 2 + rng() % 2;
      while (p.to.size() < count) {
        auto name = room_name(static_cast<int>(rng() % rooms));
        if (std::find(p.to.begin(), p.to.end(), name) == p.to.end()) p.to.push_back(name);
      }
    }
    h.publish(p);
  }
}

}  // namespace

TEST(HubOrder, EveryMemberSeesEachRoomInOrderAndEachConnectionItsDirectMessages) {
  order_fixture t;
  std::vector<std::vector<int>> directs(publishers, std::vector<int>(members, 0));
  std::vector<std::thread> threads;
  for (int w = 0; w < publishers; ++w)
    threads.emplace_back([&, w] { publish_mix(t.h, w, directs[w]); });
  for (auto& th : threads) th.join();

  // Every room's last position, from the hub's own count (a fresh cursor).
  t.h.add(std::make_shared<sink>("reader"));
  std::vector<std::string> names;
  for (int r = 0; r < rooms; ++r) names.push_back(room_name(r));
  std::vector<skyrelay::stream_point> last;
  ASSERT_TRUE(t.h.subscribe_after("reader", names, std::nullopt,
                                  [&](auto&, std::string_view, const auto& now) { last = now; }));
  ASSERT_EQ(last.size(), static_cast<std::size_t>(rooms) + 1);

  for (int c = 0; c < members; ++c) {
    std::map<std::string, std::uint64_t> seen;  // room -> last position
    std::vector<int> direct_last(publishers, 0);
    std::vector<int> direct_count(publishers, 0);
    std::set<const frame*> distinct;
    for (const auto& f : t.conns[c]->frames()) {
      EXPECT_TRUE(distinct.insert(f.get()).second) << "a publication twice";
      const stamp s = read_stamp(f->bytes);
      if (!f->positions) {  // a direct message: in the order its publisher sent them
        EXPECT_EQ(s.n, direct_last[s.publisher] + 1) << "c" << c;
        direct_last[s.publisher] = s.n;
        ++direct_count[s.publisher];
        continue;
      }
      bool mine = false;
      for (const auto& p : *f->positions) {
        const int r = std::stoi(p.room.substr(5));
        if (!t.rooms_of[c].count(r)) continue;
        mine = true;
        // Present throughout: every position of the room, one after the other.
        EXPECT_EQ(p.pos, seen[p.room] + 1) << "c" << c << " " << p.room;
        seen[p.room] = p.pos;
      }
      EXPECT_TRUE(mine) << "c" << c << " got a room it is not in";
    }
    for (int r : t.rooms_of[c]) EXPECT_EQ(seen[room_name(r)], last[1 + r].pos) << room_name(r);
    for (int w = 0; w < publishers; ++w) EXPECT_EQ(direct_count[w], directs[w][c]);
  }
}

TEST(HubOrder, AMemberThatJoinsMidwayGetsEverythingAfterItsJoinInOrder) {
  order_fixture t;
  std::vector<std::vector<int>> directs(publishers, std::vector<int>(members, 0));
  std::atomic<bool> done{false};
  auto late = std::make_shared<sink>("late");
  ASSERT_TRUE(t.h.add(late));
  std::vector<std::thread> threads;
  for (int w = 0; w < publishers; ++w)
    threads.emplace_back([&, w] { publish_mix(t.h, w, directs[w]); });
  // Sweeps while rooms nobody is in are published to, so logs are retired and made again
  // under the publishers' feet (history lasts 1 ms here; bounded: 300 rounds).
  t.h.set_history(64, std::chrono::milliseconds(1));
  std::thread sweeper([&] {
    for (int i = 0; i < 300 && !done.load(); ++i) {
      publication p;
      p.event = "9:0";
      p.data = "1";
      p.to = {"lonely-" + std::to_string(i % 7), room_name(i % rooms)};
      t.h.publish(p);
      t.h.sweep();
    }
  });
  // Joins, leaves and joins again while the publishers run (bounded: 200 rounds).
  std::thread joiner([&] {
    for (int i = 0; i < 200 && !done.load(); ++i) {
      const skyrelay::channel ch{"/", room_name(i % rooms)};
      t.h.join("late", ch);
      if (i % 3 == 0) t.h.leave("late", ch);
      std::this_thread::yield();
    }
  });
  for (auto& th : threads) th.join();
  done = true;
  joiner.join();
  sweeper.join();
  // Within one membership, positions of a room only grow; no publication comes twice.
  std::map<std::string, std::uint64_t> seen;
  std::set<const frame*> distinct;
  for (const auto& f : late->frames()) {
    EXPECT_TRUE(distinct.insert(f.get()).second);
    ASSERT_TRUE(f->positions);
    for (const auto& p : *f->positions) {
      // The lonely rooms' logs are retired and made again (new epochs, positions from 1).
      if (p.room.rfind("room-", 0) != 0) continue;
      auto& last = seen[p.room];
      if (last) EXPECT_GT(p.pos, last) << p.room;
      last = p.pos;
    }
  }
  EXPECT_GT(late->count(), 0u);
}

TEST(HubOrder, PublicationsToOneRoomKeepTheirSeqUnderConcurrency) {
  // The JSON protocol's seq counts a room's own publications; several threads publishing to
  // one room still give every member 1, 2, 3, ... in order.
  hub h;
  h.add_encoder([](const publication& p, const publish_meta& m) {
    return std::make_shared<const frame>(
        frame{std::to_string(m.seq), m.publish_ns, true, 0, {}, 0, m.positions});
  });
  auto a = std::make_shared<sink>("a");
  ASSERT_TRUE(h.add(a));
  ASSERT_TRUE(h.join("a", {"/", "one"}));
  std::vector<std::thread> threads;
  for (int w = 0; w < publishers; ++w)
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        publication p;
        p.event = "e";
        p.data = "1";
        p.to = {"one"};
        h.publish(p);
      }
    });
  for (auto& th : threads) th.join();
  const auto got = a->bytes();
  ASSERT_EQ(got.size(), static_cast<std::size_t>(publishers) * 2000);
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], std::to_string(i + 1));
}
