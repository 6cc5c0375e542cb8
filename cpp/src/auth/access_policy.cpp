#include "skyrelay/auth/access_policy.hpp"

#include <algorithm>
#include <stdexcept>

#include "skyrelay/auth/connection_auth.hpp"

namespace skyrelay::auth {

namespace {

void validate(const std::string& what, const std::string& name,
              const std::vector<std::string>& roles) {
  if (name.empty()) throw std::invalid_argument(what + " name must not be empty");
  if (roles.empty())
    throw std::invalid_argument(what + " \"" + name + "\": give at least one role");
  for (const auto& r : roles)
    if (r.empty()) throw std::invalid_argument(what + " \"" + name + "\": a role is empty");
}

bool meets(const std::vector<std::string>& needed, const std::vector<std::string>& held) {
  for (const auto& r : needed)
    if (std::find(held.begin(), held.end(), r) != held.end()) return true;
  return false;
}

access_denial denial(access_scope scope, std::string_view name,
                     const std::vector<std::string>& needed) {
  const std::string_view what = scope == access_scope::namespace_ ? "namespace"
                                : scope == access_scope::room     ? "room"
                                                                  : "event";
  std::string m(what);
  m += " \"";
  m += name;
  m += needed.size() == 1 ? "\" requires the role " : "\" requires one of the roles: ";
  for (std::size_t i = 0; i < needed.size(); ++i) {
    if (i) m += ", ";
    m += needed[i];
  }
  return {std::move(m), scope};
}

constexpr std::string_view subject_token = "{sub}";

// Greedy matching with one backtrack point: the last `*` seen and where its run ends. With a
// subject, each `{sub}` of the pattern is one literal step that compares the whole subject.
bool match(std::string_view pattern, std::string_view text, const std::string_view* subject) {
  std::size_t p = 0, t = 0;
  std::size_t star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    const bool at_subject = subject && pattern.substr(p).starts_with(subject_token);
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (at_subject ? text.substr(t).starts_with(*subject)
                          : p < pattern.size() && pattern[p] == text[t]) {
      p += at_subject ? subject_token.size() : 1;
      t += at_subject ? subject->size() : 1;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view text) noexcept {
  return match(pattern, text, nullptr);
}

bool glob_match_subject(std::string_view pattern, std::string_view text,
                        std::string_view subject) noexcept {
  if (subject.empty() && pattern.find(subject_token) != std::string_view::npos) return false;
  return match(pattern, text, &subject);
}

void access_policy::require_namespace(std::string nsp, std::vector<std::string> roles) {
  validate("namespace", nsp, roles);
  namespaces_[std::move(nsp)] = std::move(roles);
}

void access_policy::require_room(std::string nsp, std::string pattern,
                                 std::vector<std::string> roles) {
  validate("room", pattern, roles);
  if (nsp.empty()) throw std::invalid_argument("namespace name must not be empty");
  rooms_.push_back({std::move(nsp), std::move(pattern), std::move(roles)});
}

void access_policy::require_event(std::string nsp, std::string event,
                                  std::vector<std::string> roles) {
  validate("event", event, roles);
  if (nsp.empty()) throw std::invalid_argument("namespace name must not be empty");
  events_[std::move(nsp)][std::move(event)] = std::move(roles);
}

std::optional<access_denial> access_policy::check_namespace(
    std::string_view nsp, const std::vector<std::string>& roles) const {
  auto it = namespaces_.find(nsp);
  if (it == namespaces_.end() || meets(it->second, roles)) return std::nullopt;
  return denial(access_scope::namespace_, nsp, it->second);
}

std::optional<access_denial> access_policy::check_room(
    std::string_view nsp, std::string_view room, const std::vector<std::string>& roles) const {
  for (const auto& rule : rooms_)
    if (rule.nsp == nsp && glob_match(rule.pattern, room) && !meets(rule.roles, roles))
      return denial(access_scope::room, room, rule.roles);
  return std::nullopt;
}

std::optional<access_denial> access_policy::check_event(
    std::string_view nsp, std::string_view event, const std::vector<std::string>& roles) const {
  auto ns = events_.find(nsp);
  if (ns == events_.end()) return std::nullopt;
  auto it = ns->second.find(event);
  if (it == ns->second.end() || meets(it->second, roles)) return std::nullopt;
  return denial(access_scope::event, event, it->second);
}

std::optional<access_denial> access_policy::check_connect(
    std::string_view nsp, const std::vector<std::string>& rooms,
    const std::vector<std::string>& roles) const {
  if (auto refusal = check_namespace(nsp, roles)) return refusal;
  for (const auto& room : rooms)
    if (auto refusal = check_room(nsp, room, roles)) return refusal;
  return std::nullopt;
}

client_topic_policy::client_topic_policy(std::vector<std::string> patterns)
    : patterns_(std::move(patterns)) {
  for (const auto& p : patterns_)
    if (p.empty()) throw std::invalid_argument("a client_topics pattern must not be empty");
}

bool client_topic_policy::allows(std::string_view topic, std::string_view subject) const noexcept {
  for (const auto& p : patterns_)
    if (glob_match_subject(p, topic, subject)) return true;
  return false;
}

std::optional<access_denial> check_client_topics(const client_topic_policy* policy,
                                                 const std::vector<std::string>& topics,
                                                 const identity* id) {
  const std::string_view subject = id ? std::string_view(id->subject) : std::string_view();
  for (const auto& topic : topics) {
    if (policy && policy->allows(topic, subject)) continue;
    std::string m = "topic \"";
    m += topic;
    m += policy ? "\" is not open to clients: no pattern of the server's client_topics matches it"
                : "\" is not open to clients: the server's client_topics setting opens no topic";
    return access_denial{std::move(m), access_scope::client_topic};
  }
  return std::nullopt;
}

const std::vector<std::string>& connection_roles(const identity* id) noexcept {
  static const std::vector<std::string> none;
  return id ? id->roles : none;
}

}  // namespace skyrelay::auth
