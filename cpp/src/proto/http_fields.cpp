#include "skyrelay/proto/http_fields.hpp"

namespace skyrelay::proto {

bool valid_field_name(std::string_view name) noexcept {
  if (name.empty()) return false;
  for (unsigned char c : name) {
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum && std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) ==
                      std::string_view::npos)
      return false;
  }
  return true;
}

bool valid_field_value(std::string_view value) noexcept {
  for (unsigned char c : value)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  return true;
}

}  // namespace skyrelay::proto
