// Orbit module units: TLE/OMM parsing, calendar, frames and look angles. The propagator itself
// is checked against the reference output in tests/python/test_orbit.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include "skyrelay/orbit/elements.hpp"
#include "skyrelay/orbit/frames.hpp"
#include "skyrelay/orbit/passes.hpp"
#include "skyrelay/orbit/positions_json.hpp"
#include "skyrelay/orbit/sgp4.hpp"

using namespace skyrelay::orbit;

namespace {
constexpr const char* l1 = "1 25544U 98067A   18020.89808844  .00002078  00000-0  38550-4 0  9992";
constexpr const char* l2 = "2 25544  51.6424  32.9776 0003646  28.7227  39.5332 15.54190080 95614";
constexpr double deg = std::numbers::pi / 180.0;
}  // namespace

TEST(Tle, ReadsEveryField) {
  auto r = parse_tle(l1, l2, "0 ISS (ZARYA)");
  ASSERT_TRUE(r.value) << r.error;
  const elements& e = *r.value;
  EXPECT_EQ(e.name, "ISS (ZARYA)");
  EXPECT_EQ(e.satnum, "25544");
  EXPECT_EQ(e.intl_designator, "98067A");
  EXPECT_EQ(e.epoch_year, 2018);
  EXPECT_DOUBLE_EQ(e.epoch_days, 20.89808844);
  EXPECT_DOUBLE_EQ(e.ndot, 0.00002078);
  EXPECT_DOUBLE_EQ(e.bstar, 0.38550e-4);
  EXPECT_DOUBLE_EQ(e.eccentricity, 0.0003646);
  EXPECT_DOUBLE_EQ(e.mean_motion, 15.54190080);
  EXPECT_EQ(e.rev_number, 9561);
  EXPECT_TRUE(r.checksum_ok[0]);
  EXPECT_TRUE(r.checksum_ok[1]);
  // 2018-01-20 is JD 2458138.5 at 0h.
  EXPECT_DOUBLE_EQ(e.epoch_jd, 2458138.5);
  EXPECT_NEAR(e.epoch_fr, 0.89808844, 1e-14);
}

TEST(Tle, ChecksumIsReportedNotEnforced) {
  std::string bad = l1;
  bad.back() = '1';  // the right digit is 2
  auto r = parse_tle(bad, l2);
  ASSERT_TRUE(r.value);
  EXPECT_FALSE(r.checksum_ok[0]);
  EXPECT_TRUE(r.checksum_ok[1]);
}

TEST(Tle, ErrorsNameLineAndColumns) {
  std::string bad = l2;
  bad.replace(8, 8, " 51.x424");
  auto r = parse_tle(l1, bad);
  EXPECT_FALSE(r.value);
  EXPECT_NE(r.error.find("line 2: bad inclination (columns 9-16)"), std::string::npos) << r.error;
  EXPECT_NE(parse_tle("1 2", l2).error.find("too short"), std::string::npos);
  EXPECT_NE(parse_tle(l2, l1).error.find("must start with '1 '"), std::string::npos);
  std::string other = l2;
  other.replace(2, 5, "11111");
  EXPECT_NE(parse_tle(l1, other).error.find("differs"), std::string::npos);
}

TEST(Tle, ImpliedDecimalsAndAlpha5) {
  std::string a = l1, b = l2;
  a.replace(2, 5, "Z9999");
  b.replace(2, 5, "Z9999");
  a.replace(53, 8, "-11606-4");
  auto r = parse_tle(a, b);
  ASSERT_TRUE(r.value) << r.error;
  EXPECT_EQ(r.value->catalog_number, 339999);  // Z is the 24th Alpha-5 letter (I and O skipped)
  EXPECT_DOUBLE_EQ(r.value->bstar, -0.11606e-4);
}

TEST(Tle, FileWithTitlesCommentsAndErrors) {
  std::string text = std::string("# comment\nISS\n") + l1 + "\n" + l2 + "\r\n\nORPHAN\n" + l1 + "\n" + l1 + "\n" + l2 + "\n";
  auto f = parse_tle_text(text);
  ASSERT_EQ(f.sets.size(), 2u);
  EXPECT_EQ(f.sets[0].name, "ISS");
  EXPECT_EQ(f.sets[1].name, "");
  ASSERT_EQ(f.errors.size(), 1u);
  EXPECT_EQ(f.errors[0].rfind("line 7:", 0), 0u) << f.errors[0];
}

