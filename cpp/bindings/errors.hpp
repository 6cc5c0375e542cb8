// The one place where skyrelay's C++ errors become Python exceptions (docs/api.md lists the
// exceptions each call raises).
//
// C++ exceptions that reach a binding are mapped by the translator that register_errors installs:
//
//   boost::system::system_error  -> OSError(errno, message)   start(): an address in use, a bad host
//   skyrelay::broker_unavailable -> skyrelay.errors.BrokerUnavailable (a ConnectionError):
//                                                              emit while the broker is down
//   std::invalid_argument        -> ValueError                settings: TLS files, a broker URL,
//                                                              limiter rates, access rules
//   any other exception          -> pybind11's standard table: RuntimeError for std::exception
//                                   and std::runtime_error (std::bad_alloc: MemoryError, ...)
//
// Exceptions pybind11 raises itself (py::value_error, py::error_already_set, cast errors) pass
// through unchanged. C++ errors returned as values (a TLE's parse error, a JWT key's refusal)
// become ValueError through value_or_raise and raise_value_error below.
#pragma once

#include <pybind11/pybind11.h>

#include <string>
#include <utility>

namespace skyrelay::bindings {

// Installs the translator; module.cpp calls it once, before the register_* functions.
void register_errors(pybind11::module_& m);

// Raises ValueError with `message`: an error that C++ returned as a value.
[[noreturn]] void raise_value_error(const std::string& message);

// The value of a result that holds either `value` (an optional) or an `error` message:
// the value, else ValueError with the message.
template <class Result>
auto value_or_raise(Result r) {
  if (!r.value) raise_value_error(r.error);
  return std::move(*r.value);
}

}  // namespace skyrelay::bindings
