#include "skyrelay/orbit/passes.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <numbers>
#include <thread>

namespace skyrelay::orbit {
namespace {

constexpr double pi = std::numbers::pi;
constexpr double deg = pi / 180.0;
constexpr double margin = 1.0 * deg;          // covers the ellipsoid's tilt of "up" (< 0.2 deg)
                                              // and short-period wobble of the orbital plane
constexpr double fine_angle = 6.0 * deg;      // sampling step near a station, as angle travelled
                                              // (short enough that a step holds at most one
                                              // culmination or low point)
constexpr double root_tolerance_s = 1e-3;

struct sample {
  double t{0};
  bool ok{false};
  double f{0};     // elevation minus mask, rad
  double g{0};     // elevation rate, rad/s
  double az{0}, el{0}, range{0};
  double skip{0};  // seconds the satellite provably stays out of sight (<= 0: near)
};

// One satellite over one station.
class pair_search {
 public:
  pair_search(const sgp4& sat, const site& st, double dut1) : sat_(sat), st_(st), dut1_(dut1) {
    const auto& k = sat.constants();
    const double n = sat.mean_motion_rad_min() / 60.0;  // rad/s
    const double e = std::min(sat.eccentricity() + 0.03, 0.99);
    const double a = k.radius_km * std::pow(k.xke / sat.mean_motion_rad_min(), 2.0 / 3.0);
    // Fastest angular motion of the sub-satellite direction in the earth-fixed frame (at
    // perigee), with room for drag and perturbations.
    omega_psi_ = 1.1 * n * std::sqrt(1.0 + e) / std::pow(1.0 - e, 1.5) + earth_rotation_rad_s;
    // The station moves across the orbital plane no faster than the earth turns; the plane
    // itself precesses slowly.
    omega_delta_ = earth_rotation_rad_s + std::fabs(sat.nodedot()) / 60.0 + 2e-6;
    const double r_max = a * (1.0 + e) + 100.0;
    const double rs = std::sqrt(st.ecef[0] * st.ecef[0] + st.ecef[1] * st.ecef[1] + st.ecef[2] * st.ecef[2]);
    const double m = st.min_elevation_rad - margin;
    const double c = std::clamp(rs / r_max * std::cos(m), -1.0, 1.0);
    lambda_ = std::acos(c) - m + margin;  // visibility circle, as seen from the earth's centre
    for (int i = 0; i < 3; ++i) s_unit_[i] = st.ecef[i] / rs;
    fine_step_ = std::clamp(fine_angle / omega_psi_, 5.0, 1800.0);
  }

  void run(double start, double end, std::size_t si, std::size_t gi, std::vector<pass_window>& out);

 private:
  sample eval(double t, bool bounds);
  double refine(double ta, double va, double tb, double vb, bool on_rate);
  void interval(const sample& a, const sample& b);
  void monotone(const sample& a, const sample& b);
  void open_at(const sample& s, bool clipped);
  void close_at(const sample& s, bool clipped);
  void consider_max(const sample& s);

