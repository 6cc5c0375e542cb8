// libFuzzer target: the room and client-topic pattern matcher against a slow reference.
// Input: pattern, text and subject separated by NUL bytes. A client names the text (its topic
// or room), so a wrong answer here is an authorization hole; the reference below is an obvious
// dynamic program over the expanded pattern, and any disagreement traps.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "skyrelay/auth/access_policy.hpp"

namespace {

// One step of an expanded pattern: a run of any characters, or one literal character.
struct step {
  bool star;
  char c;
};

// `{sub}` becomes the subject's characters, all literal (a `*` in a subject is no wildcard).
std::vector<step> expand(std::string_view pattern, const std::string_view* subject) {
  std::vector<step> out;
  for (std::size_t i = 0; i < pattern.size();) {
    if (subject && pattern.substr(i).starts_with("{sub}")) {
      for (char c : *subject) out.push_back({false, c});
      i += 5;
    } else {
      out.push_back({pattern[i] == '*', pattern[i]});
      ++i;
    }
  }
  return out;
}

bool reference(std::string_view pattern, std::string_view text, const std::string_view* subject) {
  if (subject && subject->empty() && pattern.find("{sub}") != std::string_view::npos)
    return false;
  const auto steps = expand(pattern, subject);
  // ok[j]: the steps so far match text[0, j).
  std::vector<char> ok(text.size() + 1, 0), next(text.size() + 1, 0);
  ok[0] = 1;
  for (const auto& s : steps) {
    std::fill(next.begin(), next.end(), 0);
    for (std::size_t j = 0; j <= text.size(); ++j) {
      if (s.star) next[j] = ok[j] || (j > 0 && next[j - 1]);
      else next[j] = j > 0 && ok[j - 1] && text[j - 1] == s.c;
    }
    ok.swap(next);
  }
  return ok[text.size()];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 600) return 0;  // the reference is quadratic; names are at most 256 bytes anyway
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto a = in.find('\0');
  if (a == std::string_view::npos) return 0;
  const auto b = in.find('\0', a + 1);
  const std::string_view pattern = in.substr(0, a);
  const std::string_view text = in.substr(a + 1, b == std::string_view::npos ? b : b - a - 1);
  const std::string_view subject = b == std::string_view::npos ? "" : in.substr(b + 1);
  namespace auth = skyrelay::auth;
  if (auth::glob_match(pattern, text) != reference(pattern, text, nullptr)) __builtin_trap();
  if (auth::glob_match_subject(pattern, text, subject) != reference(pattern, text, &subject))
    __builtin_trap();
  return 0;
}
