// Room member lists: snapshots that a join extends without copying. A snapshot taken before a
// join must not change under its reader; a big room must hold every member once; joins racing
// with publications to the same room must deliver each publication to exactly the members that
// were in the room when it was routed (the TSan target runs this file too).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "hub_test_sink.hpp"
#include "skyrelay/hub/hub.hpp"
#include "skyrelay/hub/member_list.hpp"

using skyrelay::frame;
using skyrelay::hub;
using skyrelay::member_list;
using skyrelay::publication;
using skyrelay::publish_meta;
using skyrelay::testing::sink;

namespace {

std::vector<std::string> sids_of(const member_list& l) {
  std::vector<std::string> out;
  for (const auto& m : l) out.push_back(m->sid());
  return out;
}

}  // namespace

TEST(MemberList, OlderSnapshotsKeepTheirMembersAfterLaterJoins) {
  std::vector<std::shared_ptr<sink>> subs;
  for (int i = 0; i < 40; ++i) subs.push_back(std::make_shared<sink>("s" + std::to_string(i)));
  std::vector<member_list> snapshots{member_list{}};
  for (const auto& s : subs) snapshots.push_back(snapshots.back().with(s));
  for (std::size_t n = 0; n < snapshots.size(); ++n) {
    ASSERT_EQ(snapshots[n].size(), n);
    for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(snapshots[n][i].get(), subs[i].get());
  }
}

TEST(MemberList, ExtendingAnOlderSnapshotDoesNotOverwriteANewerOne) {
  auto a = std::make_shared<sink>("a"), b = std::make_shared<sink>("b"),
       c = std::make_shared<sink>("c");
  const member_list one = member_list{}.with(a);
  const member_list two = one.with(b);
  const member_list other = one.with(c);  // its slot 1 must not be two's slot 1
  EXPECT_EQ(sids_of(two), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(sids_of(other), (std::vector<std::string>{"a", "c"}));
}

TEST(MemberList, WithoutKeepsTheOthersInOrderAndLeavesTheSnapshotAlone) {
  std::vector<std::shared_ptr<sink>> subs;
  member_list l;
  for (int i = 0; i < 6; ++i) {
    subs.push_back(std::make_shared<sink>(std::to_string(i)));
    l = l.with(subs.back());
  }
  const member_list fewer = l.without(subs[2].get());
  EXPECT_EQ(sids_of(fewer), (std::vector<std::string>{"0", "1", "3", "4", "5"}));
  EXPECT_EQ(l.size(), 6u);
  // Joins after a leave go on from the new array, and the old snapshot still reads as before.
  const member_list more = fewer.with(subs[2]);
  EXPECT_EQ(sids_of(more), (std::vector<std::string>{"0", "1", "3", "4", "5", "2"}));
  EXPECT_EQ(sids_of(l), (std::vector<std::string>{"0", "1", "2", "3", "4", "5"}));
}

TEST(MemberList, ABigRoomHoldsEveryMemberOnceAndLosesLeaversOnly) {
  hub h;
  h.add_encoder([](const publication& p, const publish_meta& m) {
    return std::make_shared<const frame>(frame{p.event, m.publish_ns, true, 0, {}, 0, {}});
  });
  constexpr int n = 2000;
  std::vector<std::shared_ptr<sink>> subs;
  for (int i = 0; i < n; ++i) {
    subs.push_back(std::make_shared<sink>("m" + std::to_string(i)));
    ASSERT_TRUE(h.add(subs.back()));
    ASSERT_TRUE(h.join(subs.back()->sid(), {"/", "big"}));
  }
  EXPECT_EQ(h.room_size({"/", "big"}), std::size_t(n));
  for (int i = 0; i < n; i += 3) ASSERT_TRUE(h.leave(subs[i]->sid(), {"/", "big"}));
  publication p;
  p.event = "e";
  p.data = "1";
  p.to = {"big"};
  const std::size_t leavers = (n + 2) / 3;
  EXPECT_EQ(h.publish(p), n - leavers);
  for (int i = 0; i < n; ++i) EXPECT_EQ(subs[i]->count(), i % 3 ? 1u : 0u) << i;
  auto members = h.room_members({"/", "big"});
  EXPECT_EQ(members.size(), n - leavers);
  EXPECT_EQ(std::set<std::string>(members.begin(), members.end()).size(), members.size());
}

// One thread joins members one by one while another publishes to the room: every publication
// reaches a prefix of the join order (the members in the room when it was routed), never a
// member twice, and the members that joined first see every publication.
TEST(MemberList, JoinsRacingWithPublicationsDeliverToAPrefixOfTheJoinOrder) {
  hub h;
  h.add_encoder([](const publication& p, const publish_meta& m) {
    return std::make_shared<const frame>(frame{p.event, m.publish_ns, true, 0, {}, 0, {}});
  });
  constexpr int n = 600;
  constexpr int pubs = 400;
  std::vector<std::shared_ptr<sink>> subs;
  for (int i = 0; i < n; ++i) {
    subs.push_back(std::make_shared<sink>("j" + std::to_string(i)));
    ASSERT_TRUE(h.add(subs.back()));
  }
  ASSERT_TRUE(h.join(subs[0]->sid(), {"/", "r"}));
  std::atomic<bool> go{false};
  std::thread joiner([&] {
    while (!go.load()) std::this_thread::yield();
    for (int i = 1; i < n; ++i) h.join(subs[i]->sid(), {"/", "r"});
  });
  std::vector<std::size_t> reached(pubs);
  go.store(true);
  for (int k = 0; k < pubs; ++k) {
    publication p;
    p.event = std::to_string(k);
    p.data = "1";
    p.to = {"r"};
    reached[k] = h.publish(p);
  }
  joiner.join();
  EXPECT_EQ(subs[0]->count(), std::size_t(pubs));
  for (int k = 1; k < pubs; ++k) EXPECT_GE(reached[k], reached[k - 1]);  // the room only grows
  // Publication k reached exactly members 0 .. reached[k]-1 (joined in that order).
  for (int i = 0; i < n; ++i) {
    const auto got = subs[i]->bytes();
    const std::set<std::string> seen(got.begin(), got.end());
    ASSERT_EQ(seen.size(), got.size()) << "member " << i << " got a publication twice";
    for (int k = 0; k < pubs; ++k)
      ASSERT_EQ(seen.count(std::to_string(k)) == 1, std::size_t(i) < reached[k])
          << "publication " << k << " member " << i;
  }
}
