// What a full outbox does with more frames: a publication's or a room's choice.
#pragma once

#include <cstdint>

namespace skyrelay {

// Overflow policy of a bounded outbox; see net/outbox.hpp.
enum class overflow_policy : std::uint8_t {
  disconnect,   // close the connection with close_code::slow_consumer (the default)
  drop_oldest,  // drop the oldest droppable queued frames; for volatile streams
};

}  // namespace skyrelay
