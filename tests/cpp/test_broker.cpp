// The broker seam: the memory broker, the channel transitions the hub reports, history reads.
#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "skyrelay/hub/broker.hpp"
#include "skyrelay/hub/hub.hpp"
#include "skyrelay/hub/memory_broker.hpp"
#include "hub_test_sink.hpp"

using skyrelay::broker;
using skyrelay::channel;
using skyrelay::frame_ptr;
using skyrelay::history_request;
using skyrelay::history_result;
using skyrelay::hub;
using skyrelay::memory_broker;
using skyrelay::overflow_policy;
using skyrelay::publication;
using skyrelay::publish_meta;
using skyrelay::subscriber;
using skyrelay::encoder_id;

namespace {

using collector = skyrelay::testing::sink;

// The test fake: the memory broker, counting what goes through it.
class counting_broker final : public broker {
 public:
  explicit counting_broker(hub& h) : inner_(h) {}
  std::size_t publish(const publication& p, publish_meta* out) override {
    ++publications;
    return inner_.publish(p, out);
  }
  void subscribe(const channel& ch) override { record(ch, true); }
  void unsubscribe(const channel& ch) override { record(ch, false); }
  history_result history(const history_request& q) override { return inner_.history(q); }

  std::vector<std::pair<channel, bool>> transitions() const {
    std::lock_guard lock(mu_);
    return transitions_;
  }
  int publications{0};

 private:
  void record(const channel& ch, bool in) {
    inner_.subscribe(ch);  // a no-op, called as the server would
    std::lock_guard lock(mu_);
    transitions_.emplace_back(ch, in);
  }
  memory_broker inner_;
  mutable std::mutex mu_;
  std::vector<std::pair<channel, bool>> transitions_;
};

struct fixture {
  hub h;
  encoder_id enc = h.add_encoder([](const publication& p, const publish_meta& m) {
    return std::make_shared<const skyrelay::frame>(skyrelay::frame{
        p.event + ":" + p.data + ":" + std::to_string(m.seq) + ":" + std::to_string(m.id),
        m.publish_ns, true, 0});
  });
  std::shared_ptr<collector> conn(const std::string& sid, const std::string& nsp = "/") {
    auto c = std::make_shared<collector>(sid, enc, nsp);
    EXPECT_TRUE(h.add(c));
    return c;
  }
  static publication to_room(const std::string& room, std::string data) {
    publication p;
    p.event = "e";
    p.data = std::move(data);
    p.to = {room};
    return p;
  }
};

using T = std::pair<channel, bool>;

}  // namespace

