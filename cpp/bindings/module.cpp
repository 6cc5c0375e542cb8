// skyrelay._core: the private extension module. Thin and C++-shaped; the Python package owns
// the public API.
#include <pybind11/pybind11.h>

#include "errors.hpp"

namespace py = pybind11;

namespace skyrelay::bindings {
void register_config(py::module_& m);
void register_server(py::module_& m);
void register_orbit(py::module_& m);
void register_ratelimit(py::module_& m);
void register_auth(py::module_& m);
void register_log(py::module_& m);
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "skyrelay's C++ core (private; use the skyrelay package)";
  skyrelay::bindings::register_errors(m);
  skyrelay::bindings::register_config(m);
  skyrelay::bindings::register_log(m);
  skyrelay::bindings::register_server(m);
  skyrelay::bindings::register_orbit(m);
  skyrelay::bindings::register_ratelimit(m);
  skyrelay::bindings::register_auth(m);
}
