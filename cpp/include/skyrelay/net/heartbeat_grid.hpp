// When a connection's periodic timer (ping, keep-alive, pong deadline) fires: its exact
// deadline rounded up to a grid that every connection shares.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string_view>

namespace skyrelay::net {

// Each connection timing its heartbeat on its own made an I/O thread wake up once per
// connection per interval (one epoll return, one context switch each: ~1,000 a second for
// 19,500 connections at a 20 s interval, most of the cost of holding them idle). Rounding every
// deadline up to a multiple of a shared tick makes the connections that are due within one
// tick expire at the same instant; Asio's timer queue then hands all of them to the thread in
// one wake-up, and their writes go out in one flush pass. The tick is a sixteenth of the
// period (so a ping comes at most ~6 % late), between 1 ms and 1 s.
//
// This is the batching of a timer wheel without a second timer structure: the per-connection
// asio::steady_timer stays (it also bounds the handshake and the close), only its deadline moves.
inline std::chrono::nanoseconds heartbeat_tick(std::chrono::nanoseconds period) {
  using namespace std::chrono_literals;
  return std::clamp<std::chrono::nanoseconds>(period / 16, 1ms, 1s);
}

// SKYRELAY_HEARTBEAT_GRID=0 in the environment turns the rounding off (every deadline exact,
// as before the grid): the benchmark's before/after in one build, and a way back should the
// batching ever be suspected. Read once.
inline bool heartbeat_grid_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("SKYRELAY_HEARTBEAT_GRID");
    return !(v && std::string_view(v) == "0");
  }();
  return on;
}

inline std::chrono::steady_clock::time_point heartbeat_due(
    std::chrono::steady_clock::time_point deadline, std::chrono::nanoseconds period) {
  if (!heartbeat_grid_enabled()) return deadline;
  const auto tick = heartbeat_tick(period);
  const auto since = std::chrono::duration_cast<std::chrono::nanoseconds>(
      deadline.time_since_epoch());
  const auto up = (since + tick - std::chrono::nanoseconds(1)) / tick * tick;
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(up));
}

}  // namespace skyrelay::net
