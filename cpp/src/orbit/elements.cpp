#include "skyrelay/orbit/elements.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cctype>

#include <nlohmann/json.hpp>

namespace skyrelay::orbit {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

// Parses the whole of `s` (after trimming) as a double; a leading '+' is allowed.
bool to_double(std::string_view s, double& out) {
  s = trim(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size() && std::isfinite(out);
}

bool to_long(std::string_view s, long& out) {
  s = trim(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

// The TLE's "assumed decimal point" notation: " 12345-3" is 0.12345e-3, "-12345+0" is
// -0.12345. Blank means zero.
bool implied_decimal(std::string_view s, double& out) {
  s = trim(s);
  if (s.empty()) { out = 0; return true; }
  double sign = 1;
  if (s.front() == '-' || s.front() == '+') { sign = s.front() == '-' ? -1 : 1; s.remove_prefix(1); }
  // The exponent is the trailing sign and digit(s).
  std::size_t e = s.find_last_of("+-");
  std::string_view mant = s, expo;
  if (e != std::string_view::npos && e > 0) { mant = s.substr(0, e); expo = s.substr(e); }
  mant = trim(mant);
  if (mant.empty()) return false;
  for (char c : mant) if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  double m = 0;
  std::string buf = "0." + std::string(mant);
  if (!to_double(buf, m)) return false;
  long x = 0;
  if (!expo.empty() && !to_long(expo, x)) return false;
  if (x < -30 || x > 30) return false;
  out = sign * m * std::pow(10.0, static_cast<double>(x));
  return true;
}

// Five-character catalogue numbers: digits, or Alpha-5 (a letter other than I and O, then four
// digits).
bool catalog_number(std::string_view s, long& out) {
  s = trim(s);
  if (s.empty() || s.size() > 5) return false;
  if (std::isalpha(static_cast<unsigned char>(s.front()))) {
    char c = static_cast<char>(std::toupper(static_cast<unsigned char>(s.front())));
    if (c == 'I' || c == 'O' || s.size() != 5) return false;
    int v = c - 'A' + 10;
    if (c > 'I') --v;
    if (c > 'O') --v;
    long rest = 0;
    for (char d : s.substr(1)) if (!std::isdigit(static_cast<unsigned char>(d))) return false;
    if (!to_long(s.substr(1), rest)) return false;
    out = v * 10000L + rest;
    return true;
  }
  return to_long(s, out) && out >= 0;
}

std::string field_error(int line, int from, int to, std::string_view what, std::string_view text) {
  return "line " + std::to_string(line) + ": bad " + std::string(what) + " (columns " +
         std::to_string(from) + "-" + std::to_string(to) + "): '" + std::string(text) + "'";
}

// Fills the epoch fields from a two-digit year and a day of year.
bool set_epoch(elements& el, int year, double days) {
  if (!(days >= 1.0 && days < 367.0)) return false;
  el.epoch_year = year;
  el.epoch_days = days;
  double jd0 = 0, fr0 = 0;
  julian_date(year, 1, 1, 0, 0, 0.0, jd0, fr0);  // 1 January 0h
  double whole = std::floor(days);
  el.epoch_jd = jd0 + (whole - 1.0);
  el.epoch_fr = days - whole;
  return true;
}

}  // namespace

void julian_date(int year, int month, int day, int hour, int minute, double second, double& jd,
                 double& fr) {
  // Days from the Gregorian calendar formula valid for 1900..2100 (the only years TLEs use)
  // and beyond, via the standard month shift.
  int a = (14 - month) / 12;
  long y = year + 4800 - a;
  long m = month + 12 * a - 3;
  long jdn = day + (153 * m + 2) / 5 + 365 * y + y / 4 - y / 100 + y / 400 - 32045;
  jd = static_cast<double>(jdn) - 0.5;  // midnight starting that day
  fr = (hour * 3600.0 + minute * 60.0 + second) / 86400.0;
  if (fr >= 1.0 || fr < 0.0) {
    double shift = std::floor(fr);
    jd += shift;
    fr -= shift;
  }
}

int tle_checksum(std::string_view line) {
  int sum = 0;
  for (std::size_t i = 0; i < line.size() && i < 68; ++i) {
    char c = line[i];
    if (c >= '0' && c <= '9') sum += c - '0';
    else if (c == '-') sum += 1;
  }
  return sum % 10;
}

parse_result parse_tle(std::string_view line1, std::string_view line2, std::string_view name) {
  parse_result out;
  auto fail = [&](std::string msg) { out.error = std::move(msg); return out; };
  // Trailing whitespace and carriage returns do not count; the lines must still reach column 69
  // (68 is tolerated when only the checksum digit is missing).
  auto clip = [](std::string_view l) {
    while (!l.empty() && (l.back() == '\r' || l.back() == '\n')) l.remove_suffix(1);
    return l;
  };
  line1 = clip(line1);
  line2 = clip(line2);
  if (line1.size() < 68) return fail("line 1: too short (" + std::to_string(line1.size()) + " columns, need 69)");
  if (line2.size() < 68) return fail("line 2: too short (" + std::to_string(line2.size()) + " columns, need 69)");
  if (line1[0] != '1' || line1[1] != ' ') return fail("line 1: must start with '1 '");
  if (line2[0] != '2' || line2[1] != ' ') return fail("line 2: must start with '2 '");

  elements el;
  name = trim(name);
  if (name.size() >= 2 && name[0] == '0' && name[1] == ' ') name = trim(name.substr(2));
  el.name = std::string(name);

  auto col = [](std::string_view l, int from, int to) {  // 1-based inclusive columns
    return l.substr(static_cast<std::size_t>(from - 1), static_cast<std::size_t>(to - from + 1));
  };
  el.satnum = std::string(trim(col(line1, 3, 7)));
  if (!catalog_number(el.satnum, el.catalog_number))
    return fail(field_error(1, 3, 7, "catalogue number", col(line1, 3, 7)));
  if (trim(col(line2, 3, 7)) != el.satnum)
    return fail("line 2: catalogue number '" + std::string(trim(col(line2, 3, 7))) +
                "' differs from line 1's '" + el.satnum + "'");
  el.classification = line1[7] == ' ' ? 'U' : line1[7];
  el.intl_designator = std::string(trim(col(line1, 10, 17)));

  long yy = 0;
  double days = 0;
  if (!to_long(col(line1, 19, 20), yy) || yy < 0 || yy > 99)
    return fail(field_error(1, 19, 20, "epoch year", col(line1, 19, 20)));
  if (!to_double(col(line1, 21, 32), days) || !set_epoch(el, yy < 57 ? 2000 + yy : 1900 + yy, days))
    return fail(field_error(1, 21, 32, "epoch day", col(line1, 21, 32)));
  if (!to_double(col(line1, 34, 43), el.ndot))
    return fail(field_error(1, 34, 43, "first derivative of mean motion", col(line1, 34, 43)));
  if (!implied_decimal(col(line1, 45, 52), el.nddot))
    return fail(field_error(1, 45, 52, "second derivative of mean motion", col(line1, 45, 52)));
  if (!implied_decimal(col(line1, 54, 61), el.bstar))
    return fail(field_error(1, 54, 61, "BSTAR", col(line1, 54, 61)));
  long v = 0;
  std::string_view eph = trim(col(line1, 63, 63));
  el.ephemeris_type = (!eph.empty() && to_long(eph, v)) ? static_cast<int>(v) : 0;
  std::string_view elnum = trim(col(line1, 65, 68));
  el.element_number = (!elnum.empty() && to_long(elnum, v)) ? static_cast<int>(v) : 0;

  if (!to_double(col(line2, 9, 16), el.inclination_deg) || el.inclination_deg < 0 || el.inclination_deg > 180)
    return fail(field_error(2, 9, 16, "inclination", col(line2, 9, 16)));
  if (!to_double(col(line2, 18, 25), el.raan_deg) || el.raan_deg < 0 || el.raan_deg > 360)
    return fail(field_error(2, 18, 25, "right ascension of the node", col(line2, 18, 25)));
  {
    std::string_view e = trim(col(line2, 27, 33));
    bool digits = !e.empty();
    for (char c : e) digits = digits && std::isdigit(static_cast<unsigned char>(c));
    if (!digits || !to_double("0." + std::string(e), el.eccentricity))
      return fail(field_error(2, 27, 33, "eccentricity", col(line2, 27, 33)));
  }
  if (!to_double(col(line2, 35, 42), el.arg_perigee_deg) || el.arg_perigee_deg < 0 || el.arg_perigee_deg > 360)
    return fail(field_error(2, 35, 42, "argument of perigee", col(line2, 35, 42)));
  if (!to_double(col(line2, 44, 51), el.mean_anomaly_deg) || el.mean_anomaly_deg < 0 || el.mean_anomaly_deg > 360)
    return fail(field_error(2, 44, 51, "mean anomaly", col(line2, 44, 51)));
  if (!to_double(col(line2, 53, 63), el.mean_motion) || el.mean_motion <= 0)
    return fail(field_error(2, 53, 63, "mean motion", col(line2, 53, 63)));
  std::string_view rev = trim(col(line2, 64, 68));
  el.rev_number = (!rev.empty() && to_long(rev, v)) ? v : 0;

  auto check = [](std::string_view l) {
    return l.size() >= 69 && std::isdigit(static_cast<unsigned char>(l[68])) &&
           tle_checksum(l) == l[68] - '0';
  };
  out.checksum_ok[0] = check(line1);
  out.checksum_ok[1] = check(line2);
  out.value = std::move(el);
  return out;
}

tle_file parse_tle_text(std::string_view text) {
  tle_file out;
  std::vector<std::pair<int, std::string_view>> lines;
  int number = 0;
  while (!text.empty()) {
    std::size_t nl = text.find('\n');
    std::string_view l = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++number;
    while (!l.empty() && (l.back() == '\r' || l.back() == ' ' || l.back() == '\t')) l.remove_suffix(1);
    if (l.empty() || l.front() == '#') continue;
    lines.emplace_back(number, l);
  }
  std::string_view name;
  int name_line = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    auto [n, l] = lines[i];
    bool is1 = l.size() >= 2 && l[0] == '1' && l[1] == ' ';
    if (!is1) {
      if (!name.empty())
        out.errors.push_back("line " + std::to_string(name_line) + ": title without element lines");
      name = l;
      name_line = n;
      continue;
    }
    if (i + 1 >= lines.size() || lines[i + 1].second.size() < 2 || lines[i + 1].second[0] != '2') {
      out.errors.push_back("line " + std::to_string(n) + ": line 1 without a line 2 after it");
      name = {};
      continue;
    }
    auto r = parse_tle(l, lines[i + 1].second, name);
    if (r.value) {
      if (!r.checksum_ok[0] || !r.checksum_ok[1])
        out.checksum_warnings.push_back("line " + std::to_string(r.checksum_ok[0] ? lines[i + 1].first : n) +
                                        ": checksum mismatch (" + r.value->satnum + ")");
      out.sets.push_back(std::move(*r.value));
    } else {
      out.errors.push_back("line " + std::to_string(n) + ": " + r.error);
    }
    name = {};
    ++i;
  }
  if (!name.empty()) out.errors.push_back("line " + std::to_string(name_line) + ": title without element lines");
  return out;
}

namespace {

bool json_number(const nlohmann::json& o, const char* key, double& out, bool required) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return !required;
  if (it->is_number()) { out = it->get<double>(); return std::isfinite(out); }
  if (it->is_string()) return to_double(it->get_ref<const std::string&>(), out);
  return false;
}

// "2018-01-20T22:08:35.424000" (a trailing Z is allowed).
bool iso_epoch(std::string_view s, elements& el) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0;
  double sec = 0;
  std::string str(s);
  if (!str.empty() && (str.back() == 'Z' || str.back() == 'z')) str.pop_back();
  char t = 0;
  int consumed = 0;
  if (std::sscanf(str.c_str(), "%4d-%2d-%2d%c%2d:%2d:%lf%n", &y, &mo, &d, &t, &h, &mi, &sec, &consumed) != 7 ||
      static_cast<std::size_t>(consumed) != str.size() || (t != 'T' && t != ' '))
    return false;
  if (y < 1957 || y > 2100 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec < 0 || sec >= 61)
    return false;
  double jd = 0, fr = 0, jd0 = 0, fr0 = 0;
  julian_date(y, mo, d, h, mi, sec, jd, fr);
  julian_date(y, 1, 1, 0, 0, 0.0, jd0, fr0);
  el.epoch_year = y;
  el.epoch_jd = jd;
  el.epoch_fr = fr;
  el.epoch_days = (jd - jd0) + fr + 1.0;
  return true;
}

}  // namespace

