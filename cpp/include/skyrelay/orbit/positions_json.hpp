// The satellite tracker's `satellite_positions` message, written as JSON text in one pass:
//   {"satellites":[{<head>LAT,"longitude":LON,"altitude_km":ALT},"timestamp":"..."},...],
//    "count":N,"timestamp":"..."}
// Each satellite's head (`"name":...,"catalog_number":...,"position":{"latitude":`) is written
// once per catalogue by the caller (Python's json.dumps, so names are escaped as before); per
// tick only the numbers and the timestamp change. Latitude and longitude are rounded to 4
// decimals and altitude to 2 as numpy.round does (multiply, round half to even, divide), and
// written as Python's repr writes a float (the shortest text that reads back the same value), so
// the text is byte for byte what json.dumps(..., separators=(",", ":")) wrote for the records.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace skyrelay::orbit {

// Appends Python's repr of a finite double (17 characters at most, plus sign and exponent).
void append_python_float(std::string& out, double value);

class positions_encoder {
 public:
  // One head per satellite: the JSON text of a record up to the latitude's value.
  explicit positions_encoder(std::vector<std::string> heads) : heads_(std::move(heads)) {}
  std::size_t size() const { return heads_.size(); }

  // The message for positions of every satellite (n == size()); a satellite whose latitude,
  // longitude or altitude is not finite (a propagation error) is left out. `timestamp_json` is
  // the timestamp as a JSON string, quotes included.
  std::string encode(const double* latitude, const double* longitude, const double* altitude_km,
                     std::size_t n, std::string_view timestamp_json) const;

 private:
  std::vector<std::string> heads_;
};

}  // namespace skyrelay::orbit
