// JSON text of plain Python values, written in C++ (the ack and response of a handler).
#pragma once

#include <pybind11/pybind11.h>

#include <string>

namespace skyrelay::bindings {

// Appends the JSON text of `value` to `out`, as json.dumps(value, separators=(",", ":"),
// ensure_ascii=False, allow_nan=False) writes it, when `value` holds only exact dict (str
// keys), list, tuple, str, int, float, bool and None, nested at most 64 deep. Anything else
// (a subclass, bytes, NaN, an int beyond 64 bits, a lone surrogate) answers false, `out` then
// holding a partial text: the caller encodes in Python instead, with its fallbacks and errors.
// Needs the GIL.
bool append_plain_json(std::string& out, pybind11::handle value, int depth = 0);

}  // namespace skyrelay::bindings
