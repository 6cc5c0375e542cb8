// _core.LogQueue: a server's queue of C++ log records (core/log_queue.hpp), seen from the one
// Python thread that drains it into `logging` (python/skyrelay/_core_logging.py).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <stdexcept>

#include "skyrelay/core/log_queue.hpp"
#include "skyrelay/core/thread_name.hpp"

namespace py = pybind11;

namespace skyrelay::bindings {

namespace {

log_source source_named(const std::string& name) {
  for (std::size_t i = 0; i < static_cast<std::size_t>(log_source::count_); ++i)
    if (logger_name(static_cast<log_source>(i)) == name) return static_cast<log_source>(i);
  throw py::value_error("no C++ logger is named " + name);
}

// (logger name, level, event, unix time, fields) for logging.Logger.makeRecord.
py::tuple to_python(const log_record& r) {
  py::dict fields;
  for (const auto& f : r.fields) {
    py::str key(f.key.data(), f.key.size());
    if (const auto* n = std::get_if<std::int64_t>(&f.value)) fields[key] = py::int_(*n);
    else fields[key] = py::str(std::get<std::string>(f.value));
  }
  const auto name = logger_name(r.source);
  return py::make_tuple(py::str(name.data(), name.size()), r.level,
                        py::str(r.event.data(), r.event.size()), r.unix_time, fields);
}

}  // namespace

void register_log(py::module_& m) {
  // For the Python threads skyrelay starts (the log pump, its own asyncio loop): Python 3.11's
  // threading names them for Python only, and the core's threads carry names of their own.
  m.def("name_this_thread", [](const std::string& name) { name_this_thread(name); },
        py::arg("name"),
        "Names the calling thread as top -H, ps -L and perf show it (15 bytes are kept).");
  py::class_<log_queue>(m, "LogQueue",
                        "A server's bounded queue of C++ log records (held by its Server).")
      .def_property_readonly_static("loggers", [](const py::object&) {
        py::list names;
        for (std::size_t i = 0; i < static_cast<std::size_t>(log_source::count_); ++i) {
          const auto n = logger_name(static_cast<log_source>(i));
          names.append(py::str(n.data(), n.size()));
        }
        return names;
      })
      .def("set_level", [](log_queue& q, const std::string& logger, int level) {
        q.set_level(source_named(logger), level);
      }, "The lowest level the C++ logger `logger` builds records for (its effective level).")
      .def("level", [](const log_queue& q, const std::string& logger) {
        return q.level(source_named(logger));
      })
      .def("take", [](log_queue& q, std::size_t max, double wait_s, bool wake_on_push) {
        std::vector<log_record> records;
        {
          py::gil_scoped_release release;
          // Rounded up: a wait asked to last until a deadline must not end just short of it.
          records = q.take(max, std::chrono::milliseconds(
                                    static_cast<std::int64_t>(std::ceil(wait_s * 1000))),
                           wake_on_push);
        }
        py::list out;
        for (const auto& r : records) out.append(to_python(r));
        return out;
      }, py::arg("max"), py::arg("wait"), py::arg("wake_on_push") = false,
         "Waits up to `wait` seconds (without the GIL; with `wake_on_push` the next record "
         "ends the wait), then takes up to `max` records as "
         "(logger, level, event, unix_time, fields) tuples.")
      .def("close", &log_queue::close, "Makes take() return at once from now on.")
      .def("reopen", &log_queue::reopen)
      .def_property_readonly("size", &log_queue::size)
      .def_property_readonly("capacity", &log_queue::capacity)
      .def_property_readonly("dropped", &log_queue::dropped);
}

}  // namespace skyrelay::bindings
