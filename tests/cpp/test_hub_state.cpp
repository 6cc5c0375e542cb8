// Keyed states: deltas carry only what changed, and a member that rebuilds the state from its
// full update and the deltas after it ends with the hub's state, whatever joins, resumes and
// updates from several threads interleave (hub.hpp "Keyed states", keyed_state.hpp).
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "hub_test_sink.hpp"
#include "skyrelay/hub/hub.hpp"
#include "skyrelay/hub/keyed_state.hpp"

using nlohmann::json;
using skyrelay::channel;
using skyrelay::frame;
using skyrelay::hub;
using skyrelay::keyed_state;
using skyrelay::publication;
using skyrelay::publish_meta;
using skyrelay::state_options;
using skyrelay::state_result;
using skyrelay::testing::sink;

namespace {

state_options opts(std::size_t max_keys = 100, std::size_t max_bytes = 4096) {
  state_options o;
  o.event = "status_update";
  o.key_name = "telescope_id";
  o.fields_name = "status";
  o.max_keys = max_keys;
  o.max_key_bytes = max_bytes;
  return o;
}

// A client's copy, rebuilt from the payloads it received, in order. Fails the test on a delta
// that comes before any full update.
struct copy {
  json state = json::object();
  bool whole{false};
  std::string pending_error;

  void apply(const json& p) {
    const bool full = p.at("full_update").get<bool>();
    if (full) {
      if (p.at("index") == 0) state = json::object();
      whole = true;
      if (!p.at("telescope_id").is_null()) state[p.at("telescope_id").get<std::string>()] =
          p.at("status");
      return;
    }
    if (!whole) pending_error = "a delta before the full update: " + p.dump();
    const auto key = p.at("telescope_id").get<std::string>();
    if (p.value("removed", false)) {
      state.erase(key);
      return;
    }
    for (const auto& name : p.at("changes")) state[key][name.get<std::string>()] =
        p.at("status").at(name.get<std::string>());
    if (!state.contains(key)) state[key] = json::object();
  }
};

json rebuild(const sink& s) {
  copy c;
  for (const auto& b : s.bytes()) c.apply(json::parse(b));
  EXPECT_EQ(c.pending_error, "");
  return c.state;
}

struct state_fixture : ::testing::Test {
  hub h;
  channel room{"/", "telescopes"};

  state_fixture() {
    h.set_history(1000, std::chrono::minutes(1));
    // Frames are the payloads themselves, so the test reads what a client would.
    h.add_encoder([](const publication& p, const publish_meta& m) {
      return skyrelay::make_frame(p.data, m.publish_ns, true);
    });
    EXPECT_TRUE(h.define_state(room, opts()));
  }
  std::shared_ptr<sink> member(const std::string& sid) {
    auto s = std::make_shared<sink>(sid);
    EXPECT_TRUE(h.add(s));
    return s;
  }
  json current() { return json::parse(*h.state_fields(room, "status_update", nullptr)); }
};

}  // namespace

TEST(keyed_state, sends_only_changed_fields_and_nothing_when_equal) {
  keyed_state s(opts());
  std::string delta;
  bool added = false;
  ASSERT_EQ(s.update("seestar-001", R"({"battery_capacity":85,"temp":23.5,"gain":100})", delta,
                     added), state_result::changed);
  EXPECT_TRUE(added);
  ASSERT_EQ(s.update("seestar-001", R"({"battery_capacity":84,"temp":23.0,"gain":100.0})",
                     delta, added), state_result::changed);
  EXPECT_FALSE(added);
  EXPECT_EQ(json::parse(delta), json::parse(R"({"telescope_id":"seestar-001",
      "status":{"battery_capacity":84,"temp":23.0},"changes":["battery_capacity","temp"],
      "full_update":false})"));
  delta.clear();
  EXPECT_EQ(s.update("seestar-001", R"({"gain":100,"temp":23})", delta, added),
            state_result::unchanged);  // 100 == 100.0 and 23 == 23.0 as JSON values
  EXPECT_EQ(delta, "");
  EXPECT_EQ(json::parse(*s.get("seestar-001")),
            json::parse(R"({"battery_capacity":84,"temp":23.0,"gain":100})"));
  ASSERT_EQ(s.update("seestar-001", R"({"mode":{"a":[1,2]}})", delta, added),
            state_result::changed);
  EXPECT_EQ(s.update("seestar-001", R"({"mode":{"a":[1,2]}})", delta, added),
            state_result::unchanged);
}

