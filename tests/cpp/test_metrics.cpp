// The /metrics text: every configured limit has a skyrelay_limit_hits_total series, and each
// limit's counter (own or shared with another family) moves its own series only.
#include <gtest/gtest.h>

#include <string>

#include "skyrelay/core/errors.hpp"
#include "skyrelay/net/metrics.hpp"

namespace skyrelay {
namespace {

double sample(const std::string& text, const std::string& name) {
  const auto at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + name.size() + 2));
}

double hits(const metrics& m, const std::string& limit) {
  return sample(m.prometheus(0, 0, 0, 0), "skyrelay_limit_hits_total{limit=\"" + limit + "\"}");
}

const char* const all_limits[] = {
    "message_size", "header_size", "body_size", "handshake_timeout", "idle_timeout", "outbox",
    "write_timeout",
    "connections_total", "connections_per_ip", "new_connections_per_ip",
    "rooms_per_connection", "inbound_rate", "sessions_total", "sessions_per_ip",
    "new_sessions_per_ip", "attachments", "attachment_bytes", "recovery"};

TEST(Metrics, EveryLimitHasASeriesFromZero) {
  metrics m(1);
  for (const char* l : all_limits) EXPECT_EQ(hits(m, l), 0) << l;
}

TEST(Metrics, EachLimitMovesItsOwnSeries) {
  metrics m(1);
  m.limit_hit(limit_kind::idle_timeout);
  m.limit_hit(limit_kind::idle_timeout);
  m.limit_hit(limit_kind::body_size);
  m.limit_hit(limit_kind::attachment_bytes);
  metrics::add(m.local().refused_rate_limit);
  m.error(error_code::too_many_rooms);
  m.drop(drop_reason::rate_limited, 3);
  m.drop(drop_reason::slow_consumer);  // a drop, not a limit of its own
  for (const char* l : all_limits) {
    const std::string name = l;
    const double want = name == "idle_timeout" ? 2
                        : name == "body_size" || name == "new_connections_per_ip" ||
                                  name == "rooms_per_connection" || name == "attachment_bytes"
                            ? 1
                        : name == "inbound_rate" ? 3
                                                 : 0;
    EXPECT_EQ(hits(m, name), want) << name;
  }
}

TEST(Metrics, IdleTimeoutIsADisconnectReason) {
  EXPECT_EQ(to_string(disconnect_reason::idle_timeout), "idle_timeout");
  metrics m(1);
  m.disconnect(disconnect_reason::idle_timeout);
  EXPECT_EQ(sample(m.prometheus(0, 0, 0, 0), "skyrelay_disconnects_total{reason=\"idle_timeout\"}"),
            1);
  EXPECT_EQ(close_code::idle_timeout, 4004);
}

}  // namespace
}  // namespace skyrelay
