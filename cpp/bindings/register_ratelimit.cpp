// Bindings for the keyed token-bucket limiter (skyrelay.RateLimiter wraps this). The key is
// copied out of the Python string while the GIL is held; the shard lock and the bucket work run
// without it, so threads acquiring at once are not serialized on the GIL.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>

#include "skyrelay/limits/rate_limiter.hpp"

namespace py = pybind11;

namespace skyrelay::bindings {
namespace {

py::tuple decision_tuple(const rate_decision& d) {
  return py::make_tuple(d.allowed, d.retry_after(), d.remaining);
}

}  // namespace

void register_ratelimit(py::module_& m) {
  py::class_<rate_limiter>(m, "RateLimiter")
      .def(py::init<double, double, std::size_t>(), py::arg("rate"), py::arg("burst"),
           py::arg("max_keys") = 100'000)
      .def(
          "acquire",
          [](rate_limiter& rl, const std::string& key, double cost) {
            rate_decision d;
            {
              py::gil_scoped_release nogil;
              d = rl.acquire(key, cost);
            }
            return decision_tuple(d);
          },
          py::arg("key"), py::arg("cost") = 1.0,
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
