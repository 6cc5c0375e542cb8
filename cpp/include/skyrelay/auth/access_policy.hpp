// Role-based authorization (docs/api.md "Authorization"): which roles a connection needs to
// connect to a namespace, to be in a room, and to send an event. Checked in C++ on the I/O
// thread before anything reaches the application.
//
// A requirement is a list of roles of which the connection must hold at least one; roles come
// from the verified token's `roles` claim (auth::identity), or from the application's connect
// hook. A connection without roles meets no requirement.
//
// Rooms are named by patterns in which `*` stands for any run of characters (`well:*`,
// `*:private`, `*`); every other character is literal. Every rule whose pattern matches a room
// must be met, so a broad rule can only be narrowed by a more specific one, never widened.
// Namespaces and events are named exactly; for the JSON protocol and SSE the namespace is "/"
// (shared with Socket.IO's default namespace).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace skyrelay::auth {

struct identity;

// Whether `text` matches `pattern`, where `*` matches any run of characters (none included).
// Linear in the lengths for patterns with one `*`; at worst O(|pattern| * |text|).
bool glob_match(std::string_view pattern, std::string_view text) noexcept;

// glob_match, where each `{sub}` in `pattern` also stands for exactly the text of `subject`
// (a `*` in the subject is a literal character there). With an empty subject a pattern that
// has `{sub}` matches nothing.
bool glob_match_subject(std::string_view pattern, std::string_view text,
                        std::string_view subject) noexcept;

// Which kind of requirement refused (skyrelay_forbidden_total{scope}).
enum class access_scope : std::uint8_t { namespace_, room, event, client_topic };

// What was refused, for the error the client gets ("forbidden").
struct access_denial {
  std::string message;  // e.g. `room "well:7" requires one of the roles: operator, admin`
  access_scope scope;
};

class access_policy {
 public:
  // Throws std::invalid_argument for an empty role list, an empty role or an empty name.
  void require_namespace(std::string nsp, std::vector<std::string> roles);
  void require_room(std::string nsp, std::string pattern, std::vector<std::string> roles);
  void require_event(std::string nsp, std::string event, std::vector<std::string> roles);

  bool empty() const noexcept {
    return namespaces_.empty() && rooms_.empty() && events_.empty();
  }
  bool has_room_rules() const noexcept { return !rooms_.empty(); }

  // nullopt: allowed. `roles` are the connection's (see connection_roles).
  std::optional<access_denial> check_namespace(std::string_view nsp,
                                               const std::vector<std::string>& roles) const;
  std::optional<access_denial> check_room(std::string_view nsp, std::string_view room,
                                          const std::vector<std::string>& roles) const;
  std::optional<access_denial> check_event(std::string_view nsp, std::string_view event,
                                           const std::vector<std::string>& roles) const;
  // A handshake that connects to `nsp` and joins `rooms` at once: the namespace's requirement,
  // then each room's.
  std::optional<access_denial> check_connect(std::string_view nsp,
                                             const std::vector<std::string>& rooms,
                                             const std::vector<std::string>& roles) const;

 private:
  struct room_rule {
    std::string nsp;
    std::string pattern;
    std::vector<std::string> roles;
  };
  std::map<std::string, std::vector<std::string>, std::less<>> namespaces_;
  std::vector<room_rule> rooms_;
  using role_map = std::map<std::string, std::vector<std::string>, std::less<>>;
  std::map<std::string, role_map, std::less<>> events_;  // namespace -> event -> roles
};

// Which topics of the "/" namespace a client may subscribe to by name (Server(client_topics=...),
// docs/api.md "Client topics"): a JSON-protocol subscribe, /ws/<topic>, /sse/<topic> and the
// SSE `topics` query. Nothing else is governed here: a connection still receives broadcasts,
// its direct emits and the rooms the application joins it to. Role requirements
// (access_policy) apply on top: a subscription needs both.
//
// A topic is open when one pattern matches it (glob_match_subject, with the subject of the
// connection's token). No pattern: no topic is open. Immutable once built; any thread.
class client_topic_policy {
 public:
  // Throws std::invalid_argument for an empty pattern.
  explicit client_topic_policy(std::vector<std::string> patterns);

  // Whether `topic` is open to a connection whose token's subject is `subject` ("": none).
  bool allows(std::string_view topic, std::string_view subject) const noexcept;

 private:
  std::vector<std::string> patterns_;
};

// The first of `topics` that `policy` does not open to a connection with identity `id` (null:
// no token), as a denial of scope client_topic whose message names the setting; nullopt when
// every one is open. A null policy opens no topic.
std::optional<access_denial> check_client_topics(const client_topic_policy* policy,
                                                 const std::vector<std::string>& topics,
                                                 const identity* id);

// The roles of a connection's identity (an empty list without one).
const std::vector<std::string>& connection_roles(const identity* id) noexcept;

}  // namespace skyrelay::auth