TEST(Omm, ReadsNumbersAndStrings) {
  auto r = parse_omm(R"j({"OBJECT_NAME":"ISS (ZARYA)","NORAD_CAT_ID":"25544","EPOCH":"2018-01-20T12:42:59.999904",
    "MEAN_MOTION":15.5425374,"ECCENTRICITY":"0.0003381","INCLINATION":51.6418,"RA_OF_ASC_NODE":48.3856,
    "ARG_OF_PERICENTER":340.5367,"MEAN_ANOMALY":101.7005,"BSTAR":4.0768e-5})j");
  ASSERT_TRUE(r.value) << r.error;
  EXPECT_EQ(r.value->catalog_number, 25544);
  EXPECT_DOUBLE_EQ(r.value->epoch_jd, 2458138.5);
  EXPECT_NEAR(r.value->epoch_fr, 0.52986111, 1e-11);
  EXPECT_FALSE(parse_omm("{}").value);
  EXPECT_NE(parse_omm(R"({"NORAD_CAT_ID":1,"EPOCH":"2018-13-01T00:00:00"})").error.find("EPOCH"), std::string::npos);
  EXPECT_NE(parse_omm("[").error.find("not a JSON object"), std::string::npos);
}

TEST(Calendar, JulianDates) {
  double jd, fr;
  julian_date(2000, 1, 1, 12, 0, 0.0, jd, fr);
  EXPECT_DOUBLE_EQ(jd + fr, 2451545.0);
  julian_date(1957, 10, 4, 19, 28, 34.0, jd, fr);  // Sputnik 1
  EXPECT_DOUBLE_EQ(jd, 2436115.5);
  EXPECT_NEAR(fr, (19 * 3600 + 28 * 60 + 34) / 86400.0, 1e-15);
}

TEST(Frames, GmstAtJ2000AndGeodeticRoundTrip) {
  // GMST at 2000-01-01 12:00 UT1 is 280.46061837 degrees (IAU 1982).
  EXPECT_NEAR(gmst82(2451545.0) / deg, 280.46061837, 1e-8);
  for (double lat : {-89.9, -45.0, 0.0, 33.3, 89.99}) {
    for (double alt : {0.0, 1.2, 420.0, 35786.0}) {
      geodetic g{lat * deg, 123.4 * deg, alt};
      double r[3];
      geodetic_to_ecef(g, r);
      geodetic back = ecef_to_geodetic(r);
      EXPECT_NEAR(back.latitude_rad / deg, lat, 1e-10);
      EXPECT_NEAR(back.longitude_rad / deg, 123.4, 1e-10);
      EXPECT_NEAR(back.altitude_km, alt, 1e-8);
    }
  }
}

TEST(Frames, LookAnglesOfAPointStraightUpAndDueEast) {
  site s = make_site(40.0, -105.0, 1.6);
  geodetic above = s.where;
  above.altitude_km += 500.0;
  state_vector sv{};
  geodetic_to_ecef(above, sv.r);
  look_angles la = look_from(s, sv);
  EXPECT_NEAR(la.elevation_rad / deg, 90.0, 1e-9);
  EXPECT_NEAR(la.range_km, 500.0, 1e-9);
  // A point displaced east along the local east vector, rising at 1 km/s.
  const double east[3] = {-s.sin_lon, s.cos_lon, 0.0};
  const double up[3] = {s.cos_lat * s.cos_lon, s.cos_lat * s.sin_lon, s.sin_lat};
  for (int i = 0; i < 3; ++i) {
    sv.r[i] = s.ecef[i] + 100.0 * east[i];
    sv.v[i] = up[i];
  }
  la = look_from(s, sv);
  EXPECT_NEAR(la.azimuth_rad / deg, 90.0, 1e-9);
  EXPECT_NEAR(la.elevation_rad / deg, 0.0, 1e-9);
  EXPECT_NEAR(la.elevation_rate_rad_s, 1.0 / 100.0, 1e-12);
  EXPECT_NEAR(la.range_rate_km_s, 0.0, 1e-12);
}