TEST(MemoryBroker, DeliversThroughTheHubInPublishOrder) {
  fixture f;
  memory_broker b(f.h);
  auto a = f.conn("a");
  ASSERT_TRUE(f.h.join("a", channel{"/", "r"}));
  std::uint64_t last_id = 0;
  for (int i = 1; i <= 5; ++i) {
    publish_meta meta;
    EXPECT_EQ(b.publish(fixture::to_room("r", std::to_string(i)), &meta), 1u);
    EXPECT_EQ(meta.seq, static_cast<std::uint64_t>(i));
    EXPECT_GT(meta.id, last_id);
    last_id = meta.id;
  }
  const auto got = a->bytes();
  ASSERT_EQ(got.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(got[i].substr(0, 6), "e:" + std::to_string(i + 1) + ":" + std::to_string(i + 1) + ":");
  // Not a member: nothing.
  auto other = f.conn("o");
  EXPECT_EQ(b.publish(fixture::to_room("elsewhere", "x"), nullptr), 0u);
  EXPECT_TRUE(other->bytes().empty());
}

TEST(MemoryBroker, HandsTheSamePublicationToTheDeliveryFunction) {
  fixture f;
  memory_broker b(f.h);
  const publication* seen = nullptr;
  b.set_delivery([&](const publication& p, publish_meta* meta) {
    seen = &p;
    if (meta) meta->seq = 42;
    return std::size_t{7};
  });
  const auto p = fixture::to_room("r", "1");
  publish_meta meta;
  EXPECT_EQ(b.publish(p, &meta), 7u);
  EXPECT_EQ(seen, &p) << "the publication must not be copied on the way";
  EXPECT_EQ(meta.seq, 42u);
}

TEST(MemoryBroker, MadeFromTheConfigValue) {
  hub h;
  EXPECT_NE(dynamic_cast<memory_broker*>(skyrelay::make_broker("", h).get()), nullptr);
  EXPECT_NE(dynamic_cast<memory_broker*>(skyrelay::make_broker("memory", h).get()), nullptr);
  try {
    skyrelay::make_broker("kafka://127.0.0.1:9092", h);
    FAIL() << "an unknown scheme must be refused";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown broker URL scheme"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("kafka://127.0.0.1:9092"), std::string::npos);
  }
}

TEST(BrokerChannels, FirstMemberInAndLastMemberOutAcrossNamespaces) {
  fixture f;
  counting_broker b(f.h);
  f.h.set_channel_listener([&](const channel& ch, bool in) {
    in ? b.subscribe(ch) : b.unsubscribe(ch);
  });
  f.conn("a");
  f.conn("b");
  f.conn("c", "/chat");
  const channel root_r{"/", "r"}, chat_r{"/chat", "r"}, root_s{"/", "s"};
  ASSERT_TRUE(f.h.join("a", root_r));
  ASSERT_TRUE(f.h.join("b", root_r));  // second member: no transition
  ASSERT_TRUE(f.h.join("a", root_r));  // already a member: none either
  ASSERT_TRUE(f.h.join("c", chat_r));  // same name, other namespace: its own channel
  EXPECT_EQ(b.transitions(), (std::vector<T>{{root_r, true}, {chat_r, true}}));
  ASSERT_TRUE(f.h.leave("a", root_r));  // b is still in it
  EXPECT_EQ(b.transitions().size(), 2u);
  ASSERT_TRUE(f.h.leave("b", root_r));
  EXPECT_FALSE(f.h.leave("b", root_r));  // not a member any more: nothing reported
  ASSERT_TRUE(f.h.join("a", root_s));
  f.h.remove("c");  // leaves every room of the connection
  f.h.remove("a");
  EXPECT_EQ(b.transitions(), (std::vector<T>{{root_r, true},
                                             {chat_r, true},
                                             {root_r, false},
                                             {root_s, true},
                                             {chat_r, false},
                                             {root_s, false}}));
  EXPECT_FALSE(f.h.join("a", root_r));  // gone: no transition
  EXPECT_EQ(b.transitions().size(), 6u);
}

TEST(BrokerChannels, ClientSubscribesAndKeptRoomsReportToo) {
  fixture f;
  counting_broker b(f.h);
  f.h.set_channel_listener([&](const channel& ch, bool in) {
    in ? b.subscribe(ch) : b.unsubscribe(ch);
  });
  f.conn("a");
  f.conn("s");
  // A room with a policy stays in the hub while empty; its membership still goes 0 -> 1 -> 0.
  f.h.set_room_policy(channel{"/", "kept"}, overflow_policy::drop_oldest);
  ASSERT_TRUE(f.h.subscribe("a", {"kept", "t"}, std::nullopt, {}, [](auto&) {}));
  ASSERT_TRUE(f.h.subscribe_after("s", {"t", "u"}, {}, [](auto&, auto, auto) {}));
  f.h.remove("a");
  ASSERT_TRUE(f.h.join("s", channel{"/", "kept"}));
  const channel kept{"/", "kept"}, t{"/", "t"}, u{"/", "u"};
  EXPECT_EQ(b.transitions(), (std::vector<T>{{kept, true},
                                             {t, true},
                                             {u, true},
                                             {kept, false},
                                             {kept, true}}));
}

TEST(BrokerHistory, ReadsBySeqAndById) {
  fixture f;
  f.h.set_history(3, std::chrono::minutes(1));
  memory_broker b(f.h);
  auto a = f.conn("a");
  std::vector<publish_meta> metas(5);
  for (int i = 0; i < 5; ++i) b.publish(fixture::to_room("r", std::to_string(i + 1)), &metas[i]);
  publication all;
  all.event = "all";
  all.data = "0";
  publish_meta all_meta;
  b.publish(all, &all_meta);

  history_request q;
  q.ch = channel{"/", "r"};
  q.since_seq = 3;
  const auto pos = f.h.position(q.ch);
  q.epoch = pos.epoch;
  auto r = b.history(q);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.position.seq, 5u);
  ASSERT_EQ(r.entries.size(), 2u);
  EXPECT_EQ(r.entries[0]->seq, 4u);
  EXPECT_EQ(r.entries[1]->pub.data, "5");

  q.since_seq = 1;  // seqs 1 and 2 fell out of the 3-entry history
  r = b.history(q);
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.reset, "history_gap");
  EXPECT_TRUE(r.entries.empty());
  q.since_seq = 9;
  EXPECT_EQ(b.history(q).reset, "ahead");
  q.since_seq = 4;
  q.epoch = "another";
  EXPECT_EQ(b.history(q).reset, "epoch_changed");

  history_request by_id;
  by_id.ch = channel{"/", "r"};
  by_id.after_id = metas[3].id;
  r = b.history(by_id);
  ASSERT_TRUE(r.complete);
  ASSERT_EQ(r.entries.size(), 1u);
  EXPECT_EQ(r.entries[0]->id, metas[4].id);
  by_id.after_id = metas[0].id;
  EXPECT_EQ(b.history(by_id).reset, "history_gap");
  by_id.after_id = all_meta.id + 1;
  EXPECT_EQ(b.history(by_id).reset, "ahead");

  history_request nsp;
  nsp.ch = channel{"/", ""};
  nsp.broadcasts = true;
  r = b.history(nsp);
  ASSERT_TRUE(r.complete);
  ASSERT_EQ(r.entries.size(), 1u);
  EXPECT_EQ(r.entries[0]->pub.event, "all");

  history_request never;
  never.ch = channel{"/chat", "r"};  // same name, another namespace: nothing published
  r = b.history(never);
  EXPECT_TRUE(r.complete);
  EXPECT_TRUE(r.entries.empty());
  EXPECT_EQ(r.position.seq, 0u);
}
