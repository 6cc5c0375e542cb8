// A cluster broker's sequence changes reach every local member as subscriber::reset, from the
// hub itself, in order with the channel's frames (hub::publish_ordered, hub::load_history).
// Also a Redis Cluster copy's fan-out to its other rooms and a later copy that only records.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "hub_test_sink.hpp"
#include "skyrelay/hub/hub.hpp"

using skyrelay::channel;
using skyrelay::frame;
using skyrelay::hub;
using skyrelay::ordered_channel;
using skyrelay::ordered_route;
using skyrelay::publication;
using skyrelay::publish_meta;
using skyrelay::sequence_reset;
using skyrelay::stored_entry;

namespace {

// Records frames (their event name) and resets ("reset:<reason>:<room or *>:<epoch>:<seq>")
// in one list, in the order the hub hands them.
class recorder : public skyrelay::testing::sink {
 public:
  using sink::sink;
  void deliver(const skyrelay::frame_ptr& f, skyrelay::overflow_policy) override {
    std::lock_guard lock(mu_);
    log_.push_back(f->bytes);
  }
  void reset(const sequence_reset& r) override {
    std::lock_guard lock(mu_);
    log_.push_back("reset:" + std::string(r.reason) + ":" +
                   (r.broadcasts ? std::string("*") : r.ch.room) + ":" + r.epoch + ":" +
                   std::to_string(r.seq));
  }
  std::vector<std::string> log() const {
    std::lock_guard lock(mu_);
    return log_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> log_;
};

struct resets_fixture : ::testing::Test {
  hub h;
  std::shared_ptr<recorder> a = std::make_shared<recorder>("a");
  std::shared_ptr<recorder> b = std::make_shared<recorder>("b");

  resets_fixture() {
    h.set_history(16, std::chrono::minutes(1));
    h.add_encoder([](const publication& p, const publish_meta& m) {
      return std::make_shared<const frame>(frame{p.event, m.publish_ns, true, 0, {}, 0,
                                                 m.positions});
    });
    h.add(a);
    h.add(b);
    h.join("a", channel{"/", "r"});  // b is in no room: it gets broadcasts only
  }

