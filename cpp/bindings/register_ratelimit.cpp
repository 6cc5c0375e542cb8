// Bindings for the keyed token-bucket limiter (skyrelay.RateLimiter wraps this). The key is
// copied out of the Python string while the GIL is held; the shard lock and the bucket work run
// without it, so threads acquiring at once are not serialized on the GIL.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>

#include "skyrelay/broker/redis_broker.hpp"
#include "skyrelay/broker/redis_client.hpp"
#include "skyrelay/broker/redis_limits.hpp"
#include "skyrelay/limits/rate_limiter.hpp"

namespace py = pybind11;

namespace skyrelay::bindings {
namespace {

// acquire() of either limiter: the key is copied with the GIL, the bucket work runs without.
template <class Limiter>
py::tuple acquire_without_gil(Limiter& rl, const std::string& key, double cost) {
  rate_decision d;
  {
    py::gil_scoped_release nogil;
    d = rl.acquire(key, cost);
  }
  return py::make_tuple(d.allowed, d.retry_after(), d.remaining);
}

// skyrelay.RateLimiter(redis=...)'s buckets: a connection of its own (on its own thread) and
// the shared token-bucket script. Every call runs without the GIL.
class shared_limiter {
 public:
  shared_limiter(const std::string& url, const std::string& name, double rate, double burst,
                 long long timeout_ms) {
    auto opts = redis::parse_broker_url(url);  // redis://...[?prefix=...]; ValueError else
    client_ = std::make_unique<redis::redis_client>(opts.url);
    limiter_ = std::make_unique<redis::redis_rate_limiter>(
        *client_, opts.prefix + "rl:" + name + ":", rate, burst,
        std::chrono::milliseconds(timeout_ms));
    client_->wait_connected(std::chrono::milliseconds(timeout_ms));
  }
  rate_decision acquire(const std::string& key, double cost) { return limiter_->acquire(key, cost); }
  bool reset(const std::string& key) { return limiter_->reset(key); }
  bool connected() const { return client_->connected(); }

 private:
  std::unique_ptr<redis::redis_client> client_;  // outlives the limiter
  std::unique_ptr<redis::redis_rate_limiter> limiter_;
};

}  // namespace

void register_ratelimit(py::module_& m) {
  py::class_<shared_limiter>(m, "RedisRateLimiter")
      .def(py::init<const std::string&, const std::string&, double, double, long long>(),
           py::arg("url"), py::arg("name"), py::arg("rate"), py::arg("burst"),
           py::arg("timeout_ms") = 1000, py::call_guard<py::gil_scoped_release>())
      .def("acquire", &acquire_without_gil<shared_limiter>, py::arg("key"),
           py::arg("cost") = 1.0,
           "(allowed, retry_after seconds, remaining tokens) on Redis's clock; raises "
           "BrokerUnavailable when Redis does not answer")
      .def("reset", &shared_limiter::reset, py::arg("key"),
           py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("connected", &shared_limiter::connected);

  py::class_<rate_limiter>(m, "RateLimiter")
      .def(py::init<double, double, std::size_t>(), py::arg("rate"), py::arg("burst"),
           py::arg("max_keys") = 100'000)
      .def("acquire", &acquire_without_gil<rate_limiter>, py::arg("key"),
           py::arg("cost") = 1.0,
           "(allowed, retry_after seconds, remaining tokens) on the monotonic clock")
      .def(
          "acquire_at",
          [](rate_limiter& rl, const std::string& key, double cost, std::int64_t now_ns) {
            rate_decision d;
            {
              py::gil_scoped_release nogil;
              d = rl.acquire(key, cost, now_ns);
            }
            return py::make_tuple(d.allowed, d.retry_after_ns, d.remaining);
          },
          py::arg("key"), py::arg("cost"), py::arg("now_ns"),
          "as acquire, at a given CLOCK_MONOTONIC time; the wait in nanoseconds")
      .def(
          "reset",
          [](rate_limiter& rl, const std::string& key) {
            py::gil_scoped_release nogil;
            return rl.reset(key);
          },
          py::arg("key"))
      .def("sweep", [](rate_limiter& rl) {
        py::gil_scoped_release nogil;
        return rl.sweep();
      })
      .def("stats",
           [](const rate_limiter& rl) {
             rate_limiter_stats st;
             {
               py::gil_scoped_release nogil;
               st = rl.stats();
             }
             py::dict d;
             d["keys"] = st.keys;
             d["expired"] = st.expired;
             d["evicted"] = st.evicted;
             return d;
           })
      .def("__len__",
           [](const rate_limiter& rl) {
             py::gil_scoped_release nogil;
             return rl.size();
           })
      .def_property_readonly("rate", &rate_limiter::rate)
      .def_property_readonly("burst", &rate_limiter::burst)
      .def_property_readonly("max_keys", &rate_limiter::max_keys);
}

}  // namespace skyrelay::bindings
