// The hub's encoder seam: transports register encoders, subscribers name theirs by id, and the
// hub encodes each publication at most once per encoder that has a recipient (live), or once
// per replayed entry for the resuming subscriber's encoder.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "skyrelay/hub/hub.hpp"
#include "hub_test_sink.hpp"

using skyrelay::encoder_id;
using skyrelay::frame;
using skyrelay::frame_ptr;
using skyrelay::hub;
using skyrelay::overflow_policy;
using skyrelay::publication;
using skyrelay::publish_meta;
using skyrelay::subscriber;

namespace {

using skyrelay::testing::sink;  // keeps every frame it is handed, live or direct

// A hub with three encoders standing for three transports ("a", "b", "c"). Each counts its
// calls and writes "<name>:<event>:<id>:<args or data>:<binary parts>".
struct three_transports {
  static constexpr std::size_t n = 3;
  hub h;
  std::array<std::atomic<int>, n> calls{};
  std::array<encoder_id, n> ids{};

  three_transports() {
    const char* names[n] = {"a", "b", "c"};
    for (std::size_t i = 0; i < n; ++i) {
      ids[i] = h.add_encoder([this, i, name = std::string(names[i])](const publication& p,
                                                                      const publish_meta& m) {
        calls[i].fetch_add(1);
        std::string bytes = name + ":" + p.event + ":" + std::to_string(m.id) + ":" +
                            (p.args ? *p.args : p.data) + ":";
        if (p.binary)
          for (const auto& part : *p.binary) bytes += "[" + part + "]";
        return std::make_shared<const frame>(frame{bytes, m.publish_ns, true, 0, {}});
      });
    }
  }
  std::shared_ptr<sink> add(const std::string& sid, std::size_t transport) {
    auto s = std::make_shared<sink>(sid, ids[transport]);
    EXPECT_TRUE(h.add(s)) << sid;
    return s;
  }
  std::size_t emit(const std::string& event, std::vector<std::string> to = {}) {
    publication p;
    p.event = event;
    p.data = "{}";
    p.to = std::move(to);
    return h.publish(p);
  }
  std::array<int, n> counts() const {
    return {calls[0].load(), calls[1].load(), calls[2].load()};
  }
};

std::string bytes_of(const frame_ptr& f) { return f ? f->bytes : std::string("(null)"); }

using cursor = std::vector<skyrelay::stream_point>;

// Where `sid`'s stream on room r stands now (an SSE subscribe without a cursor, which joins it).
cursor cursor_now(hub& h, const std::string& sid) {
  cursor at;
  EXPECT_TRUE(h.subscribe_after(sid, {"r"}, std::nullopt,
                                [&](auto&, std::string_view, const cursor& now) { at = now; }));
  EXPECT_EQ(at.size(), 2u);  // the broadcasts, r
  return at;
}

// What `sid`'s stream on room r is replayed after `from`, which must be complete.
std::vector<frame_ptr> replay_after(hub& h, const std::string& sid, const cursor& from) {
  std::vector<frame_ptr> got;
  EXPECT_TRUE(h.subscribe_after(sid, {"r"}, from,
                                [&](std::vector<frame_ptr>& frames, std::string_view reset,
                                    const cursor&) {
                                  EXPECT_EQ(reset, "");
                                  got = frames;
                                }));
  return got;
}

}  // namespace

TEST(HubEncoders, RegistrationGivesDenseIdsUpToTheBound) {
  hub h;
  auto none = [](const publication&, const publish_meta&) { return frame_ptr{}; };
  for (std::size_t i = 0; i < hub::max_encoders; ++i) {
    EXPECT_EQ(h.add_encoder(none), static_cast<encoder_id>(i));
    EXPECT_EQ(h.encoder_count(), i + 1);
  }
  EXPECT_THROW(h.add_encoder(none), std::length_error);
  EXPECT_EQ(h.encoder_count(), hub::max_encoders);
}