TEST(Sgp4, DeepSpaceChosenByPeriodAndErrorsAreData) {
  auto iss = parse_tle(l1, l2);
  sgp4 near(*iss.value);
  EXPECT_FALSE(near.deep_space());
  EXPECT_EQ(near.init_error(), sgp4_error::none);
  elements geo = *iss.value;
  geo.mean_motion = 1.00270;
  geo.eccentricity = 0.0002;
  EXPECT_TRUE(sgp4(geo).deep_space());
  elements bad = *iss.value;
  bad.eccentricity = 0.9999;
  bad.mean_motion = 16.0;  // perigee far inside the earth
  state_vector sv;
  EXPECT_NE(sgp4(bad).propagate(0.0, sv), sgp4_error::none);
  EXPECT_STREQ(describe(sgp4_error::decayed), "satellite has decayed (radius below one earth radius)");
}

TEST(Passes, QualityIsMonotoneAndBounded) {
  EXPECT_DOUBLE_EQ(pass_quality(90 * deg, 0, 900), 1.0);
  EXPECT_DOUBLE_EQ(pass_quality(0, 0, 0), 0.0);
  EXPECT_LT(pass_quality(20 * deg, 0, 300), pass_quality(40 * deg, 0, 300));
  EXPECT_LT(pass_quality(40 * deg, 0, 300), pass_quality(40 * deg, 0, 600));
  EXPECT_DOUBLE_EQ(pass_quality(10 * deg, 10 * deg, 0), 0.0);
}

TEST(Passes, FindsTheIssOverCopenhagenInOrder) {
  auto iss = parse_tle(l1, l2);
  sgp4 prop(*iss.value);
  const sgp4* sats[] = {&prop};
  const site stations[] = {make_site(55.68, 12.57, 0.01, 10.0)};
  const double start = 1516492800.0;  // 2018-01-21T00:00:00Z
  auto found = find_passes(sats, stations, start, start + 86400.0, {0.0, 1});
  ASSERT_GE(found.size(), 3u);
  for (std::size_t i = 0; i < found.size(); ++i) {
    const auto& p = found[i];
    EXPECT_LT(p.aos, p.culmination);
    EXPECT_LT(p.culmination, p.los);
    EXPECT_GE(p.max_elevation_deg, 10.0);
    if (i) EXPECT_LT(found[i - 1].los, p.aos);
  }
  auto threaded = find_passes(sats, stations, start, start + 86400.0, {0.0, 2});
  ASSERT_EQ(threaded.size(), found.size());
  EXPECT_DOUBLE_EQ(threaded[0].aos, found[0].aos);
  EXPECT_TRUE(find_passes(sats, stations, start, start, {}).empty());
}

