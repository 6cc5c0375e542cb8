// The hub's resolved route of one publication, shared by its two numberings: hub::publish
// (hub_publish.cpp) and hub::publish_ordered (hub_ordered.cpp). Private to cpp/src/hub.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "skyrelay/hub/hub.hpp"

namespace skyrelay {

struct hub::route {
  bool everyone{false};
  bool single{false};  // exactly one room named, nothing else: the room gets a seq
  std::vector<channel> rooms;  // named rooms (each once), with a log each in `logs`
  std::vector<log_ptr> logs;   // rooms' logs in `rooms` order, or the broadcasts' log
  std::vector<std::shared_ptr<subscriber>> singles;  // direct targets
  std::vector<std::shared_ptr<const member_list>> lists;
  std::optional<overflow_policy> room_policy;
};

}  // namespace skyrelay
