#include "skyrelay/core/clock.hpp"

#include <ctime>

namespace skyrelay {

std::int64_t steady_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string utc_now_iso8601() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  std::tm tm{};
  gmtime_r(&ts.tv_sec, &tm);
  char buf[32];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  int ms = static_cast<int>(ts.tv_nsec / 1'000'000);
  buf[n++] = '.';
  buf[n++] = static_cast<char>('0' + ms / 100);
  buf[n++] = static_cast<char>('0' + ms / 10 % 10);
  buf[n++] = static_cast<char>('0' + ms % 10);
  buf[n++] = 'Z';
  return std::string(buf, n);
}

}  // namespace skyrelay