// The result's order, (AOS, satellite, station), whatever the number of threads: the same windows
// in the same order from one thread and from three, ties on the AOS (passes already under way at
// the window's start, all at its first second) broken by satellite and then station.
TEST(Passes, SortedByAosThenSatelliteThenStationOnAnyThreads) {
  auto iss = parse_tle(l1, l2);
  std::vector<sgp4> props;
  for (int k = 0; k < 12; ++k) {
    elements e = *iss.value;
    e.mean_anomaly_deg = std::fmod(e.mean_anomaly_deg + 30.0 * k, 360.0);
    e.raan_deg = std::fmod(e.raan_deg + 17.0 * k, 360.0);
    props.emplace_back(e);
  }
  std::vector<const sgp4*> sats;
  for (const auto& p : props) sats.push_back(&p);
  std::vector<site> stations;
  for (int k = 0; k < 6; ++k) stations.push_back(make_site(-50.0 + 20.0 * k, -150.0 + 55.0 * k, 0.0, 0.0));
  const double start = 1516492800.0;
  const auto one = find_passes(sats, stations, start, start + 86400.0, {0.0, 1});
  const auto three = find_passes(sats, stations, start, start + 86400.0, {0.0, 3});
  ASSERT_GT(one.size(), 100u);
  ASSERT_EQ(one.size(), three.size());
  std::size_t under_way = 0;
  for (std::size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(one[i].satellite, three[i].satellite);
    EXPECT_EQ(one[i].station, three[i].station);
    EXPECT_EQ(one[i].aos, three[i].aos);
    EXPECT_EQ(one[i].los, three[i].los);
    under_way += one[i].starts_before;
    if (i) {
      const auto& a = one[i - 1];
      const auto& b = one[i];
      EXPECT_TRUE(a.aos < b.aos || (a.aos == b.aos && (a.satellite < b.satellite ||
                                                       (a.satellite == b.satellite && a.station < b.station))))
          << i;
    }
  }
  EXPECT_GE(under_way, 2u);  // the ties the order must break
  // find_passes_unordered's windows read through its order are find_passes' own, on any threads.
  for (unsigned threads : {1u, 3u}) {
    std::vector<std::uint32_t> order;
    const auto found = find_passes_unordered(sats, stations, start, start + 86400.0, {0.0, threads}, order);
    ASSERT_EQ(order.size(), one.size());
    ASSERT_EQ(found.size(), one.size());
    std::vector<bool> seen(found.size(), false);
    for (std::size_t i = 0; i < one.size(); ++i) {
      ASSERT_LT(order[i], found.size());
      EXPECT_FALSE(seen[order[i]]) << i;
      seen[order[i]] = true;
      const auto& p = found[order[i]];
      EXPECT_EQ(p.satellite, one[i].satellite) << threads << " " << i;
      EXPECT_EQ(p.station, one[i].station) << threads << " " << i;
      EXPECT_EQ(p.aos, one[i].aos) << threads << " " << i;
      EXPECT_EQ(p.los, one[i].los) << threads << " " << i;
      EXPECT_EQ(p.max_elevation_deg, one[i].max_elevation_deg) << threads << " " << i;
    }
  }
}

