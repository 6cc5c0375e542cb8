// Where a room lives: a namespace and a name, kept apart.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace skyrelay {

// A room of a Socket.IO namespace. The JSON protocol's and SSE's topics are rooms of "/".
// The two parts are separate values on purpose: no spelling of `room` can name a room of
// another namespace, and no room is ever a connection (direct delivery goes through the
// connection registry; see hub::publish).
struct channel {
  std::string nsp{"/"};
  std::string room;

  friend bool operator==(const channel&, const channel&) = default;
  friend auto operator<=>(const channel&, const channel&) = default;
};

// Combines both parts, so "/a" + "b#c" and "/a#b" + "c" hash (and compare) apart.
struct channel_hash {
  std::size_t operator()(const channel& c) const noexcept {
    const std::size_t h = std::hash<std::string>{}(c.nsp);
    return h ^ (std::hash<std::string>{}(c.room) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  }
};

}  // namespace skyrelay
