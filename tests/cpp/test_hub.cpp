#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "skyrelay/hub/dispatcher.hpp"
#include "skyrelay/hub/hub.hpp"

using namespace skyrelay;

namespace {

// Records what the hub delivers.
class recorder : public subscriber {
 public:
  explicit recorder(std::string sid) : subscriber(std::move(sid), wire_format::json_ws) {}
  void deliver(const frame_ptr& f, overflow_policy policy) override {
    std::lock_guard lock(mu_);
    frames_.push_back(f);
    policies_.push_back(policy);
  }
  std::vector<std::string> payloads() const {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (auto& f : frames_) out.push_back(f->bytes);
    return out;
  }
  std::vector<frame_ptr> frames() const {
    std::lock_guard lock(mu_);
    return frames_;
  }
  std::vector<overflow_policy> policies() const {
    std::lock_guard lock(mu_);
    return policies_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<frame_ptr> frames_;
  std::vector<overflow_policy> policies_;
};

struct fixture {
  hub h;
  std::atomic<int> encodes{0};
  fixture() {
    h.set_encoder(wire_format::json_ws, [this](const publication& p, const publish_meta& m) {
      encodes.fetch_add(1);
      return make_frame(p.event + "|" + std::string(m.topic) + "|" + std::to_string(m.seq) + "|" + p.data,
                        m.publish_ns);
    });
  }
  std::shared_ptr<recorder> add(const std::string& sid) {
    auto r = std::make_shared<recorder>(sid);
    EXPECT_TRUE(h.add(r));
    return r;
  }
  std::size_t publish(std::string event, std::vector<std::string> to = {},
                      std::vector<std::string> skip = {},
                      std::optional<overflow_policy> policy = std::nullopt) {
    return h.publish(publication{std::move(event), "{}", std::move(to), std::move(skip), policy});
  }
};

}  // namespace

TEST(Hub, AddRejectsDuplicateSid) {
  fixture f;
  f.add("a");
  EXPECT_FALSE(f.h.add(std::make_shared<recorder>("a")));
  EXPECT_EQ(f.h.connection_count(), 1u);
}

TEST(Hub, JoinLeaveRooms) {
  fixture f;
  f.add("a");
  EXPECT_TRUE(f.h.join("a", "r1"));
  EXPECT_TRUE(f.h.join("a", "r2"));
  EXPECT_TRUE(f.h.join("a", "r1"));  // idempotent
  EXPECT_FALSE(f.h.join("nobody", "r1"));
  EXPECT_EQ(f.h.rooms_of("a"), (std::vector<std::string>{"r1", "r2"}));
  EXPECT_EQ(f.h.room_size("r1"), 1u);
  EXPECT_TRUE(f.h.leave("a", "r1"));
  EXPECT_FALSE(f.h.leave("a", "r1"));
  EXPECT_EQ(f.h.room_size("r1"), 0u);
  EXPECT_EQ(f.h.room_count(), 1u);
}

TEST(Hub, RemoveCleansEveryRoom) {
  fixture f;
  auto a = f.add("a");
  f.add("b");
  f.h.join("a", "r1");
  f.h.join("a", "r2");
  f.h.join("b", "r2");
  f.h.remove("a");
  f.h.remove("a");  // idempotent
  EXPECT_EQ(f.h.connection_count(), 1u);
  EXPECT_EQ(f.h.room_size("r1"), 0u);
  EXPECT_EQ(f.h.room_size("r2"), 1u);
  EXPECT_EQ(f.h.room_count(), 1u);
  EXPECT_EQ(f.publish("x"), 1u);
  EXPECT_TRUE(a->payloads().empty());
}

TEST(Hub, PublishToEveryone) {
  fixture f;
  std::vector<std::shared_ptr<recorder>> all;
  for (int i = 0; i < 50; ++i) all.push_back(f.add("s" + std::to_string(i)));
  EXPECT_EQ(f.publish("hello"), 50u);
  for (auto& r : all) EXPECT_EQ(r->payloads(), (std::vector<std::string>{"hello||0|{}"}));
  EXPECT_EQ(f.encodes.load(), 1);  // one encoding shared by every connection
  // Literally the same frame object.
  EXPECT_EQ(all[0]->frames()[0].get(), all[49]->frames()[0].get());
}

TEST(Hub, RoomPublicationsCarryTopicAndSequence) {
  fixture f;
  auto a = f.add("a");
  auto b = f.add("b");
  f.h.join("a", "r");
  EXPECT_EQ(f.publish("e", {"r"}), 1u);
  EXPECT_EQ(f.publish("e", {"r"}), 1u);
  f.h.join("b", "other");
  EXPECT_EQ(f.publish("e", {"other"}), 1u);
  EXPECT_EQ(a->payloads(), (std::vector<std::string>{"e|r|1|{}", "e|r|2|{}"}));
  EXPECT_EQ(b->payloads(), (std::vector<std::string>{"e|other|1|{}"}));
}

TEST(Hub, SeveralRoomsDeliverOnceWithoutTopic) {
  fixture f;
  auto a = f.add("a");
  auto b = f.add("b");
  auto c = f.add("c");
  f.h.join("a", "r1");
  f.h.join("a", "r2");
  f.h.join("b", "r2");
  EXPECT_EQ(f.publish("m", {"r1", "r2", "missing"}), 2u);
  EXPECT_EQ(a->payloads(), (std::vector<std::string>{"m||0|{}"}));
  EXPECT_EQ(b->payloads().size(), 1u);
  EXPECT_TRUE(c->payloads().empty());
}

TEST(Hub, SidTargetsAndSkipList) {
  fixture f;
  auto a = f.add("a");
  auto b = f.add("b");
  auto c = f.add("c");
  f.h.join("a", "r");
  f.h.join("b", "r");
  EXPECT_EQ(f.publish("direct", {"c"}), 1u);
  EXPECT_EQ(c->payloads(), (std::vector<std::string>{"direct||0|{}"}));
  EXPECT_EQ(f.publish("room", {"r"}, {"a"}), 1u);
  EXPECT_TRUE(a->payloads().empty());
  EXPECT_EQ(b->payloads().size(), 1u);
  EXPECT_EQ(f.publish("all", {}, {"a", "b"}), 1u);
  EXPECT_EQ(c->payloads().size(), 2u);
  EXPECT_EQ(f.publish("nowhere", {"no-such-room"}), 0u);
}

TEST(Hub, PolicyPrecedence) {
  fixture f;
  auto a = f.add("a");
  f.h.join("a", "volatile");
  f.h.join("a", "plain");
  f.h.set_room_policy("volatile", overflow_policy::drop_oldest);
  f.publish("x", {"volatile"});
  f.publish("x", {"plain"});
  f.publish("x", {"volatile"}, {}, overflow_policy::disconnect);
  f.publish("x", {"plain"}, {}, overflow_policy::drop_oldest);
  EXPECT_EQ(a->policies(), (std::vector<overflow_policy>{
                               overflow_policy::drop_oldest, overflow_policy::disconnect,
                               overflow_policy::disconnect, overflow_policy::drop_oldest}));
  // A policy survives the room emptying; clearing it forgets the empty room.
  f.h.leave("a", "volatile");
  f.h.join("a", "volatile");
  f.publish("x", {"volatile"});
  EXPECT_EQ(a->policies().back(), overflow_policy::drop_oldest);
}

TEST(Hub, ConcurrentJoinLeavePublish) {
  fixture f;
  constexpr int conns = 64;
  std::vector<std::shared_ptr<recorder>> rs;
  for (int i = 0; i < conns; ++i) rs.push_back(f.add("c" + std::to_string(i)));
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3000; ++i) {
        std::string sid = "c" + std::to_string((i * 7 + t) % conns);
        std::string room = "room" + std::to_string(i % 5);
        if (i % 2) f.h.join(sid, room); else f.h.leave(sid, room);
      }
    });
  }
  std::thread publisher([&] {
    for (int i = 0; i < 2000 && !stop; ++i) f.publish("p", {"room" + std::to_string(i % 5)});
  });
  for (auto& t : threads) t.join();
  stop = true;
  publisher.join();
  // Membership seen by rooms matches membership seen by connections.
  std::size_t by_conn = 0, by_room = 0;
  for (int i = 0; i < conns; ++i) by_conn += f.h.rooms_of("c" + std::to_string(i)).size();
  for (int r = 0; r < 5; ++r) by_room += f.h.room_size("room" + std::to_string(r));
  EXPECT_EQ(by_conn, by_room);
  for (int i = 0; i < conns; ++i) f.h.remove("c" + std::to_string(i));
  EXPECT_EQ(f.h.room_count(), 0u);
  EXPECT_EQ(f.h.connection_count(), 0u);
}

TEST(Dispatcher, RunsInOrderAndBounds) {
  dispatcher d(2);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::vector<int> order;
  d.start();
  ASSERT_TRUE(d.post([&] {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return release; });
    order.push_back(0);
  }));
  // Wait until the worker picked up job 0, so the queue is empty again.
  for (int i = 0; i < 1000 && d.queued() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(d.post([&] { std::lock_guard l(mu); order.push_back(1); }));
  EXPECT_TRUE(d.post([&] { std::lock_guard l(mu); order.push_back(2); }));
  EXPECT_FALSE(d.post([&] { std::lock_guard l(mu); order.push_back(99); }));  // full
  EXPECT_TRUE(d.post_always([&] { std::lock_guard l(mu); order.push_back(3); }));
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  d.stop();  // runs what is queued first
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_FALSE(d.post([] {}));
}