// The pass search against the scalar propagator sampled densely: every moment above a mask lies in
// a reported pass; each reported rise and set brackets the mask within 0.1 s and each culmination
// is the exact elevation's maximum to 2e-3 degree. Orbits on both of the search's grid steps:
// near-circular (ISS, and e = 0.015 just below the switch) and eccentric (e = 0.19 in low orbit,
// Molniya), and a geostationary one; and the grid uneven in time that orbits from e = 0.1 take
// (e = 0.19, Molniya, a transfer orbit and a 2.8-day orbit at e = 0.9), whose rises and sets are
// held to 0.02 s.
TEST(Passes, AgreeWithExactStatesSampledDensely) {
  auto iss = parse_tle(l1, l2);
  elements slightly = *iss.value;
  slightly.eccentricity = 0.015;
  elements eccentric = *iss.value;
  eccentric.mean_motion = 11.78;
  eccentric.eccentricity = 0.19;
  eccentric.inclination_deg = 75.0;
  elements molniya = *iss.value;
  molniya.mean_motion = 2.00613;
  molniya.eccentricity = 0.72;
  molniya.inclination_deg = 63.4;
  molniya.arg_perigee_deg = 270.0;
  elements geo = *iss.value;
  geo.mean_motion = 1.00271;
  geo.eccentricity = 0.0002;
  geo.inclination_deg = 0.05;
  geo.bstar = 0.0;
  elements transfer = *iss.value;
  transfer.mean_motion = 2.25;
  transfer.eccentricity = 0.73;
  transfer.inclination_deg = 27.0;
  transfer.arg_perigee_deg = 180.0;
  transfer.bstar = 0.0;
  elements high = *iss.value;
  high.mean_motion = 0.36;
  high.eccentricity = 0.905;
  high.inclination_deg = 55.0;
  high.arg_perigee_deg = 90.0;
  high.bstar = 0.0;
  std::vector<sgp4> props;
  for (const elements& e : {*iss.value, slightly, eccentric, molniya, geo, transfer, high}) props.emplace_back(e);
  const bool eccentric_from_01[] = {false, false, true, true, false, true, true};
  std::vector<const sgp4*> sats;
  for (const auto& p : props) sats.push_back(&p);
  const site stations[] = {make_site(55.68, 12.57, 0.01, 10.0), make_site(0.5, -20.0, 0.0, 0.0),
                           make_site(-33.9, 151.2, 0.05, 5.0)};
  const double start = 1516492800.0;  // 2018-01-21T00:00:00Z
  const double end = start + 86400.0;
  const auto found = find_passes(sats, stations, start, end, {0.0, 1});
  ASSERT_GT(found.size(), 20u);
  auto elevation_deg = [&](std::size_t si, std::size_t gi, double t) {
    double jd, fr;
    unix_to_jd(t, jd, fr);
    state_vector teme, ecef;
    EXPECT_EQ(props[si].propagate(props[si].minutes_since_epoch(jd, fr), teme), sgp4_error::none);
    teme_to_ecef(teme, gmst82(ut1_jd(jd, fr, 0.0)), ecef);
    return look_from(stations[gi], ecef).elevation_rad / deg;
  };
  for (std::size_t si = 0; si < sats.size(); ++si) {
    for (std::size_t gi = 0; gi < std::size(stations); ++gi) {
      const double mask = stations[gi].min_elevation_rad / deg;
      std::vector<pass_window> mine;
      for (const auto& p : found)
        if (p.satellite == si && p.station == gi) mine.push_back(p);
      for (double t = start; t <= end; t += 5.0) {
        if (elevation_deg(si, gi, t) <= mask) continue;
        bool inside = false;
        for (const auto& p : mine) inside |= p.aos - 1.0 <= t && t <= p.los + 1.0;
        EXPECT_TRUE(inside) << "missed: satellite " << si << " station " << gi << " t " << t - start;
      }
      for (const auto& p : mine) {
        // The exact maximum within 10 s of ours, sampled every 0.25 s (the culminations of the
        // slow orbits are too flat to time more closely than that).
        double top = -90.0, top_t = 0.0;
        for (int k = -40; k <= 40; ++k) {
          const double t = std::clamp(p.culmination + 0.25 * k, p.aos, p.los), e = elevation_deg(si, gi, t);
          if (e > top) top = e, top_t = t;
        }
        EXPECT_NEAR(p.max_elevation_deg, elevation_deg(si, gi, p.culmination), 2e-3) << si << " " << gi;
        EXPECT_NEAR(p.max_elevation_deg, top, 2e-3) << si << " " << gi << " " << p.culmination - start;
        if (si < 2) {  // low orbits: a sharp maximum, timed too
          EXPECT_NEAR(p.culmination, top_t, 0.25) << si << " " << gi;
        }
        if (p.max_elevation_deg < mask + 0.2) continue;  // grazing: the crossings are ill-conditioned
        // The uneven grid's satellites within 0.02 s: with SGP4's own velocities at its points
        // (rather than the positions' derivatives) the transfer orbit's rises miss that.
        const double tol = eccentric_from_01[si] ? 0.02 : 0.1;
        if (!p.starts_before) {
          EXPECT_LT(elevation_deg(si, gi, p.aos - tol), mask) << si << " " << gi << " " << p.aos - start;
          EXPECT_GT(elevation_deg(si, gi, p.aos + tol), mask) << si << " " << gi << " " << p.aos - start;
        }
        if (!p.ends_after) {
          EXPECT_GT(elevation_deg(si, gi, p.los - tol), mask) << si << " " << gi << " " << p.los - start;
          EXPECT_LT(elevation_deg(si, gi, p.los + tol), mask) << si << " " << gi << " " << p.los - start;
        }
      }
    }
  }
}

