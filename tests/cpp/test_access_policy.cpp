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

using skyrelay::auth::glob_match_subject;

TEST(GlobMatchSubject, SubStandsForExactlyTheSubject) {
  EXPECT_TRUE(glob_match_subject("user:{sub}", "user:alice", "alice"));
  EXPECT_FALSE(glob_match_subject("user:{sub}", "user:bob", "alice"));
  EXPECT_FALSE(glob_match_subject("user:{sub}", "user:alice2", "alice"));
  EXPECT_FALSE(glob_match_subject("user:{sub}", "user:alic", "alice"));
  EXPECT_FALSE(glob_match_subject("user:{sub}", "user:", "alice"));
  EXPECT_TRUE(glob_match_subject("user:{sub}:*", "user:alice:inbox", "alice"));
  EXPECT_FALSE(glob_match_subject("user:{sub}:*", "user:bob:inbox", "alice"));
  EXPECT_TRUE(glob_match_subject("*:{sub}", "a:b:alice", "alice"));
  EXPECT_TRUE(glob_match_subject("{sub}{sub}", "abab", "ab"));
  EXPECT_FALSE(glob_match_subject("{sub}{sub}", "aba", "ab"));
  // After a failed try the star takes one more character and the subject is compared again.
  EXPECT_TRUE(glob_match_subject("*{sub}", "aab", "ab"));
  // Without {sub} it is glob_match.
  EXPECT_TRUE(glob_match_subject("well:*", "well:7", "alice"));
  EXPECT_FALSE(glob_match_subject("well:?", "well:7", "alice"));
}

TEST(GlobMatchSubject, TheSubjectIsLiteral) {
  // A subject with a star opens no other topic: it is compared character for character.
  EXPECT_FALSE(glob_match_subject("user:{sub}", "user:bob", "*"));
  EXPECT_TRUE(glob_match_subject("user:{sub}", "user:*", "*"));
  EXPECT_FALSE(glob_match_subject("user:{sub}", "user:a{sub}", "a"));
  EXPECT_TRUE(glob_match_subject("user:{sub}", "user:{sub}", "{sub}"));
}

TEST(GlobMatchSubject, NoSubjectMatchesNoPatternWithSub) {
  EXPECT_FALSE(glob_match_subject("user:{sub}", "user:", ""));
  EXPECT_FALSE(glob_match_subject("{sub}", "", ""));
  EXPECT_FALSE(glob_match_subject("*{sub}*", "anything", ""));
  EXPECT_TRUE(glob_match_subject("news", "news", ""));
  // In a room rule (glob_match) `{sub}` is five literal characters.
  EXPECT_TRUE(glob_match("user:{sub}", "user:{sub}"));
  EXPECT_FALSE(glob_match("user:{sub}", "user:alice"));
}

TEST(ClientTopics, NullPolicyOpensNothing) {
  using skyrelay::auth::check_client_topics;
  EXPECT_FALSE(check_client_topics(nullptr, {}, nullptr));
  auto d = check_client_topics(nullptr, {"news"}, nullptr);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->scope, skyrelay::auth::access_scope::client_topic);
  EXPECT_NE(d->message.find("\"news\""), std::string::npos);
  EXPECT_NE(d->message.find("client_topics"), std::string::npos);
}

TEST(ClientTopics, PatternsAndTheConnectionsSubject) {
  using skyrelay::auth::check_client_topics;
  skyrelay::auth::client_topic_policy p({"news", "well:*", "user:{sub}"});
  skyrelay::auth::identity alice;
  alice.subject = "alice";
  EXPECT_FALSE(check_client_topics(&p, {"news", "well:7", "user:alice"}, &alice));
  auto d = check_client_topics(&p, {"news", "user:bob"}, &alice);
  ASSERT_TRUE(d);
  EXPECT_NE(d->message.find("\"user:bob\""), std::string::npos);
  EXPECT_NE(d->message.find("client_topics"), std::string::npos);
  EXPECT_TRUE(check_client_topics(&p, {"newsx"}, &alice));
  EXPECT_TRUE(check_client_topics(&p, {"wells:7"}, &alice));
  // Without a token (or a token without sub) no {sub} pattern matches.
  EXPECT_TRUE(check_client_topics(&p, {"user:"}, nullptr));
  skyrelay::auth::identity anonymous;
  EXPECT_TRUE(check_client_topics(&p, {"user:"}, &anonymous));
  EXPECT_FALSE(check_client_topics(&p, {"news"}, nullptr));
  EXPECT_THROW(skyrelay::auth::client_topic_policy({"ok", ""}), std::invalid_argument);
}

TEST(ClientTopics, StarOpensEverything) {
  skyrelay::auth::client_topic_policy p({"*"});
  EXPECT_FALSE(skyrelay::auth::check_client_topics(&p, {"admins", "/x#y", "a"}, nullptr));
}