TEST(HubEncoders, OncePerEncoderThatHasRecipients) {
  three_transports t;
  std::vector<std::shared_ptr<sink>> as, bs;
  for (int i = 0; i < 5; ++i) {
    as.push_back(t.add("a" + std::to_string(i), 0));
    bs.push_back(t.add("b" + std::to_string(i), 1));
    t.h.join("a" + std::to_string(i), {"/", "a-only"});
  }
  // Everyone: one call for a, one for b, none for c (no subscriber of c).
  EXPECT_EQ(t.emit("all"), 10u);
  EXPECT_EQ(t.counts(), (std::array<int, 3>{1, 1, 0}));
  // Each encoder's frame is shared by its subscribers, and differs from the other's.
  for (const auto& s : as) EXPECT_EQ(s->frames().at(0).get(), as[0]->frames().at(0).get());
  for (const auto& s : bs) EXPECT_EQ(s->frames().at(0).get(), bs[0]->frames().at(0).get());
  EXPECT_EQ(bytes_of(as[0]->frames().at(0)).substr(0, 6), "a:all:");
  EXPECT_EQ(bytes_of(bs[0]->frames().at(0)).substr(0, 6), "b:all:");
  // A room whose members all use a: b is not called.
  EXPECT_EQ(t.emit("room", {"a-only"}), 5u);
  EXPECT_EQ(t.counts(), (std::array<int, 3>{2, 1, 0}));
  // A room and a direct target of b together: still once each.
  EXPECT_EQ(t.emit("mixed", {"a-only", "b3", "b4"}), 7u);
  EXPECT_EQ(t.counts(), (std::array<int, 3>{3, 2, 0}));
  EXPECT_EQ(bytes_of(bs[3]->frames().back()).substr(0, 8), "b:mixed:");
  EXPECT_EQ(bs[0]->frames().size(), 1u);
  // Nobody at all: nothing is encoded.
  EXPECT_EQ(t.emit("nobody", {"empty-room"}), 0u);
  EXPECT_EQ(t.counts(), (std::array<int, 3>{3, 2, 0}));
}

TEST(HubEncoders, AnEncoderThatMakesNothingIsAskedOnce) {
  hub h;
  std::atomic<int> calls{0};
  const encoder_id id = h.add_encoder([&](const publication&, const publish_meta&) {
    calls.fetch_add(1);
    return frame_ptr{};
  });
  std::vector<std::shared_ptr<sink>> subs;
  for (int i = 0; i < 8; ++i) {
    subs.push_back(std::make_shared<sink>("s" + std::to_string(i), id));
    ASSERT_TRUE(h.add(subs.back()));
  }
  publication p;
  p.event = "e";
  p.data = "{}";
  EXPECT_EQ(h.publish(p), 0u);
  EXPECT_EQ(calls.load(), 1);
  for (const auto& s : subs) EXPECT_TRUE(s->frames().empty());
}

TEST(HubEncoders, AnUnregisteredIdReceivesNothing) {
  three_transports t;
  auto a = t.add("a", 0);
  auto stray = std::make_shared<sink>("stray", encoder_id{7});
  ASSERT_TRUE(t.h.add(stray));
  t.h.join("a", {"/", "r"});
  t.h.join("stray", {"/", "r"});
  EXPECT_EQ(t.emit("e", {"r"}), 1u);
  EXPECT_EQ(a->frames().size(), 1u);
  EXPECT_TRUE(stray->frames().empty());
  EXPECT_EQ(t.counts(), (std::array<int, 3>{1, 0, 0}));
}

TEST(HubEncoders, ArgsAndBinaryPassThroughToTheEncoderAndThroughHistory) {
  three_transports t;
  auto a = t.add("a", 0);
  t.h.join("a", {"/", "r"});
  publication p;
  p.event = "bin";
  p.data = R"([1,"AAE="])";
  p.args = R"(1,{"_placeholder":true,"num":0})";
  p.binary = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"\x01\x02"});
  p.to = {"r"};
  ASSERT_EQ(t.h.publish(p), 1u);
  const std::string live = bytes_of(a->frames().at(0));
  EXPECT_NE(live.find(R"(:1,{"_placeholder":true,"num":0}:[)" "\x01\x02" "]"), std::string::npos)
      << live;
  // A subscribe from before it gets the same fields again, for its own encoder.
  std::vector<frame_ptr> replay;
  const std::string epoch = t.h.position({"/", "r"}).epoch;
  ASSERT_TRUE(t.h.subscribe("a", {"r"}, 0, epoch, [&](skyrelay::subscribe_outcome& o) {
    EXPECT_TRUE(o.recovered);
    replay = o.replay;
  }));
  ASSERT_EQ(replay.size(), 1u);
  EXPECT_EQ(bytes_of(replay[0]), live);
  EXPECT_NE(replay[0].get(), a->frames().at(0).get()) << "a replay is encoded again";
}