TEST(Sgp4, BatchPathMatchesScalarNearAndDeep) {
  auto iss = parse_tle(l1, l2);
  elements molniya = *iss.value;  // a 12-hour resonant orbit
  molniya.mean_motion = 2.00613;
  molniya.eccentricity = 0.72;
  molniya.inclination_deg = 63.4;
  molniya.arg_perigee_deg = 270.0;
  elements geo = *iss.value;      // a 24-hour resonant, low-inclination orbit (Lyddane terms)
  geo.mean_motion = 1.00271;
  geo.eccentricity = 0.0002;
  geo.inclination_deg = 0.05;
  geo.bstar = 0.0;
  for (const elements& e : {*iss.value, molniya, geo}) {
    sgp4 p(e);
    std::vector<double> ts;
    for (double t = -3000.0; t < 9000.0; t += 7.3) ts.push_back(t);
    std::vector<double> r(ts.size() * 3), v(ts.size() * 3);
    std::vector<std::int8_t> err(ts.size());
    p.propagate_batch(ts.data(), ts.size(), r.data(), v.data(), err.data());
    for (std::size_t i = 0; i < ts.size(); ++i) {
      state_vector sv;
      const auto code = p.propagate(ts[i], sv);
      ASSERT_EQ(static_cast<int>(code), err[i]) << e.mean_motion << " t=" << ts[i];
      if (code != sgp4_error::none) continue;
      for (int c = 0; c < 3; ++c) {
        EXPECT_NEAR(r[3 * i + c], sv.r[c], 1e-6) << e.mean_motion << " t=" << ts[i];
        EXPECT_NEAR(v[3 * i + c], sv.v[c], 1e-9) << e.mean_motion << " t=" << ts[i];
      }
    }
  }
}

// The same times give the same bits wherever the caller's rows lie: positions and velocities
// written into one buffer side by side, a few doubles apart or far apart (the distances at which
// GCC's run-time overlap check once chose a scalar copy of the output loop, a last bit off).
TEST(Sgp4, BatchResultsDoNotDependOnWhereTheRowsLie) {
  sgp4 p(*parse_tle(l1, l2).value);
  for (std::size_t n : {1u, 4u, 7u, 8u, 13u, 64u, 100u}) {
    std::vector<double> ts;
    for (std::size_t i = 0; i < n; ++i) ts.push_back(1038.5 + 1.5 * static_cast<double>(i));
    std::vector<double> r0(3 * n), v0(3 * n);
    std::vector<std::int8_t> e0(n), e1(n);
    p.propagate_batch(ts.data(), n, r0.data(), v0.data(), e0.data());
    std::vector<double> buffer(16 * n + 4096);
    for (std::size_t gap : {3 * n, 3 * n + 1, 3 * n + 8, 6 * n, 12 * n + 64, 3 * n + 2048}) {
      double* r = buffer.data();
      double* v = r + gap;
      p.propagate_batch(ts.data(), n, r, v, e1.data());
      for (std::size_t i = 0; i < 3 * n; ++i) {
        ASSERT_EQ(r[i], r0[i]) << "n=" << n << " gap=" << gap << " i=" << i;
        ASSERT_EQ(v[i], v0[i]) << "n=" << n << " gap=" << gap << " i=" << i;
      }
      ASSERT_EQ(e1, e0);
    }
  }
}

TEST(PositionsJson, FloatsAsPythonReprWritesThem) {
  const std::pair<double, const char*> cases[] = {
      {0.0, "0.0"}, {-0.0, "-0.0"}, {12.0, "12.0"}, {0.0001, "0.0001"}, {1e-05, "1e-05"},
      {-4.5e-07, "-4.5e-07"}, {0.1, "0.1"}, {1.0 / 3.0, "0.3333333333333333"},
      {1e15, "1000000000000000.0"}, {1e16, "1e+16"}, {1.5e300, "1.5e+300"}, {-179.9999, "-179.9999"}};
  for (const auto& [value, text] : cases) {
    std::string out;
    skyrelay::orbit::append_python_float(out, value);
    EXPECT_EQ(out, text) << value;
  }
}

TEST(PositionsJson, RoundsLikeNumpyAndLeavesOutFailedSatellites) {
  const skyrelay::orbit::positions_encoder enc({"{\"name\":\"A\",\"position\":{\"latitude\":",
                                                "{\"name\":\"B\",\"position\":{\"latitude\":"});
  const double lat[] = {51.123456, std::nan("")}, lon[] = {-0.00005, 1.0}, alt[] = {420.125, 1.0};
  // 0.00005 * 1e4 rounds half to even (to 0, negative: -0.0); 420.125 * 100 is 42012.5 -> 42012.
  EXPECT_EQ(enc.encode(lat, lon, alt, 2, "\"T\""),
            "{\"satellites\":[{\"name\":\"A\",\"position\":{\"latitude\":51.1235,\"longitude\":-0.0,"
            "\"altitude_km\":420.12},\"timestamp\":\"T\"}],\"count\":1,\"timestamp\":\"T\"}");
}
