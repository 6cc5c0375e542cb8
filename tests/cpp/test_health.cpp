// net/health: liveness from each I/O context's heartbeat (a context whose thread does not run
// fails it), readiness from the dispatcher's progress, the broker and draining.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>

#include "skyrelay/hub/hub.hpp"
#include "skyrelay/hub/memory_broker.hpp"
#include "skyrelay/net/health.hpp"

namespace skyrelay {
namespace {

using namespace std::chrono_literals;

struct parts {
  server_config cfg;
  hub h;
  memory_broker b{h};
  dispatcher d{16};
  log_queue log{16};
  parts() {
    cfg.io_stall_timeout = 100ms;
    cfg.dispatcher_stall_timeout = 50ms;
  }
};

TEST(Health, LivenessFailsWhileAnIoContextDoesNotRunAndRecovers) {
  parts p;
  health_monitor m(p.cfg, p.d, p.b, p.log);
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  contexts.push_back(std::make_unique<asio::io_context>(1));
  contexts.push_back(std::make_unique<asio::io_context>(1));
  m.start(contexts);
  EXPECT_TRUE(m.liveness().ok);
  // Only the first context runs: the second one's thread is "stuck".
  for (int i = 0; i < 8; ++i) {
    contexts[0]->run_for(25ms);
  }
  auto r = m.liveness();
  EXPECT_FALSE(r.ok);
  auto j = nlohmann::json::parse(r.json);
  EXPECT_EQ(j["status"], "fail");
  EXPECT_EQ(j["checks"]["io_threads"]["threads"], 2);
  EXPECT_EQ(j["checks"]["io_threads"]["stuck"], 1);
  // Both run again: alive.
  std::thread other([&] { contexts[1]->run_for(80ms); });
  contexts[0]->run_for(80ms);
  other.join();
  EXPECT_TRUE(m.liveness().ok) << m.liveness().json;
  m.stop();
}

TEST(Health, ReadinessFollowsTheDispatcherAndDraining) {
  parts p;
  health_monitor m(p.cfg, p.d, p.b, p.log);
  p.d.start();
  auto r = m.readiness();
  ASSERT_TRUE(r.ok) << r.json;
  auto j = nlohmann::json::parse(r.json);
  EXPECT_EQ(j["checks"]["broker"]["kind"], "memory");
  EXPECT_EQ(j["checks"]["server"]["state"], "running");

  std::promise<void> release;
  auto gate = release.get_future().share();
  p.d.post([gate] { gate.wait(); });
  p.d.post([] {});
  std::this_thread::sleep_for(100ms);
  r = m.readiness();
  EXPECT_FALSE(r.ok);
  j = nlohmann::json::parse(r.json);
  EXPECT_EQ(j["checks"]["dispatcher"]["status"], "fail");
  EXPECT_EQ(j["checks"]["dispatcher"]["queued"], 1);
  release.set_value();
  for (int i = 0; i < 200 && !m.readiness().ok; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(m.readiness().ok);

  m.set_draining(true);
  j = nlohmann::json::parse(m.readiness().json);
  EXPECT_EQ(j["status"], "fail");
  EXPECT_EQ(j["checks"]["server"]["state"], "stopping");
  p.d.stop();
}

}  // namespace
}  // namespace skyrelay