TEST(HubEncoders, ReplaysEncodeForTheResumingSubscribersEncoder) {
  three_transports t;
  auto a = t.add("a", 0);
  auto b = t.add("b", 1);
  t.h.join("a", {"/", "r"});
  t.h.join("b", {"/", "r"});
  for (int i = 0; i < 3; ++i) t.emit("m" + std::to_string(i), {"r"});
  ASSERT_EQ(t.counts(), (std::array<int, 3>{3, 3, 0}));

  // By an SSE cursor: b resumes after its first event of r, only b's encoder runs, once per
  // missed entry.
  cursor after_first = cursor_now(t.h, "b");
  after_first.at(1).pos = 1;
  const auto got = replay_after(t.h, "b", after_first);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(bytes_of(got[0]).substr(0, 5), "b:m1:");
  EXPECT_EQ(bytes_of(got[1]).substr(0, 5), "b:m2:");
  EXPECT_EQ(t.counts(), (std::array<int, 3>{3, 5, 0}));

  // By seq (the JSON protocol's `since`): a joins again from seq 1.
  const std::string epoch = t.h.position({"/", "r"}).epoch;
  std::vector<frame_ptr> since;
  ASSERT_TRUE(t.h.subscribe("a", {"r"}, 1, epoch, [&](skyrelay::subscribe_outcome& o) {
    EXPECT_TRUE(o.recovered);
    since = o.replay;
  }));
  ASSERT_EQ(since.size(), 2u);
  EXPECT_EQ(bytes_of(since[1]).substr(0, 5), "a:m2:");
  EXPECT_EQ(t.counts(), (std::array<int, 3>{5, 5, 0}));

  // By an SSE cursor from the start of r and of the broadcasts: a subscriber of c, an encoder
  // that never had a live recipient, gets every entry encoded by c.
  auto c = t.add("c", 2);
  cursor start = cursor_now(t.h, "c");
  for (auto& p : start) p.pos = 0;
  const auto after = replay_after(t.h, "c", start);
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(bytes_of(after[0]).substr(0, 5), "c:m0:");
  EXPECT_EQ(t.counts(), (std::array<int, 3>{5, 5, 3}));
  // Live again: now all three have a recipient.
  t.emit("m3", {"r"});
  EXPECT_EQ(t.counts(), (std::array<int, 3>{6, 6, 4}));
}

TEST(HubEncoders, AnEncoderAddedWhilePublishingServesLaterSubscribers) {
  three_transports t;
  auto a = t.add("a", 0);
  std::atomic<bool> stop{false};
  std::atomic<int> published{0};
  std::thread publisher([&] {
    // Bounded: at most 100k publications, and it stops when the main thread is done.
    for (int i = 0; i < 100'000 && !stop.load(); ++i) {
      t.emit("e");
      published.fetch_add(1);
    }
  });
  std::atomic<int> late_calls{0};
  const encoder_id late = t.h.add_encoder([&](const publication& p, const publish_meta& m) {
    late_calls.fetch_add(1);
    return std::make_shared<const frame>(frame{"late:" + p.event, m.publish_ns, true, 0, {}});
  });
  EXPECT_EQ(late, encoder_id{3});
  auto d = std::make_shared<sink>("d", late);
  ASSERT_TRUE(t.h.add(d));
  // Publications from now on reach d: wait for a few (bounded by count and time).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (d->frames().size() < 10 && std::chrono::steady_clock::now() < deadline &&
         published.load() < 100'000)
    std::this_thread::yield();
  stop = true;
  publisher.join();
  t.emit("after");  // at least one publication after d was added, whatever the timing
  const auto frames = d->frames();
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back()->bytes, "late:after");
  EXPECT_EQ(late_calls.load(), static_cast<int>(frames.size()));
  EXPECT_EQ(t.counts()[1], 0);
}