parse_result parse_omm(std::string_view json) {
  parse_result out;
  auto doc = nlohmann::json::parse(json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    out.error = "OMM: not a JSON object";
    return out;
  }
  elements el;
  auto str = [&](const char* key) -> std::string {
    auto it = doc.find(key);
    if (it == doc.end() || it->is_null()) return {};
    if (it->is_string()) return it->get<std::string>();
    return it->dump();
  };
  el.name = str("OBJECT_NAME");
  el.intl_designator = str("OBJECT_ID");
  double norad = 0;
  if (!json_number(doc, "NORAD_CAT_ID", norad, true) || norad < 0 || norad > 339999 || norad != std::floor(norad)) {
    out.error = "OMM: NORAD_CAT_ID missing or not a catalogue number";
    return out;
  }
  el.catalog_number = static_cast<long>(norad);
  el.satnum = std::to_string(el.catalog_number);
  std::string cls = str("CLASSIFICATION_TYPE");
  el.classification = cls.empty() ? 'U' : cls[0];
  if (!iso_epoch(str("EPOCH"), el)) {
    out.error = "OMM: EPOCH missing or not ISO-8601 (YYYY-MM-DDTHH:MM:SS[.ffffff])";
    return out;
  }
  struct field { const char* key; double* into; bool required; };
  double eph = 0, elnum = 0, rev = 0;
  const field fields[] = {
      {"MEAN_MOTION", &el.mean_motion, true},       {"ECCENTRICITY", &el.eccentricity, true},
      {"INCLINATION", &el.inclination_deg, true},   {"RA_OF_ASC_NODE", &el.raan_deg, true},
      {"ARG_OF_PERICENTER", &el.arg_perigee_deg, true}, {"MEAN_ANOMALY", &el.mean_anomaly_deg, true},
      {"BSTAR", &el.bstar, false},                  {"MEAN_MOTION_DOT", &el.ndot, false},
      {"MEAN_MOTION_DDOT", &el.nddot, false},       {"EPHEMERIS_TYPE", &eph, false},
      {"ELEMENT_SET_NO", &elnum, false},            {"REV_AT_EPOCH", &rev, false},
  };
  for (const auto& f : fields) {
    if (!json_number(doc, f.key, *f.into, f.required)) {
      out.error = std::string("OMM: ") + f.key + (f.required ? " missing or not a number" : " is not a number");
      return out;
    }
  }
  if (el.mean_motion <= 0 || el.eccentricity < 0 || el.eccentricity >= 1 || el.inclination_deg < 0 ||
      el.inclination_deg > 180) {
    out.error = "OMM: elements out of range (MEAN_MOTION > 0, 0 <= ECCENTRICITY < 1, 0 <= INCLINATION <= 180)";
    return out;
  }
  el.ephemeris_type = static_cast<int>(eph);
  el.element_number = static_cast<int>(elnum);
  el.rev_number = static_cast<long>(rev);
  out.value = std::move(el);
  return out;
}

}  // namespace skyrelay::orbit
