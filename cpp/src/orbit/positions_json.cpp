#include "skyrelay/orbit/positions_json.hpp"

#include <charconv>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <system_error>

namespace skyrelay::orbit {
namespace {

// numpy.round(x, decimals) for decimals > 0: x * 10^d, rounded half to even, divided by 10^d.
double numpy_round(double x, double scale) { return std::nearbyint(x * scale) / scale; }

}  // namespace

void append_python_float(std::string& out, double value) {
  // The shortest digits that read back as `value` (std::to_chars guarantees that), laid out as
  // Python's float repr does: positional when the decimal exponent is in [-4, 16), with ".0"
  // when there is no fraction; otherwise d[.ddd]e[+-]XX with at least two exponent digits.
  char sci[32];
  const auto res = std::to_chars(sci, sci + sizeof sci, value, std::chars_format::scientific);
  const char* p = sci;
  if (*p == '-') {
    out.push_back('-');
    ++p;
  }
  const char* e = static_cast<const char*>(std::memchr(p, 'e', static_cast<std::size_t>(res.ptr - p)));
  char digits[20];
  std::size_t nd = 0;
  for (const char* q = p; q < e; ++q)
    if (*q != '.') digits[nd++] = *q;
  int exp10 = 0;
  std::from_chars(e + (e[1] == '+' ? 2 : 1), res.ptr, exp10);
  if (exp10 < -4 || exp10 >= 16) {
    out.push_back(digits[0]);
    if (nd > 1) {
      out.push_back('.');
      out.append(digits + 1, nd - 1);
    }
    char tail[8];
    const int a = exp10 < 0 ? -exp10 : exp10;
    const int len = std::snprintf(tail, sizeof tail, "e%c%02d", exp10 < 0 ? '-' : '+', a);
    out.append(tail, static_cast<std::size_t>(len));
    return;
  }
  if (exp10 < 0) {
    out.append("0.");
    out.append(static_cast<std::size_t>(-exp10 - 1), '0');
    out.append(digits, nd);
    return;
  }
  const std::size_t whole = static_cast<std::size_t>(exp10) + 1;
  if (nd <= whole) {
    out.append(digits, nd);
    out.append(whole - nd, '0');
    out.append(".0");
  } else {
    out.append(digits, whole);
    out.push_back('.');
    out.append(digits + whole, nd - whole);
  }
}

std::string positions_encoder::encode(const double* latitude, const double* longitude, const double* altitude_km,
                                      std::size_t n, std::string_view timestamp_json) const {
  std::string out;
  out.reserve(64 + n * (heads_.empty() ? 0 : heads_[0].size() + 96 + timestamp_json.size()));
  out.append("{\"satellites\":[");
  std::size_t count = 0;
  for (std::size_t i = 0; i < n && i < heads_.size(); ++i) {
    const double lat = latitude[i], lon = longitude[i], alt = altitude_km[i];
    if (!std::isfinite(lat) || !std::isfinite(lon) || !std::isfinite(alt)) continue;
    if (count++) out.push_back(',');
    out.append(heads_[i]);
    append_python_float(out, numpy_round(lat, 1e4));
    out.append(",\"longitude\":");
    append_python_float(out, numpy_round(lon, 1e4));
    out.append(",\"altitude_km\":");
    append_python_float(out, numpy_round(alt, 1e2));
    out.append("},\"timestamp\":");
    out.append(timestamp_json);
    out.push_back('}');
  }
  out.append("],\"count\":");
  out.append(std::to_string(count));
  out.append(",\"timestamp\":");
  out.append(timestamp_json);
  out.push_back('}');
  return out;
}

}  // namespace skyrelay::orbit
