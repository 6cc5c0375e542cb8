// Pass prediction: when each satellite rises above and sets below each ground station's
// elevation mask in a time window, with the time and value of maximum elevation.
//
// Each satellite is propagated once (the batch path) on an even grid with at most 0.24 rad of
// motion per step (0.12 rad for eccentricities of 0.02 and above), and every station searches that
// track: a dot product per grid point, in SIMD lanes, rules out the steps where the satellite
// cannot be within the station's visibility circle; in the others the elevation and its rate, on
// a quintic Hermite interpolant of the track's positions, velocities and accelerations (0.6 m
// of error at the median over gpredict's near-circular satellites, 9 m at most), locate culminations (sign changes of the rate) and rises
// and sets (Newton on the sine of the elevation), to a millisecond. Times are Unix seconds (UTC,
// leap seconds not counted, as time_t).
#pragma once

#include <cstddef>
#include <span>
#include <cstdint>
#include <vector>

#include "skyrelay/orbit/frames.hpp"
#include "skyrelay/orbit/sgp4.hpp"

namespace skyrelay::orbit {

struct pass_window {
  std::size_t satellite{0};  // index into the satellites given
  std::size_t station{0};    // index into the stations given
  double aos{0};             // rise above the mask (or the window start, see starts_before)
  double los{0};             // set below the mask (or the window end, see ends_after)
  double culmination{0};     // time of the maximum elevation within [aos, los]
  double max_elevation_deg{0};
  double aos_azimuth_deg{0}, los_azimuth_deg{0}, culmination_azimuth_deg{0};
  double culmination_range_km{0};
  double duration_s{0};
  double quality{0};         // 0..1, see pass_quality
  bool starts_before{false}; // already above the mask at the window start
  bool ends_after{false};    // still above the mask at the window end (or propagation failed)
};

struct pass_options {
  double dut1_s{0};      // UT1 - UTC
  unsigned threads{0};   // 0: all cores
};

// Quality in [0, 1]: 0.6 weight on elevation (sin of the maximum elevation, scaled so that the
// mask scores 0 and the zenith 1) and 0.4 on duration (linear up to 15 minutes, then 1).
double pass_quality(double max_elevation_rad, double min_elevation_rad, double duration_s);

// Every pass of every satellite over every station (each station's own mask) in
// [start, end], sorted by AOS. Satellites that fail to initialise are skipped; a propagation
// error ends that satellite's search at the last good time.
std::vector<pass_window> find_passes(std::span<const sgp4* const> satellites,
                                     std::span<const site> stations, double start, double end,
                                     const pass_options& options = {});

// The same windows, left in the order the search found them (each satellite's, by station, then
// AOS), with `order`: windows[order[k]] is find_passes' k-th. For callers that copy the windows
// out anyway (the Python columns), which then skip find_passes' reordering in place, a chain of
// dependent moves all over the vector.
std::vector<pass_window> find_passes_unordered(std::span<const sgp4* const> satellites,
                                               std::span<const site> stations, double start, double end,
                                               const pass_options& options, std::vector<std::uint32_t>& order);

// Unix seconds to a two-part Julian date.
inline void unix_to_jd(double t, double& jd, double& fr) {
  const double days = t / 86400.0;
  const double whole = static_cast<double>(static_cast<long long>(days >= 0 ? days : days - 1.0));
  jd = 2440587.5 + whole;
  fr = (t - whole * 86400.0) / 86400.0;
}

}  // namespace skyrelay::orbit
