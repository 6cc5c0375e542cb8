#include "skyrelay/orbit/passes.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <cstring>
#include <memory>
#include <numbers>
#include <thread>

namespace skyrelay::orbit {
namespace {

constexpr double pi = std::numbers::pi;
constexpr double deg = pi / 180.0;
constexpr double margin = 1.0 * deg;       // the ellipsoid's tilt of "up" (< 0.2 deg) and more
constexpr double grid_angle = 0.12;        // rad the satellite may turn between grid points
constexpr double root_tolerance_s = 1e-3;

// One satellite's earth-fixed states on an even grid of times, shared by every station. Between
// grid points the state is a cubic Hermite interpolant of positions and velocities: with at most
// 0.06 rad of motion per step its error is below a metre (about 1e-4 s along track), so rises,
// sets and culminations found on it agree with exact propagation to a millisecond.
struct track {
  double t0{0}, h{0};
  std::size_t n{0};      // usable points: up to the first propagation error
  // Structure of arrays (the station scan vectorises over them), left uninitialised on purpose:
  // every element is written before it is read.
  std::unique_ptr<double[]> x, y, z, vx, vy, vz, rn;
  double r_max{0};
};

track build_track(const sgp4& sat, double start, double end, double dut1) {
  track tr;
  const double n = sat.mean_motion_rad_min() / 60.0;  // rad/s
  const double e = std::min(sat.eccentricity() + 0.03, 0.99);
  // Fastest angular motion in the earth-fixed frame (at perigee), with room for perturbations.
  const double omega = 1.1 * n * std::sqrt(1.0 + e) / std::pow(1.0 - e, 1.5) + earth_rotation_rad_s;
  tr.h = std::clamp(grid_angle / omega, 1.0, 900.0);
  tr.t0 = start;
  const std::size_t count = static_cast<std::size_t>(std::ceil((end - start) / tr.h)) + 1;
  std::unique_ptr<double[]> ts(new double[count]);
  double jd0, fr0;
  unix_to_jd(start, jd0, fr0);
  const double base = sat.minutes_since_epoch(jd0, fr0);
  for (std::size_t i = 0; i < count; ++i) ts[i] = base + static_cast<double>(i) * tr.h / 60.0;
  std::unique_ptr<double[]> r(new double[3 * count]), v(new double[3 * count]);
  std::unique_ptr<std::int8_t[]> err(new std::int8_t[count]);
  sat.propagate_batch(ts.get(), count, r.get(), v.get(), err.get());
  std::size_t valid = 0;
  while (valid < count && err[valid] == 0) ++valid;
  tr.n = valid;
  // GMST advances linearly to far better than a microradian over any window a pass search
  // covers; step its sine and cosine by rotation, re-anchored every 256 points.
  const double theta0 = gmst82(ut1_jd(jd0, fr0, dut1));
  // d(GMST)/dt from the IAU-82 polynomial at the window's start, in rad/s.
  const double tut1 = (ut1_jd(jd0, fr0, dut1) - 2451545.0) / 36525.0;
  const double dsec_dcentury = 876600.0 * 3600.0 + 8640184.812866 + 2.0 * 0.093104 * tut1 - 3.0 * 6.2e-6 * tut1 * tut1;
  const double omega_gmst = dsec_dcentury / (36525.0 * 86400.0) * (deg / 240.0);
  for (auto* a : {&tr.x, &tr.y, &tr.z, &tr.vx, &tr.vy, &tr.vz, &tr.rn}) a->reset(new double[valid + 1]);
  double c = 0, s = 0;
  const double dc = std::cos(omega_gmst * tr.h), ds = std::sin(omega_gmst * tr.h);
  for (std::size_t i = 0; i < valid; ++i) {
    if (i % 256 == 0) {
      const double th = theta0 + omega_gmst * tr.h * static_cast<double>(i);
      c = std::cos(th);
      s = std::sin(th);
    } else {
      const double c2 = c * dc - s * ds;
      s = s * dc + c * ds;
      c = c2;
    }
    state_vector teme{{r[3 * i], r[3 * i + 1], r[3 * i + 2]}, {v[3 * i], v[3 * i + 1], v[3 * i + 2]}};
    // teme_to_ecef with the rotation's sine and cosine given
    const double x = c * teme.r[0] + s * teme.r[1], y = -s * teme.r[0] + c * teme.r[1];
    tr.x[i] = x;
    tr.y[i] = y;
    tr.z[i] = teme.r[2];
    tr.vx[i] = c * teme.v[0] + s * teme.v[1] + earth_rotation_rad_s * y;
    tr.vy[i] = -s * teme.v[0] + c * teme.v[1] - earth_rotation_rad_s * x;
    tr.vz[i] = teme.v[2];
    tr.rn[i] = std::sqrt(x * x + y * y + teme.r[2] * teme.r[2]);
    tr.r_max = std::max(tr.r_max, tr.rn[i]);
  }
  return tr;
}

// Root finding works on the sine of the elevation (u / range, no atan2): it crosses the sine of
// the mask exactly when the elevation crosses the mask, and its rate vanishes exactly where the
// elevation's does.
struct sample {
  double t{0};
  double f{0};     // sin(elevation) - sin(mask)
  double g{0};     // d sin(elevation) / dt, 1/s
  double gdot{0};  // d g / dt, 1/s^2 (interpolated samples only: Newton's derivative at a culmination)
  double dx{0}, dy{0}, dz{0};  // earth-fixed offset from the station (km): azimuth when reported
  double u{0}, range{0};       // up component and range (km): elevation when reported
};

// One satellite's track over one station.
class pair_search {
 public:
  pair_search(const track& tr, const site& st, double end)
      : tr_(tr), st_(st), end_(end), sin_mask_(std::sin(st.min_elevation_rad)),
        up_{st.cos_lat * st.cos_lon, st.cos_lat * st.sin_lon, st.sin_lat} {}
  void run(std::size_t si, std::size_t gi, std::vector<pass_window>& out);

