// Role requirements: glob patterns for rooms, any-of roles per rule, every matching room rule.
#include "skyrelay/auth/access_policy.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

#include "skyrelay/auth/connection_auth.hpp"

using skyrelay::auth::access_policy;
using skyrelay::auth::glob_match;
using Roles = std::vector<std::string>;

TEST(GlobMatch, LiteralsAndStars) {
  EXPECT_TRUE(glob_match("well:7", "well:7"));
  EXPECT_FALSE(glob_match("well:7", "well:70"));
  EXPECT_FALSE(glob_match("well:7", "well:"));
  EXPECT_TRUE(glob_match("well:*", "well:"));
  EXPECT_TRUE(glob_match("well:*", "well:7"));
  EXPECT_TRUE(glob_match("well:*", "well:7:pressure"));
  EXPECT_FALSE(glob_match("well:*", "wells:7"));
  EXPECT_FALSE(glob_match("well:*", "xwell:7"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_TRUE(glob_match("*", "anything at all"));
  EXPECT_TRUE(glob_match("*:private", "a:b:private"));
  EXPECT_FALSE(glob_match("*:private", "a:private:x"));
  EXPECT_TRUE(glob_match("a*b*c", "aXbYc"));
  EXPECT_TRUE(glob_match("a*b*c", "abbbc"));
  EXPECT_FALSE(glob_match("a*b*c", "acb"));
  EXPECT_TRUE(glob_match("**", "x"));
  EXPECT_FALSE(glob_match("", "x"));
  EXPECT_TRUE(glob_match("", ""));
  // Other characters that are wildcards elsewhere are literal here.
  EXPECT_FALSE(glob_match("well:?", "well:7"));
  EXPECT_TRUE(glob_match("well:?", "well:?"));
  EXPECT_FALSE(glob_match("[ab]", "a"));
}

TEST(GlobMatch, BacktrackingStaysCheap) {
  // A pattern made to backtrack: still answers (quadratic at worst, no recursion).
  std::string text(20000, 'a');
  EXPECT_FALSE(glob_match("*a*a*a*a*b", text));
  EXPECT_TRUE(glob_match("*a*a*a*a*", text));
}

TEST(AccessPolicy, NamespaceNeedsOneOfItsRoles) {
  access_policy p;
  p.require_namespace("/admin", {"admin", "ops"});
  EXPECT_TRUE(p.check_namespace("/", Roles{}) == std::nullopt);
  EXPECT_TRUE(p.check_namespace("/admin", Roles{"ops"}) == std::nullopt);
  EXPECT_TRUE(p.check_namespace("/admin", Roles{"viewer", "admin"}) == std::nullopt);
  auto d = p.check_namespace("/admin", Roles{"viewer"});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->message, "namespace \"/admin\" requires one of the roles: admin, ops");
  EXPECT_TRUE(p.check_namespace("/admin", Roles{}));
  // Exact names: no prefix or case folding.
  EXPECT_FALSE(p.check_namespace("/admin2", Roles{}));
  EXPECT_FALSE(p.check_namespace("/Admin", Roles{}));
  EXPECT_TRUE(p.check_namespace("/admin", Roles{"Admin"}));
}

TEST(AccessPolicy, EveryMatchingRoomRuleMustBeMet) {
  access_policy p;
  p.require_room("/", "well:*", {"operator", "admin"});
  p.require_room("/", "well:*:control", {"admin"});
  EXPECT_FALSE(p.check_room("/", "news", Roles{}));
  EXPECT_FALSE(p.check_room("/", "well:7", Roles{"operator"}));
  auto d = p.check_room("/", "well:7", Roles{"viewer"});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->message, "room \"well:7\" requires one of the roles: operator, admin");
  // The narrower rule cannot be escaped by meeting the broader one...
  d = p.check_room("/", "well:7:control", Roles{"operator"});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->message, "room \"well:7:control\" requires the role admin");
  // ...and both are met by admin.
  EXPECT_FALSE(p.check_room("/", "well:7:control", Roles{"admin"}));
  // Rules belong to their namespace.
  EXPECT_FALSE(p.check_room("/other", "well:7", Roles{}));
}

TEST(AccessPolicy, EventsPerNamespace) {
  access_policy p;
  p.require_event("/", "broadcast_announcement", {"admin"});
  p.require_event("/telescope", "slew", {"observer"});
  EXPECT_FALSE(p.check_event("/", "chat", Roles{}));
  EXPECT_TRUE(p.check_event("/", "broadcast_announcement", Roles{"user"}));
  EXPECT_FALSE(p.check_event("/", "broadcast_announcement", Roles{"admin"}));
  EXPECT_FALSE(p.check_event("/", "slew", Roles{}));  // another namespace's rule
  EXPECT_TRUE(p.check_event("/telescope", "slew", Roles{}));
  EXPECT_FALSE(p.check_event("/telescope", "slew", Roles{"observer"}));
}

TEST(AccessPolicy, RefusesEmptyRequirements) {
  access_policy p;
  EXPECT_TRUE(p.empty());
  EXPECT_THROW(p.require_namespace("/a", {}), std::invalid_argument);
  EXPECT_THROW(p.require_room("/", "x", {""}), std::invalid_argument);
  EXPECT_THROW(p.require_room("/", "", {"a"}), std::invalid_argument);
  EXPECT_THROW(p.require_event("", "e", {"a"}), std::invalid_argument);
  EXPECT_TRUE(p.empty());
  p.require_room("/", "x", {"a"});
  EXPECT_FALSE(p.empty());
  EXPECT_TRUE(p.has_room_rules());
}

TEST(AccessPolicy, RolesOfAConnection) {
  EXPECT_TRUE(skyrelay::auth::connection_roles(nullptr).empty());
  skyrelay::auth::identity id;
  id.roles = {"admin"};
  EXPECT_EQ(skyrelay::auth::connection_roles(&id), Roles{"admin"});
}

TEST(AccessPolicy, ConnectChecksTheNamespaceThenEachRoom) {
  access_policy p;
  p.require_room("/", "well:*", {"operator"});
  EXPECT_FALSE(p.check_connect("/", {"news", "well:1"}, Roles{"operator"}));
  auto d = p.check_connect("/", {"news", "well:1"}, Roles{"viewer"});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->scope, skyrelay::auth::access_scope::room);
  EXPECT_EQ(d->message, "room \"well:1\" requires the role operator");
  p.require_namespace("/", {"member"});
  d = p.check_connect("/", {"well:1"}, Roles{"viewer"});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->scope, skyrelay::auth::access_scope::namespace_);
  EXPECT_FALSE(p.check_event("/", "x", Roles{}));
}