  void room(const std::string& event, const std::string& epoch, std::uint64_t seq) {
    publication p;
    p.event = event;
    p.to = {"r"};
    ordered_route r;
    r.single = true;
    r.channels.push_back(ordered_channel{channel{"/", "r"}, false, epoch, seq});
    h.publish_ordered(p, r);
  }
  void everyone(const std::string& event, const std::string& epoch, std::uint64_t seq) {
    publication p;
    p.event = event;
    ordered_route r;
    r.everyone = true;
    r.channels.push_back(ordered_channel{channel{"/", ""}, true, epoch, seq});
    h.publish_ordered(p, r);
  }
};

TEST_F(resets_fixture, ARestartedSequenceIsAnnouncedBeforeItsFirstFrame) {
  h.load_history(channel{"/", "r"}, false, "r.1", 0, {});  // a rename: nothing to say
  room("e1", "r.1", 1);
  room("e2", "r.1", 2);
  room("e3", "r.2", 1);  // Redis came back empty
  EXPECT_EQ(a->log(), (std::vector<std::string>{"reset::r:r.1:0", "e1", "e2",
                                                "reset:epoch_changed:r:r.2:0", "e3"}));
  EXPECT_TRUE(b->log().empty());  // not a member of r
}

TEST_F(resets_fixture, AHoleInOneEpochIsAHistoryGap) {
  h.load_history(channel{"/", "r"}, false, "r.1", 0, {});
  room("e1", "r.1", 1);
  room("e5", "r.1", 5);
  EXPECT_EQ(a->log(), (std::vector<std::string>{"reset::r:r.1:0", "e1",
                                                "reset:history_gap:r:r.1:4", "e5"}));
}

TEST_F(resets_fixture, ARoomItsMembersJoinedBeforeItWasLoadedGetsAGapIfItHadMovedOn) {
  // a joined while the node did not know where r stood (its own epoch, seq 0): Redis's tail
  // is history to it, never delivered.
  std::vector<stored_entry> tail(1);
  tail[0].seq = 7;
  tail[0].pub.event = "old";
  h.load_history(channel{"/", "r"}, false, "r.1", 7, std::move(tail));
  room("e8", "r.1", 8);
  EXPECT_EQ(a->log(), (std::vector<std::string>{"reset:history_gap:r:r.1:7", "e8"}));
}

TEST_F(resets_fixture, AnEmptyRoomTakesTheBrokersEpochSilentlyButAMovedLogIsAGap) {
  h.load_history(channel{"/", "r"}, false, "r.1", 0, {});
  EXPECT_EQ(a->log(), (std::vector<std::string>{"reset::r:r.1:0"}));  // a rename
  room("e1", "r.1", 1);
  h.load_history(channel{"/", "r"}, false, "r.1", 3, {});  // the node missed 2 and 3
  room("e4", "r.1", 4);
  EXPECT_EQ(a->log(), (std::vector<std::string>{"reset::r:r.1:0", "e1",
                                                "reset:history_gap:r:r.1:3", "e4"}));
}

TEST_F(resets_fixture, BroadcastsFirstSequenceIsARenameAndItsRestartReachesEveryone) {
  everyone("b500", "r.1", 500);  // the first broadcast this node sees: nobody's loss
  everyone("b501", "r.1", 501);
  everyone("c1", "r.2", 1);
  const std::vector<std::string> want{"reset::*:r.1:499", "b500", "b501",
                                      "reset:epoch_changed:*:r.2:0", "c1"};
  EXPECT_EQ(a->log(), want);
  EXPECT_EQ(b->log(), want);
}

TEST_F(resets_fixture, NoChangeNoReset) {
  h.load_history(channel{"/", "r"}, false, "r.1", 2, {});
  const auto before = a->log().size();
  room("e3", "r.1", 3);
  room("e4", "r.1", 4);
  h.load_history(channel{"/", "r"}, false, "r.1", 4, {});  // stands there already
  const auto log = a->log();
  EXPECT_EQ(std::vector<std::string>(log.begin() + before, log.end()),
            (std::vector<std::string>{"e3", "e4"}));
}

// Redis Cluster: one publication to rooms r and s on two shards comes as two copies. The first
// (numbered in r) also reaches s's members (`also`); the later one (numbered in s) only
// records it in s's log (`record_only`): every member gets it once, and s's log moves on.
TEST_F(resets_fixture, AClusterCopyReachesItsOtherRoomsAndALaterCopyOnlyRecords) {
  h.join("a", channel{"/", "s"});
  h.join("b", channel{"/", "s"});
  publication p;
  p.event = "m";
  p.to = {"r", "s"};
  ordered_route first;
  first.channels.push_back(ordered_channel{channel{"/", "r"}, false, "r.1", 1});
  first.also = {channel{"/", "r"}, channel{"/", "s"}};
  EXPECT_EQ(h.publish_ordered(p, first), 2u);  // a once (in both rooms), b once
  ordered_route later;
  later.channels.push_back(ordered_channel{channel{"/", "s"}, false, "r.1", 1});
  later.record_only = true;
  EXPECT_EQ(h.publish_ordered(p, later), 0u);
  for (const auto& member : {a, b}) {
    const auto log = member->log();
    EXPECT_EQ(std::count(log.begin(), log.end(), "m"), 1) << member->sid();
  }
  // s's log took Redis's epoch and stands at the later copy's seq: the next publication
  // numbered in s continues from there, without a reset.
  skyrelay::history_request q;
  q.ch = channel{"/", "s"};
  const auto got = h.read_history(q);
  EXPECT_EQ(got.position.seq, 1u);
  EXPECT_EQ(got.position.epoch, "r.1");
  const auto before = b->log().size();
  publication next;
  next.event = "n";
  next.to = {"s"};
  ordered_route r;
  r.single = true;
  r.channels.push_back(ordered_channel{channel{"/", "s"}, false, "r.1", 2});
  h.publish_ordered(next, r);
  const auto log = b->log();
  EXPECT_EQ(std::vector<std::string>(log.begin() + static_cast<long>(before), log.end()),
            std::vector<std::string>{"n"});
}

}  // namespace