TEST(keyed_state, remove_full_update_and_refusals) {
  keyed_state s(opts(2, 40));
  std::string delta;
  bool added = false;
  EXPECT_EQ(s.update("a", "[1]", delta, added), state_result::bad_fields);
  EXPECT_EQ(s.update("a", "{", delta, added), state_result::bad_fields);
  ASSERT_EQ(s.update("b", R"({"x":1})", delta, added), state_result::changed);
  ASSERT_EQ(s.update("a", "{}", delta, added), state_result::changed);  // a new key, no fields
  EXPECT_EQ(json::parse(delta)["changes"], json::array());
  EXPECT_EQ(s.update("c", R"({"x":1})", delta, added), state_result::too_many_keys);
  EXPECT_EQ(s.update("a", R"({"text":"far more than forty bytes of JSON"})", delta, added),
            state_result::too_large);
  EXPECT_EQ(*s.get("a"), "{}");  // a refusal changes nothing

  auto full = s.full();
  ASSERT_EQ(full.size(), 2u);
  EXPECT_EQ(json::parse(full[0]), json::parse(R"({"telescope_id":"a","status":{},
      "changes":[],"full_update":true,"index":0,"count":2})"));
  EXPECT_EQ(json::parse(full[1]), json::parse(R"({"telescope_id":"b","status":{"x":1},
      "changes":["x"],"full_update":true,"index":1,"count":2})"));

  ASSERT_EQ(s.remove("b", delta), state_result::changed);
  EXPECT_EQ(json::parse(delta)["removed"], true);
  EXPECT_EQ(s.remove("b", delta), state_result::unchanged);
  ASSERT_EQ(s.remove("a", delta), state_result::changed);
  full = s.full();
  ASSERT_EQ(full.size(), 1u);
  EXPECT_EQ(json::parse(full[0]), json::parse(R"({"telescope_id":null,"status":{},
      "changes":[],"full_update":true,"index":0,"count":0})"));
}

TEST(keyed_state, options_are_checked) {
  auto o = opts();
  EXPECT_EQ(skyrelay::check_state_options(o), "");
  o.fields_name = "changes";
  EXPECT_NE(skyrelay::check_state_options(o), "");
  o = opts();
  o.key_name = o.fields_name;
  EXPECT_NE(skyrelay::check_state_options(o), "");
  o = opts(0);
  EXPECT_NE(skyrelay::check_state_options(o), "");
}

TEST_F(state_fixture, join_gets_the_full_update_before_the_deltas) {
  auto early = member("early");
  ASSERT_TRUE(h.join("early", room));
  EXPECT_EQ(early->count(), 1u);  // the empty state's one payload
  auto r = h.update_state(room, "status_update", "t1", R"({"temp":1,"gain":2})");
  EXPECT_EQ(r.result, state_result::changed);
  EXPECT_EQ(r.delivered, 1u);
  r = h.update_state(room, "status_update", "t1", R"({"temp":1})");
  EXPECT_EQ(r.result, state_result::unchanged);
  EXPECT_EQ(r.delivered, 0u);
  EXPECT_EQ(early->count(), 2u);

  auto late = member("late");
  ASSERT_TRUE(h.join("late", room));
  ASSERT_TRUE(h.join("late", room));  // a member already: no second full update
  h.update_state(room, "status_update", "t2", R"({"temp":5})");
  h.remove_state_key(room, "status_update", "t1");
  EXPECT_EQ(late->count(), 3u);
  EXPECT_EQ(rebuild(*early), current());
  EXPECT_EQ(rebuild(*late), current());
  EXPECT_EQ(current(), json::parse(R"({"t2":{"temp":5}})"));

  EXPECT_FALSE(h.send_full_state(room, "", "nobody"));
  EXPECT_EQ(h.send_full_state(room, "", "late"), std::optional<std::size_t>(1));
  EXPECT_EQ(rebuild(*late), current());

  const auto c = h.state_stats();
  EXPECT_EQ(c.keys, 1u);
  EXPECT_EQ(c.deltas, 3u);
  EXPECT_EQ(c.unchanged, 1u);
  EXPECT_THROW(h.update_state(room, "other", "k", "{}"), std::invalid_argument);
  EXPECT_FALSE(h.define_state(room, opts(5)));  // one state per event, with its options
  EXPECT_TRUE(h.define_state(room, opts()));
}

