// Names a thread as `top -H`, `ps -L`, perf, gdb and py-spy show it. The kernel keeps 15 bytes,
// so longer names are cut. Best effort: a name that cannot be set changes nothing else.
#pragma once

#include <pthread.h>

#include <algorithm>
#include <cstddef>
#include <string_view>
#include <thread>

namespace skyrelay {

inline void name_thread(pthread_t thread, std::string_view name) noexcept {
  char buf[16]{};
  std::copy_n(name.data(), std::min(name.size(), sizeof buf - 1), buf);
  pthread_setname_np(thread, buf);
}

// By the thread that started it, right after: named before anyone can look.
inline void name_thread(std::thread& thread, std::string_view name) noexcept {
  name_thread(thread.native_handle(), name);
}

inline void name_this_thread(std::string_view name) noexcept { name_thread(pthread_self(), name); }

}  // namespace skyrelay
