#include "py_json.hpp"

#include <charconv>
#include <string_view>

#include "skyrelay/proto/json_protocol.hpp"

namespace skyrelay::bindings {

namespace {

constexpr int max_depth = 64;

bool append_string(std::string& out, PyObject* s) {
  Py_ssize_t n = 0;
  const char* p = PyUnicode_AsUTF8AndSize(s, &n);
  if (p == nullptr) {  // a lone surrogate: json.dumps would write it, UTF-8 cannot
    PyErr_Clear();
    return false;
  }
  // The JSON protocol's string writer: escapes exactly what json.dumps(ensure_ascii=False) does.
  proto::append_json_string(out, std::string_view(p, static_cast<std::size_t>(n)));
  return true;
}

bool append_number(std::string& out, PyObject* o) {
  if (PyLong_CheckExact(o)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow != 0) return false;  // Python writes big ints exactly; it does so itself
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
    return true;
  }
  const double d = PyFloat_AS_DOUBLE(o);
  if (d != d || d - d != 0) return false;  // NaN, infinities: Python raises its own error
  // float.__repr__, as json.dumps writes floats (1.0 stays 1.0, not 1).
  PyObject* text = PyObject_Repr(o);
  if (text == nullptr) {
    PyErr_Clear();
    return false;
  }
  Py_ssize_t n = 0;
  const char* p = PyUnicode_AsUTF8AndSize(text, &n);
  if (p != nullptr) out.append(p, static_cast<std::size_t>(n));
  Py_DECREF(text);
  return p != nullptr;
}

}  // namespace

bool append_plain_json(std::string& out, pybind11::handle value, int depth) {
  PyObject* o = value.ptr();
  if (o == Py_None) {
    out += "null";
  } else if (o == Py_True) {
    out += "true";
  } else if (o == Py_False) {
    out += "false";
  } else if (PyUnicode_CheckExact(o)) {
    return append_string(out, o);
  } else if (PyLong_CheckExact(o) || PyFloat_CheckExact(o)) {
    return append_number(out, o);
  } else if (depth >= max_depth) {
    return false;  // deep or circular: Python's encoder reports it
  } else if (PyList_CheckExact(o) || PyTuple_CheckExact(o)) {
    const bool list = PyList_CheckExact(o);
    const Py_ssize_t n = list ? PyList_GET_SIZE(o) : PyTuple_GET_SIZE(o);
    out += '[';
    for (Py_ssize_t i = 0; i < n; ++i) {
      if (i) out += ',';
      // A list is read item by item (borrowed): nothing here runs Python code that could
      // change it, since every item is of an exact built-in type.
      PyObject* item = list ? PyList_GET_ITEM(o, i) : PyTuple_GET_ITEM(o, i);
      if (!append_plain_json(out, item, depth + 1)) return false;
    }
    out += ']';
  } else if (PyDict_CheckExact(o)) {
    out += '{';
    Py_ssize_t pos = 0;
    PyObject* k = nullptr;
    PyObject* v = nullptr;
    bool first = true;
    while (PyDict_Next(o, &pos, &k, &v)) {
      if (!PyUnicode_CheckExact(k)) return false;  // json.dumps turns 1, None... into text
      if (!first) out += ',';
      first = false;
      if (!append_string(out, k)) return false;
      out += ':';
      if (!append_plain_json(out, v, depth + 1)) return false;
    }
    out += '}';
  } else {
    return false;
  }
  return true;
}

}  // namespace skyrelay::bindings
