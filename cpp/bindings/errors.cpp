// The translation of C++ errors into Python exceptions: see errors.hpp for the table.
#include "errors.hpp"

#include <boost/system/system_error.hpp>

#include <exception>
#include <stdexcept>

#include "skyrelay/hub/broker.hpp"

namespace py = pybind11;

namespace skyrelay::bindings {

namespace {

// OSError(errno, message), so Python sees e.errno (EADDRINUSE, say) and its subclass
// (PermissionError for EACCES, ...), as socket calls raise them.
void set_os_error(const boost::system::error_code& code) {
  py::object err =
      py::module_::import("builtins").attr("OSError")(code.value(), code.message());
  PyErr_SetObject(PyExc_OSError, err.ptr());
}

// What it does not catch goes on to pybind11's own translators: its exceptions (py::value_error,
// error_already_set, ...) as they are, the other standard types as its table says.
void translate(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const broker_unavailable& e) {
    // The Python layer owns the class (skyrelay.errors.BrokerUnavailable, a ConnectionError).
    py::object cls = py::module_::import("skyrelay.errors").attr("BrokerUnavailable");
    PyErr_SetObject(cls.ptr(), cls(e.what()).ptr());
  } catch (const boost::system::system_error& e) {
    set_os_error(e.code());
  } catch (const std::invalid_argument& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
  }
}

}  // namespace

void register_errors(py::module_&) { py::register_exception_translator(&translate); }

void raise_value_error(const std::string& message) { throw py::value_error(message); }

}  // namespace skyrelay::bindings
