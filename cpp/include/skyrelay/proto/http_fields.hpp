// Checks on HTTP header fields that come from the application (the WSGI bridge's answers), so
// that no name or value can end the header block early and split the response (RFC 9110 5).
// Pure functions, no I/O.
#pragma once

#include <string_view>

namespace skyrelay::proto {

// A field name is a non-empty token: letters, digits and !#$%&'*+-.^_`|~ only.
bool valid_field_name(std::string_view name) noexcept;

// A field value holds no control character but HTAB: no CR, LF or NUL above all. Bytes from
// 0x80 up (obs-text, UTF-8) are allowed. Leading or trailing blanks are the caller's concern.
bool valid_field_value(std::string_view value) noexcept;

}  // namespace skyrelay::proto