  const sgp4& sat_;
  const site& st_;
  double dut1_;
  double omega_psi_, omega_delta_, lambda_, fine_step_;
  double s_unit_[3];
  resonance_state rs_{};
  bool failed_{false};
  // the pass being built
  bool open_{false};
  pass_window cur_{};
  std::vector<pass_window>* out_{nullptr};
  std::size_t si_{0}, gi_{0};
};

sample pair_search::eval(double t, bool bounds) {
  sample s;
  s.t = t;
  double jd, fr;
  unix_to_jd(t, jd, fr);
  state_vector teme, ecef;
  if (sat_.propagate_jd(jd, fr, teme, &rs_) != sgp4_error::none) return s;
  const double theta = gmst82(ut1_jd(jd, fr, dut1_));
  teme_to_ecef(teme, theta, ecef);
  const look_angles la = look_from(st_, ecef);
  s.ok = true;
  s.el = la.elevation_rad;
  s.az = la.azimuth_rad;
  s.range = la.range_km;
  s.f = la.elevation_rad - st_.min_elevation_rad;
  s.g = la.elevation_rate_rad_s;
  if (!bounds) return s;
  // Angle between the satellite and the station seen from the earth's centre.
  const double cx = ecef.r[1] * s_unit_[2] - ecef.r[2] * s_unit_[1];
  const double cy = ecef.r[2] * s_unit_[0] - ecef.r[0] * s_unit_[2];
  const double cz = ecef.r[0] * s_unit_[1] - ecef.r[1] * s_unit_[0];
  const double dot = ecef.r[0] * s_unit_[0] + ecef.r[1] * s_unit_[1] + ecef.r[2] * s_unit_[2];
  const double psi = std::atan2(std::sqrt(cx * cx + cy * cy + cz * cz), dot);
  // Station's angular distance from the orbital plane (inertial angular momentum direction,
  // station rotated into TEME).
  const double hx = teme.r[1] * teme.v[2] - teme.r[2] * teme.v[1];
  const double hy = teme.r[2] * teme.v[0] - teme.r[0] * teme.v[2];
  const double hz = teme.r[0] * teme.v[1] - teme.r[1] * teme.v[0];
  const double hn = std::sqrt(hx * hx + hy * hy + hz * hz);
  const double c = std::cos(theta), sn = std::sin(theta);
  const double sx = c * s_unit_[0] - sn * s_unit_[1], sy = sn * s_unit_[0] + c * s_unit_[1], sz = s_unit_[2];
  const double sh = (hx * sx + hy * sy + hz * sz) / hn;
  const double delta = std::asin(std::clamp(sh, -1.0, 1.0));
  // How far ahead of the satellite, along its direction of motion, the station's projection on
  // the orbital plane lies: the satellite must cover that arc, less the visibility circle,
  // before it can be seen (it cannot be seen while the station is more than the circle ahead).
  const double rn = std::sqrt(teme.r[0] * teme.r[0] + teme.r[1] * teme.r[1] + teme.r[2] * teme.r[2]);
  const double px = teme.r[0] / rn, py = teme.r[1] / rn, pz = teme.r[2] / rn;
  const double qx = (hy * pz - hz * py) / hn, qy = (hz * px - hx * pz) / hn, qz = (hx * py - hy * px) / hn;
  double ahead = std::atan2(sx * qx + sy * qy + sz * qz, sx * px + sy * py + sz * pz);
  if (ahead < 0) ahead += 2.0 * pi;
  // The projection's angle moves with the satellite and, as the earth turns, by up to
  // omega_e / cos(delta): the bound holds while |delta| stays below delta_cap, so a skip is
  // also kept short enough that delta cannot get there. A station just behind the satellite
  // (within the circle) gives no bound at all.
  double along = 0.0;
  const double delta_cap = std::fabs(delta) + 30.0 * deg;
  if (ahead < 2.0 * pi - lambda_ && delta_cap < 85.0 * deg) {
    const double rate = omega_psi_ - earth_rotation_rad_s + omega_delta_ / std::cos(delta_cap);
    along = std::min((ahead - lambda_) / rate, 30.0 * deg / omega_delta_);
  }
  s.skip = std::max({(psi - lambda_) / omega_psi_, (std::fabs(delta) - lambda_) / omega_delta_, along});
  return s;
}

// Illinois (modified regula falsi) on elevation-above-mask or on elevation rate; the bracket
// [ta, tb] has values of opposite sign.
double pair_search::refine(double ta, double va, double tb, double vb, bool on_rate) {
  int side = 0;
  for (int i = 0; i < 60 && tb - ta > root_tolerance_s; ++i) {
    double t = (ta * vb - tb * va) / (vb - va);
    // Keep away from the ends so a flat side cannot stall the bracket.
    const double w = tb - ta;
    t = std::clamp(t, ta + 0.01 * w, tb - 0.01 * w);
    const sample s = eval(t, false);
    if (!s.ok) { failed_ = true; return t; }
    const double v = on_rate ? s.g : s.f;
    if ((v < 0) == (va < 0)) {
      ta = t;
      va = v;
      if (side == -1) vb *= 0.5;
      side = -1;
    } else {
      tb = t;
      vb = v;
      if (side == 1) va *= 0.5;
      side = 1;
    }
  }
  return 0.5 * (ta + tb);
}

void pair_search::open_at(const sample& s, bool clipped) {
  open_ = true;
  cur_ = pass_window{};
  cur_.satellite = si_;
  cur_.station = gi_;
  cur_.aos = s.t;
  cur_.aos_azimuth_deg = s.az / deg;
  cur_.starts_before = clipped;
  cur_.max_elevation_deg = -90.0;
  consider_max(s);
}

void pair_search::consider_max(const sample& s) {
  if (!open_ || s.el / deg <= cur_.max_elevation_deg) return;
  cur_.max_elevation_deg = s.el / deg;
  cur_.culmination = s.t;
  cur_.culmination_azimuth_deg = s.az / deg;
  cur_.culmination_range_km = s.range;
}

void pair_search::close_at(const sample& s, bool clipped) {
  if (!open_) return;
  consider_max(s);
  open_ = false;
  cur_.los = s.t;
  cur_.los_azimuth_deg = s.az / deg;
  cur_.ends_after = clipped;
  cur_.duration_s = cur_.los - cur_.aos;
  cur_.quality = pass_quality(cur_.max_elevation_deg * deg, st_.min_elevation_rad, cur_.duration_s);
  out_->push_back(cur_);
}

// Between two samples where the elevation is monotone: at most one crossing of the mask.
void pair_search::monotone(const sample& a, const sample& b) {
  if ((a.f < 0) == (b.f < 0)) return;
  const double t = refine(a.t, a.f, b.t, b.f, false);
  sample x = eval(t, false);
  if (!x.ok) return;
  if (a.f < 0) {
    open_at(x, false);
  } else {
    close_at(x, false);
  }
}

// Two consecutive samples; the step is short enough that at most one extremum lies between.
void pair_search::interval(const sample& a, const sample& b) {
  if ((a.g > 0 && b.g <= 0) || (a.g < 0 && b.g >= 0)) {
    const bool is_max = a.g > 0;
    // A maximum below the mask, between two samples below it, cannot matter.
    const double t = refine(a.t, a.g, b.t, b.g, true);
    sample x = eval(t, false);
    if (!x.ok) return;
    if (is_max && x.f < 0 && a.f < 0 && b.f < 0) return;
    monotone(a, x);
    if (is_max) consider_max(x);
    monotone(x, b);
  } else {
    monotone(a, b);
  }
}

void pair_search::run(double start, double end, std::size_t si, std::size_t gi, std::vector<pass_window>& out) {
  out_ = &out;
  si_ = si;
  gi_ = gi;
  sample prev = eval(start, true);
  if (!prev.ok) return;
  if (prev.f >= 0) open_at(prev, true);
  bool fine = prev.skip < fine_step_;
  double t = start;
  while (t < end && !failed_) {
    const double step = fine ? fine_step_ : prev.skip;
    t = std::min(t + step, end);
    sample s = eval(t, true);
    if (!s.ok) {
      failed_ = true;
      break;
    }
    // After a jump the whole stretch was out of sight (and so is s); only samples taken while
    // near are compared pairwise.
    if (fine) interval(prev, s);
    else consider_max(s);
    fine = s.skip < fine_step_;
    prev = s;
  }
  if (open_) close_at(prev, true);
}

}  // namespace

double pass_quality(double max_elevation_rad, double min_elevation_rad, double duration_s) {
  const double lo = std::sin(std::max(min_elevation_rad, 0.0));
  const double e = std::clamp((std::sin(max_elevation_rad) - lo) / (1.0 - lo), 0.0, 1.0);
  const double d = std::clamp(duration_s / 900.0, 0.0, 1.0);
  return 0.6 * e + 0.4 * d;
}

std::vector<pass_window> find_passes(std::span<const sgp4* const> satellites, std::span<const site> stations,
                                     double start, double end, const pass_options& options) {
  std::vector<pass_window> all;
  if (!(end > start) || satellites.empty() || stations.empty()) return all;
  const std::size_t pairs = satellites.size() * stations.size();
  unsigned threads = options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<std::size_t>(threads, pairs));
  std::vector<std::vector<pass_window>> parts(threads);
  std::atomic<std::size_t> next{0};
  auto work = [&](unsigned id) {
    for (;;) {
      const std::size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= pairs) break;
      const std::size_t si = i / stations.size(), gi = i % stations.size();
      const sgp4* sat = satellites[si];
      if (!sat || sat->init_error() != sgp4_error::none) continue;
      pair_search search(*sat, stations[gi], options.dut1_s);
      search.run(start, end, si, gi, parts[id]);
    }
  };
  if (threads <= 1) {
    work(0);
  } else {
    std::vector<std::thread> pool;
    for (unsigned i = 0; i < threads; ++i) pool.emplace_back(work, i);
    for (auto& th : pool) th.join();
  }
  for (auto& p : parts) all.insert(all.end(), p.begin(), p.end());
  std::sort(all.begin(), all.end(), [](const pass_window& a, const pass_window& b) {
    if (a.aos != b.aos) return a.aos < b.aos;
    if (a.satellite != b.satellite) return a.satellite < b.satellite;
    return a.station < b.station;
  });
  return all;
}

}  // namespace skyrelay::orbit
