// The /metrics text: every configured limit has a skyrelay_limit_hits_total series, and each
// limit's counter (own or shared with another family) moves its own series only.
#include <gtest/gtest.h>

#include <sstream>
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

TEST(Metrics, TrafficIsLabelledByTransport) {
  metrics m(1);
  metrics::add(m.local().of(transport_kind::sse).connections_opened, 3);
  metrics::add(m.local().of(transport_kind::sse).connections_closed);
  metrics::add(m.local().of(transport_kind::polling).bytes_in, 42);
  metrics::add(m.local().of(transport_kind::publish).messages_in);
  const std::string text = m.prometheus(0, 0, 0);
  EXPECT_EQ(sample(text, "skyrelay_open_connections{transport=\"sse\"}"), 2);
  EXPECT_EQ(sample(text, "skyrelay_open_connections{transport=\"json\"}"), 0);
  EXPECT_EQ(sample(text, "skyrelay_connections_opened_total{transport=\"sse\"}"), 3);
  EXPECT_EQ(sample(text, "skyrelay_received_bytes_total{transport=\"polling\"}"), 42);
  EXPECT_EQ(sample(text, "skyrelay_received_messages_total{transport=\"publish\"}"), 1);
  EXPECT_EQ(sample(text, "skyrelay_received_messages_total{transport=\"socketio\"}"), 0);
  // Nothing is received on an SSE stream: no series claims to count it.
  EXPECT_EQ(sample(text, "skyrelay_received_messages_total{transport=\"sse\"}"), -1);
}

// Every sample belongs to a family announced by HELP and TYPE, and every counter ends in _total
// (the Prometheus naming conventions; tests/python/test_metrics_format.py parses the server's).
TEST(Metrics, EveryFamilyHasHelpAndTypeAndCountersEndInTotal) {
  metrics m(2);
  std::istringstream in(m.prometheus(0, 0, 0));
  std::string line, helped, typed, type;
  int samples = 0;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      helped = line.substr(7, line.find(' ', 7) - 7);
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      const auto sp = line.find(' ', 7);
      typed = line.substr(7, sp - 7);
      type = line.substr(sp + 1);
      EXPECT_EQ(typed, helped) << line;
      if (type == "counter") EXPECT_TRUE(typed.ends_with("_total")) << typed;
      else EXPECT_FALSE(typed.ends_with("_total")) << typed;
      continue;
    }
    const std::string name = line.substr(0, line.find_first_of("{ "));
    ++samples;
    if (type == "histogram")
      EXPECT_TRUE(name == typed + "_bucket" || name == typed + "_sum" || name == typed + "_count")
          << name;
    else
      EXPECT_EQ(name, typed) << line;
  }
  EXPECT_GT(samples, 50);
}

}  // namespace
}  // namespace skyrelay
