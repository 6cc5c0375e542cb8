// Idempotency keys: scoped to the publisher, bound to the body's digest, freed when a publish
// fails, bounded in time and count.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "skyrelay/net/idempotency_store.hpp"

using skyrelay::idempotency_store;
using status = idempotency_store::status;
using namespace std::chrono_literals;

namespace {

const auto t0 = idempotency_store::clock::time_point{} + 1h;
const auto body_a = idempotency_store::digest_of(R"({"event":"a"})");
const auto body_b = idempotency_store::digest_of(R"({"event":"b"})");

}  // namespace

TEST(IdempotencyStore, DigestIsSha256) {
  const auto d = idempotency_store::digest_of("abc");
  EXPECT_EQ(d[0], 0xba);
  EXPECT_EQ(d[1], 0x78);
  EXPECT_EQ(d[31], 0xad);
  EXPECT_NE(body_a, body_b);
}

TEST(IdempotencyStore, FirstUseReservesThenRepeatsGetTheAnswer) {
  idempotency_store s(5min, 100);
  auto first = s.begin("pub", "k", body_a, t0);
  ASSERT_EQ(first.what, status::fresh);
  ASSERT_TRUE(first.hold);
  EXPECT_EQ(s.begin("pub", "k", body_a, t0).what, status::in_progress);
  first.hold.finish("answer");
  EXPECT_FALSE(first.hold);
  auto again = s.begin("pub", "k", body_a, t0 + 1s);
  EXPECT_EQ(again.what, status::replay);
  EXPECT_EQ(again.answer, "answer");
  EXPECT_FALSE(again.hold);
}

TEST(IdempotencyStore, AnotherBodyIsAConflict) {
  idempotency_store s(5min, 100);
  auto first = s.begin("pub", "k", body_a, t0);
  EXPECT_EQ(s.begin("pub", "k", body_b, t0).what, status::conflict);  // even while in progress
  first.hold.finish("answer");
  EXPECT_EQ(s.begin("pub", "k", body_b, t0).what, status::conflict);
  EXPECT_EQ(s.begin("pub", "k", body_a, t0).what, status::replay);
}

TEST(IdempotencyStore, PublishersHaveTheirOwnKeys) {
  idempotency_store s(5min, 100);
  auto a = s.begin("sub:alice", "k", body_a, t0);
  auto b = s.begin("sub:bob", "k", body_b, t0);
  EXPECT_EQ(a.what, status::fresh);
  EXPECT_EQ(b.what, status::fresh);
  // The scope and the key cannot run into each other.
  EXPECT_EQ(s.begin("sub:alic", "ek", body_a, t0).what, status::fresh);
  EXPECT_EQ(s.begin("", "sub:alicek", body_a, t0).what, status::fresh);
  a.hold.finish("alice");
  b.hold.finish("bob");
  EXPECT_EQ(s.begin("sub:alice", "k", body_a, t0).answer, "alice");
  EXPECT_EQ(s.begin("sub:bob", "k", body_b, t0).answer, "bob");
}

TEST(IdempotencyStore, AnUnfinishedReservationFreesItsKey) {
  idempotency_store s(5min, 100);
  {
    auto failed = s.begin("pub", "k", body_a, t0);
    ASSERT_EQ(failed.what, status::fresh);
  }  // the publish failed: never finished
  EXPECT_EQ(s.size(), 0u);
  // A retry, even with another body, starts afresh.
  auto retry = s.begin("pub", "k", body_b, t0);
  EXPECT_EQ(retry.what, status::fresh);
  retry.hold.finish("ok");
  EXPECT_EQ(s.begin("pub", "k", body_b, t0).what, status::replay);
}

TEST(IdempotencyStore, MovedReservationsReleaseOnce) {
  idempotency_store s(5min, 100);
  idempotency_store::reservation held;
  {
    auto r = s.begin("pub", "k", body_a, t0);
    held = std::move(r.hold);
  }
  EXPECT_EQ(s.begin("pub", "k", body_a, t0).what, status::in_progress);
  held = idempotency_store::reservation();  // dropped: released
  EXPECT_EQ(s.begin("pub", "k", body_a, t0).what, status::fresh);
}

TEST(IdempotencyStore, KeysExpireAfterTheWindow) {
  idempotency_store s(5min, 100);
  s.begin("pub", "k", body_a, t0).hold.finish("old");
  EXPECT_EQ(s.begin("pub", "k", body_b, t0 + 5min - 1s).what, status::conflict);
  auto later = s.begin("pub", "k", body_b, t0 + 5min);
  EXPECT_EQ(later.what, status::fresh);
}

TEST(IdempotencyStore, BoundedByCountOldestFirst) {
  idempotency_store s(5min, 3);
  for (int i = 0; i < 10; ++i) s.begin("pub", std::to_string(i), body_a, t0).hold.finish("a");
  EXPECT_EQ(s.size(), 3u);
  EXPECT_EQ(s.begin("pub", "9", body_a, t0).what, status::replay);
  EXPECT_EQ(s.begin("pub", "0", body_a, t0).what, status::fresh);  // forgotten
  EXPECT_LE(s.size(), 3u);
}

TEST(IdempotencyStore, AStaleReservationDoesNotTouchANewerRequest) {
  idempotency_store s(5min, 2);
  auto old = s.begin("pub", "k", body_a, t0);
  // Evicted by the bound while in progress; another request takes the key.
  s.begin("pub", "x", body_a, t0).hold.finish("x");
  s.begin("pub", "y", body_a, t0).hold.finish("y");
  auto newer = s.begin("pub", "k", body_b, t0);
  ASSERT_EQ(newer.what, status::fresh);
  old.hold = idempotency_store::reservation();  // the old one fails: must not free "k"
  EXPECT_EQ(s.begin("pub", "k", body_b, t0).what, status::in_progress);
  newer.hold.finish("new");
  EXPECT_EQ(s.begin("pub", "k", body_b, t0).answer, "new");
}
