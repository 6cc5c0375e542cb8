// Time helpers shared by the core.
#pragma once

#include <cstdint>
#include <string>

namespace skyrelay {

// Monotonic time in nanoseconds (CLOCK_MONOTONIC), comparable across processes on one host.
std::int64_t steady_ns() noexcept;

// Current UTC time as ISO-8601 with milliseconds, for example "2026-11-22T11:33:03.123Z".
std::string utc_now_iso8601();

}  // namespace skyrelay