 private:
  sample at_point(std::size_t i) const;
  sample at(double t) const;
  double culmination(const sample& a, const sample& b) const;
  void interval(const sample& a, const sample& b);
  void monotone(const sample& a, const sample& b);
  void open_at(const sample& s, bool clipped);
  void close_at(const sample& s, bool clipped);
  void consider_max(const sample& s);
  sample from_state(double t, const double r[3], const double v[3], const double* acc) const;
  double azimuth_deg(const sample& s) const;

  const track& tr_;
  const site& st_;
  double end_;
  double sin_mask_;
  double up_[3];
  double best_f_{-2.0};
  bool open_{false};
  pass_window cur_{};
  std::vector<pass_window>* out_{nullptr};
  std::size_t si_{0}, gi_{0};
};

// The sine of the elevation s = u / rho (u the offset's up component, rho its length), its rate
// g = u' / rho - u rho' / rho^2, and, given the acceleration, the rate's rate
// g' = u'' / rho - 2 u' rho' / rho^2 - u rho'' / rho^2 + 2 u rho'^2 / rho^3. Azimuth and
// elevation themselves are computed only for the samples a pass reports.
sample pair_search::from_state(double t, const double r[3], const double v[3], const double* acc) const {
  sample s;
  s.t = t;
  s.dx = r[0] - st_.ecef[0];
  s.dy = r[1] - st_.ecef[1];
  s.dz = r[2] - st_.ecef[2];
  s.u = up_[0] * s.dx + up_[1] * s.dy + up_[2] * s.dz;
  const double vu = up_[0] * v[0] + up_[1] * v[1] + up_[2] * v[2];
  const double dv = s.dx * v[0] + s.dy * v[1] + s.dz * v[2];
  const double rho = std::sqrt(s.dx * s.dx + s.dy * s.dy + s.dz * s.dz);
  const double w = 1.0 / rho;
  const double rhodot = dv * w;
  s.range = rho;
  s.f = s.u * w - sin_mask_;
  s.g = (vu - s.u * rhodot * w) * w;
  if (acc) {
    const double au = up_[0] * acc[0] + up_[1] * acc[1] + up_[2] * acc[2];
    const double vv = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
    const double da = s.dx * acc[0] + s.dy * acc[1] + s.dz * acc[2];
    const double rhoddot = (vv + da - rhodot * rhodot) * w;
    s.gdot = (au - (2.0 * vu * rhodot + s.u * rhoddot) * w + 2.0 * s.u * rhodot * rhodot * w * w) * w;
  }
  return s;
}

double elevation_deg(const sample& s) { return std::asin(std::clamp(s.u / s.range, -1.0, 1.0)) / deg; }

double pair_search::azimuth_deg(const sample& s) const {
  const double e = -st_.sin_lon * s.dx + st_.cos_lon * s.dy;
  const double n = -st_.sin_lat * st_.cos_lon * s.dx - st_.sin_lat * st_.sin_lon * s.dy + st_.cos_lat * s.dz;
  const double a = std::atan2(e, n) / deg;
  return a < 0 ? a + 360.0 : a;
}

sample pair_search::at_point(std::size_t i) const {
  const double r[3] = {tr_.x[i], tr_.y[i], tr_.z[i]}, v[3] = {tr_.vx[i], tr_.vy[i], tr_.vz[i]};
  return from_state(tr_.t0 + static_cast<double>(i) * tr_.h, r, v, nullptr);
}

sample pair_search::at(double t) const {
  const double x = (t - tr_.t0) / tr_.h;
  std::size_t i = static_cast<std::size_t>(std::clamp(std::floor(x), 0.0, static_cast<double>(tr_.n - 2)));
  const double s = x - static_cast<double>(i), h = tr_.h;
  // Cubic Hermite basis and its first and second derivatives.
  const double s2 = s * s, s3 = s2 * s;
  const double h00 = 2 * s3 - 3 * s2 + 1, h10 = s3 - 2 * s2 + s, h01 = -2 * s3 + 3 * s2, h11 = s3 - s2;
  const double d00 = 6 * s2 - 6 * s, d10 = 3 * s2 - 4 * s + 1, d01 = -6 * s2 + 6 * s, d11 = 3 * s2 - 2 * s;
  const double e00 = 12 * s - 6, e10 = 6 * s - 4, e01 = 6 - 12 * s, e11 = 6 * s - 2;
  const double* cols[6] = {tr_.x.get(), tr_.y.get(), tr_.z.get(), tr_.vx.get(), tr_.vy.get(), tr_.vz.get()};
  double r[3], v[3], a[3];
  for (int c = 0; c < 3; ++c) {
    const double p0 = cols[c][i], p1 = cols[c][i + 1], v0 = cols[c + 3][i], v1 = cols[c + 3][i + 1];
    r[c] = h00 * p0 + h10 * h * v0 + h01 * p1 + h11 * h * v1;
    v[c] = (d00 * p0 + d01 * p1) / h + d10 * v0 + d11 * v1;
    a[c] = ((e00 * p0 + e01 * p1) / h + e10 * v0 + e11 * v1) / h;
  }
  return from_state(t, r, v, a);
}

// The culmination between two samples whose elevation rates have opposite signs: Newton's method
// on the rate with its own derivative (from the interpolant's acceleration), kept inside the
// bracket (a step that would leave it bisects instead), to a hundredth of a second: the elevation
// is flat there. Starts from where the rate's chord crosses zero.
double pair_search::culmination(const sample& a, const sample& b) const {
  constexpr double tolerance = 10 * root_tolerance_s;
  double lo = a.t, hi = b.t;
  const bool rising_at_lo = a.g > 0;
  double t = (a.t * b.g - b.t * a.g) / (b.g - a.g);
  t = std::clamp(t, lo, hi);
  for (int i = 0; i < 40; ++i) {
    const sample x = at(t);
    if (x.g == 0.0) return t;
    if ((x.g > 0) == rising_at_lo) lo = t; else hi = t;
    double next = x.gdot != 0.0 ? t - x.g / x.gdot : 0.5 * (lo + hi);
    // (>= and <=: a converged step rounds to t itself, an ulp of a Unix time being 2e-7 s)
    if (!(next >= lo && next <= hi)) next = 0.5 * (lo + hi);
    if (std::fabs(next - t) < tolerance || hi - lo < tolerance) return next;
    t = next;
  }
  return t;
}

void pair_search::open_at(const sample& s, bool clipped) {
  open_ = true;
  cur_ = pass_window{};
  cur_.satellite = si_;
  cur_.station = gi_;
  cur_.aos = s.t;
  cur_.aos_azimuth_deg = azimuth_deg(s);
  cur_.starts_before = clipped;
  best_f_ = -2.0;
  consider_max(s);
}

void pair_search::consider_max(const sample& s) {
  if (!open_ || s.f <= best_f_) return;
  best_f_ = s.f;
  cur_.max_elevation_deg = elevation_deg(s);
  cur_.culmination = s.t;
  cur_.culmination_azimuth_deg = azimuth_deg(s);
  cur_.culmination_range_km = s.range;
}

void pair_search::close_at(const sample& s, bool clipped) {
  if (!open_) return;
  consider_max(s);
  open_ = false;
  cur_.los = s.t;
  cur_.los_azimuth_deg = azimuth_deg(s);
  cur_.ends_after = clipped;
  cur_.duration_s = cur_.los - cur_.aos;
  cur_.quality = pass_quality(cur_.max_elevation_deg * deg, st_.min_elevation_rad, cur_.duration_s);
  out_->push_back(cur_);
}

// Between two samples where the elevation is monotone: at most one crossing of the mask, found
// by Newton's method on the elevation with its rate as the derivative, kept inside the bracket
// (a step that would leave it bisects instead).
void pair_search::monotone(const sample& a, const sample& b) {
  if ((a.f < 0) == (b.f < 0)) return;
  double lo = a.t, hi = b.t;
  const bool rising = a.f < 0;
  // First guess: the chord's zero, moved by two Newton steps on the cubic through both samples'
  // values and rates (no propagation; usually within a few milliseconds of the crossing).
  const double w = b.t - a.t;
  double z = a.f / (a.f - b.f);
  for (int k = 0; k < 2; ++k) {
    const double z2 = z * z, z3 = z2 * z;
    const double v = (2 * z3 - 3 * z2 + 1) * a.f + (z3 - 2 * z2 + z) * w * a.g + (-2 * z3 + 3 * z2) * b.f +
                     (z3 - z2) * w * b.g;
    const double dv = (6 * z2 - 6 * z) * a.f + (3 * z2 - 4 * z + 1) * w * a.g + (-6 * z2 + 6 * z) * b.f +
                      (3 * z2 - 2 * z) * w * b.g;
    const double next = dv != 0.0 ? z - v / dv : z;
    if (!(next > 0.0 && next < 1.0)) break;
    z = next;
  }
  double t = a.t + w * z;
  sample x = at(t);
  for (int i = 0; i < 40 && x.f != 0.0; ++i) {
    if ((x.f < 0) == rising) lo = t; else hi = t;
    double next = x.g != 0.0 ? t - x.f / x.g : 0.5 * (lo + hi);
    if (!(next >= lo && next <= hi)) next = 0.5 * (lo + hi);  // inclusive: see culmination()
    // Newton converges quadratically here: once a step is under the tolerance, the sample just
    // taken is already within it.
    if (std::fabs(next - t) < root_tolerance_s) break;
    t = next;
    x = at(t);
  }
  if (rising)
    open_at(x, false);
  else
    close_at(x, false);
}

// Two consecutive samples; a grid step is short enough that at most one extremum lies between.
void pair_search::interval(const sample& a, const sample& b) {
  if ((a.g > 0 && b.g <= 0) || (a.g < 0 && b.g >= 0)) {
    const bool is_max = a.g > 0;
    // A low point between two samples below the mask stays below it.
    if (!is_max && a.f < 0 && b.f < 0) return;
    // A high point between two samples below the mask matters only if it could reach the mask.
    // The cubic through both samples' values and rates estimates it to well under 0.01 in the
    // sine of the elevation over one step; a deficit of 0.05 (about 3 degrees) rules it out.
    if (is_max && a.f < 0 && b.f < 0) {
      const double w = b.t - a.t;
      double top = std::max(a.f, b.f);
      for (int k = 1; k < 16; ++k) {
        const double s1 = k / 16.0, s2 = s1 * s1, s3 = s2 * s1;
        top = std::max(top, (2 * s3 - 3 * s2 + 1) * a.f + (s3 - 2 * s2 + s1) * w * a.g +
                                (-2 * s3 + 3 * s2) * b.f + (s3 - s2) * w * b.g);
      }
      if (top < -0.05) return;
    }
    const sample x = at(culmination(a, b));
    // A maximum below the mask, between two samples below it, cannot matter.
    if (is_max && x.f < 0 && a.f < 0 && b.f < 0) return;
    monotone(a, x);
    if (is_max) consider_max(x);
    monotone(x, b);
  } else {
    monotone(a, b);
  }
}

void pair_search::run(std::size_t si, std::size_t gi, std::vector<pass_window>& out) {
  out_ = &out;
  si_ = si;
  gi_ = gi;
  if (tr_.n < 2) return;
  // Which grid points are near enough that the satellite could be in view within half a step of
  // them (every moment of a step is within half a step of one of its ends): the visibility
  // circle, seen from the earth's centre at the track's greatest radius, widened by the most the
  // satellite turns in half a step, with a fifth more for safety.
  const double rs = std::sqrt(st_.ecef[0] * st_.ecef[0] + st_.ecef[1] * st_.ecef[1] + st_.ecef[2] * st_.ecef[2]);
  const double m = st_.min_elevation_rad - margin;
  const double lambda = std::acos(std::clamp(rs / (tr_.r_max + 1.0) * std::cos(m), -1.0, 1.0)) - m + margin;
  const double threshold = std::cos(std::min(lambda + grid_angle * 0.6, pi));
  const double sx = st_.ecef[0] / rs, sy = st_.ecef[1] / rs, sz = st_.ecef[2] / rs;
  const std::size_t n = tr_.n;
  std::unique_ptr<unsigned char[]> near(new unsigned char[n + 1]);
  {
    const double *x = tr_.x.get(), *y = tr_.y.get(), *z = tr_.z.get(), *rn = tr_.rn.get();
    unsigned char* out = near.get();
    for (std::size_t i = 0; i < n; ++i)
      out[i] = static_cast<unsigned char>((x[i] * sx + y[i] * sy + z[i] * sz - threshold * rn[i]) >= 0.0);
    out[n] = 0;
  }
  // Intervals [i, i + 1] that start before the window's end.
  const std::size_t last = std::min(n - 1, static_cast<std::size_t>(std::ceil((end_ - tr_.t0) / tr_.h)));
  sample prev = at_point(0);
  bool have_prev = true;
  if (prev.f >= 0) open_at(prev, true);
  std::size_t i = 0;
  while (i < last) {
    if (!near[i] && !near[i + 1]) {
      // Out of sight for the whole step (so no pass can be open): jump to the next near point.
      const void* hit = std::memchr(near.get() + i + 1, 1, last - i);
      if (!hit) break;
      i = static_cast<std::size_t>(static_cast<const unsigned char*>(hit) - near.get()) - 1;
      have_prev = false;
      continue;
    }
    const double tb = tr_.t0 + static_cast<double>(i + 1) * tr_.h;
    const sample a = have_prev ? prev : at_point(i);
    const sample b = tb <= end_ ? at_point(i + 1) : at(end_);
    interval(a, b);
    prev = b;
    have_prev = true;
    ++i;
  }
  if (open_) {
    // Still in view at the window's end, or at the last good state before a propagation error.
    const double t_last = std::min(end_, tr_.t0 + static_cast<double>(n - 1) * tr_.h);
    close_at(t_last == prev.t ? prev : at(t_last), true);
  }
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
  unsigned threads = options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<std::size_t>(threads, satellites.size()));
  std::vector<std::vector<pass_window>> parts(threads);
  std::atomic<std::size_t> next{0};
  auto work = [&](unsigned id) {
    for (;;) {
      const std::size_t si = next.fetch_add(1, std::memory_order_relaxed);
      if (si >= satellites.size()) break;
      const sgp4* sat = satellites[si];
      if (!sat || sat->init_error() != sgp4_error::none) continue;
      const track tr = build_track(*sat, start, end, options.dut1_s);
      for (std::size_t gi = 0; gi < stations.size(); ++gi) {
        pair_search search(tr, stations[gi], end);
        search.run(si, gi, parts[id]);
      }
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
