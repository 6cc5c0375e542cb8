// Mean orbital elements as published in two-line element sets (TLE) and CCSDS OMM JSON, and
// their parsers. Pure functions, no I/O; bad input comes back as an error message, never an
// exception.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace skyrelay::orbit {

// One element set in the units of the TLE format, plus the epoch as a two-part Julian date
// (UTC): `epoch_jd` is a whole day ending in .5 and `epoch_fr` the fraction, which keeps
// microsecond resolution that a single double would lose.
struct elements {
  std::string name;             // line 0 or OBJECT_NAME; may be empty
  std::string satnum;           // catalogue number as written (five characters, Alpha-5 allowed)
  long catalog_number{0};       // Alpha-5 decoded: A0000 = 100000
  char classification{'U'};
  std::string intl_designator;  // e.g. "98067A"; may be empty
  int epoch_year{0};            // four digits
  double epoch_days{0};         // day of year, 1.0 = 1 January 0h
  double epoch_jd{0};
  double epoch_fr{0};
  double ndot{0};               // first derivative of mean motion / 2, rev/day^2
  double nddot{0};              // second derivative / 6, rev/day^3
  double bstar{0};              // drag term, 1/earth radii
  int ephemeris_type{0};
  int element_number{0};
  double inclination_deg{0};
  double raan_deg{0};
  double eccentricity{0};
  double arg_perigee_deg{0};
  double mean_anomaly_deg{0};
  double mean_motion{0};        // rev/day (Kozai)
  long rev_number{0};
};

struct parse_result {
  std::optional<elements> value;
  std::string error;            // set when value is empty
  bool checksum_ok[2]{true, true};  // reported, never enforced
};

// A two-line set; `name` is the optional title line (a leading "0 " is dropped). Only the
// first 69 columns count: anything after them (such as the start/stop/step of the
// verification file) is ignored.
parse_result parse_tle(std::string_view line1, std::string_view line2, std::string_view name = {});

// A whole file of two- and three-line sets. Blank lines and lines starting with '#' are
// skipped. Each bad set adds "line N: message" to `errors` and parsing goes on.
struct tle_file {
  std::vector<elements> sets;
  std::vector<std::string> errors;
  std::vector<std::string> checksum_warnings;
};
tle_file parse_tle_text(std::string_view text);

// One CCSDS OMM record in JSON (the keys CelesTrak and Space-Track use: OBJECT_NAME,
// NORAD_CAT_ID, EPOCH, MEAN_MOTION, ...); numbers may also be given as strings.
parse_result parse_omm(std::string_view json);

// The TLE checksum of a line's first 68 columns (digits count their value, '-' counts 1).
int tle_checksum(std::string_view line);

// Julian date of a proleptic Gregorian UTC calendar date, split as (whole day .5, fraction).
void julian_date(int year, int month, int day, int hour, int minute, double second,
                 double& jd, double& fr);

}  // namespace skyrelay::orbit