TEST_F(state_fixture, subscribe_resume_and_sse_cursor) {
  auto a = member("a");
  h.update_state(room, "status_update", "t1", R"({"temp":1})");
  std::uint64_t seq = 0;
  std::string epoch;
  ASSERT_TRUE(h.subscribe("a", {"telescopes"}, std::nullopt, {}, [&](auto& o) {
    seq = o.positions.front().seq;
    epoch = o.positions.front().epoch;
  }));
  EXPECT_EQ(a->count(), 1u);
  h.update_state(room, "status_update", "t1", R"({"temp":2})");
  h.leave("a", room);
  h.update_state(room, "status_update", "t1", R"({"temp":3})");
  // A resume that recovers every delta gets them, and no full update.
  auto b = member("b");
  h.subscribe("b", {"telescopes"}, seq, epoch, [&](auto& o) {
    EXPECT_TRUE(o.recovered);
    for (const auto& fr : o.replay) b->deliver(fr, skyrelay::overflow_policy::disconnect);
  });
  EXPECT_EQ(b->count(), 2u);
  // One whose epoch is gone gets the full update.
  auto c = member("c");
  h.subscribe("c", {"telescopes"}, seq, "other-epoch", [](auto& o) { EXPECT_FALSE(o.recovered); });
  EXPECT_EQ(c->count(), 1u);
  EXPECT_EQ(rebuild(*c), current());
  // A caller that could not send the replay makes it a full update too.
  auto d = member("d");
  h.subscribe("d", {"telescopes"}, seq, epoch, [](auto& o) {
    o.replay.clear();
    o.recovered = false;
  });
  EXPECT_EQ(rebuild(*d), current());
  // SSE: a fresh stream and one with a cursor it cannot use get it; a whole resume does not.
  auto e = member("e");
  std::vector<skyrelay::stream_point> cursor;
  h.subscribe_after("e", {"telescopes"}, std::nullopt,
                    [&](auto&, std::string_view, const auto& at) { cursor = at; });
  EXPECT_EQ(rebuild(*e), current());
  h.update_state(room, "status_update", "t9", R"({"temp":9})");
  auto f = member("f");
  h.subscribe_after("f", {"telescopes"}, cursor, [&](auto& frames, std::string_view reset,
                                                      const auto&) {
    EXPECT_EQ(reset, "");
    for (const auto& fr : frames) f->deliver(fr, skyrelay::overflow_policy::disconnect);
  });
  EXPECT_EQ(f->count(), 1u);  // the one delta after the cursor
  auto g = member("g");
  cursor.back().epoch = "gone";
  h.subscribe_after("g", {"telescopes"}, cursor, [](auto&, std::string_view reset, const auto&) {
    EXPECT_NE(reset, "");
  });
  EXPECT_EQ(rebuild(*g), current());
}

TEST_F(state_fixture, members_rebuild_the_state_under_concurrent_updates_and_joins) {
  constexpr int writers = 4, per_writer = 2000, joiners = 24;
  std::vector<std::shared_ptr<sink>> members;
  for (int i = 0; i < joiners; ++i) members.push_back(member("m" + std::to_string(i)));
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&, w] {
      std::mt19937 rng(w);
      for (int i = 0; i < per_writer; ++i) {
        const std::string key = "k" + std::to_string(rng() % 12);
        if (rng() % 10 == 0) {
          h.remove_state_key(room, "status_update", key);
          continue;
        }
        json fields;
        fields["f" + std::to_string(rng() % 4)] = static_cast<int>(rng() % 3);
        fields["f" + std::to_string(rng() % 4)] = static_cast<int>(rng() % 3);
        h.update_state(room, "status_update", key, fields.dump());
      }
      ++done;
    });
  // Members join at spread-out moments while the writers run, some through subscribe().
  threads.emplace_back([&] {
    for (int i = 0; i < joiners; ++i) {
      const std::string sid = "m" + std::to_string(i);
      if (i % 2) h.join(sid, room);
      else h.subscribe(sid, {"telescopes"}, std::nullopt, {}, [](auto&) {});
      std::this_thread::yield();
    }
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(done.load(), writers);
  const json want = current();
  for (const auto& m : members) EXPECT_EQ(rebuild(*m), want) << m->sid();
  EXPECT_EQ(h.state_stats().keys, want.size());
}

TEST_F(state_fixture, a_room_with_a_state_is_not_forgotten_by_sweep) {
  h.set_history(1, std::chrono::milliseconds(0));
  h.update_state(room, "status_update", "t1", R"({"temp":1})");
  h.sweep();
  EXPECT_EQ(current(), json::parse(R"({"t1":{"temp":1}})"));
}
