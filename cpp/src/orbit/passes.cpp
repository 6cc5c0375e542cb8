#include "skyrelay/orbit/passes.hpp"

#include "fast_math.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cmath>
#include <limits>
#include <cstring>
#include <memory>
#include <numbers>
#include <thread>

#include "skyrelay/core/thread_name.hpp"

namespace skyrelay::orbit {
namespace {

constexpr double pi = std::numbers::pi;
constexpr double deg = pi / 180.0;
constexpr double margin = 1.0 * deg;       // the ellipsoid's tilt of "up" (< 0.2 deg) and more
// The most the satellite may turn (rad, earth-fixed) between grid points. SGP4's velocities are
// not exactly the derivatives of its positions (they leave out part of the short-period terms:
// 0.03 m/s at eccentricity 0.001, 0.1 m/s at 0.009, 1.4 m/s at 0.19), and any Hermite interpolant
// inherits that mismatch times the step, so the track's velocities are the positions' own
// derivatives (even_rates, positions_rates; SGP4's only at the grid's ends). Near-circular orbits,
// most of any catalogue, take the longest step, those up to e = 0.1 the next (the step the
// near-circular ones took with SGP4's velocities), the rest their uneven grid's angle. (At 0.42
// for the near-circular ones, culminations go wrong: the search assumes at most one extremum
// of the elevation per step and a cubic's estimate of it.)
constexpr double grid_angle_circular = 0.30;
constexpr double grid_angle_eccentric = 0.24;
constexpr double grid_angle_uneven = 0.12;
constexpr double circular_below = 0.02;
// Orbits at least this eccentric take a grid uneven in time (see anomaly_grid): long steps at
// apogee, short ones at perigee, each turning the satellite by about the same angle.
constexpr double anomaly_grid_from = 0.1;
// Their steps' longest (s), unless the even grid's step is longer. The interpolant's error grows
// with the step even where the satellite hardly turns: at 450 s the rises and sets of gpredict's
// 61 such satellites are within 0.03 s of exact propagation, as on the even grid; at 900 s
// within 0.07 s.
constexpr double anomaly_grid_longest_s = 450.0;
constexpr double root_tolerance_s = 1e-3;
// Newton's last step, taken by advance() rather than by evaluating the interpolant again, when it
// is this short. The steps are of second order (with the rate's rate at rises and sets, the
// quintic's third derivative at culminations): from an error e they land within about
// (f''' / 6f') e^3 of the root, microseconds for half a second. (At 2 s, culminations near the
// zenith moved by up to 2e-4 degree; at 0.5 s by 2e-5 at most from the first-order search with
// its 0.25 s.) advance() moves the sample along its velocity and acceleration.
constexpr double accept_rise_set_s = 0.5;
constexpr double accept_culmination_s = 0.5;

// One satellite's earth-fixed states on a grid of times (even, or for eccentric orbits uneven),
// shared by every station. Between grid points the state is a quintic Hermite interpolant of
// positions, velocities and accelerations (the velocities the positions' own derivatives, by
// differences; the accelerations from the central field and J2, which is what SGP4's own
// curvature is to a few parts in a million). With at most 0.30 rad of motion per step the
// polynomial itself is good to a few centimetres (r (h w)^6 / 46080 on a circle). Over
// gpredict's catalogue, rises and sets found on it are within 0.03 s of exact propagation.
struct track {
  double t0{0}, h{0}, inv_h{0};
  double angle{0};       // the step's largest turn (rad)
  std::size_t n{0};      // usable points: up to the first propagation error
  // Points at t0 + k h, or (eccentric orbits) at the times tt[k], t0 = tt[0].
  bool uniform{true};
  const double* tt{nullptr};
  double time_of(std::size_t k) const { return uniform ? t0 + static_cast<double>(k) * h : tt[k]; }
  // The step [tt[k], tt[k + 1]] that holds t, clamped to the grid (uneven grids only).
  std::size_t step_of(double t) const {
    const std::size_t k = static_cast<std::size_t>(std::upper_bound(tt, tt + n, t) - tt);
    return std::clamp<std::size_t>(k, 1, n - 1) - 1;
  }
  // The same from a step `k` at or next to the one that holds t (a bracket's own, which its
  // root finding never leaves by more than a rounding): the same answer as step_of(t), without
  // the binary search's dependent loads and mispredicted branches.
  std::size_t step_near(double t, std::size_t k) const {
    while (k + 2 < n && tt[k + 1] <= t) ++k;
    while (k > 0 && tt[k] > t) --k;
    return k;
  }
  // Structure of arrays (the station scan vectorises over them), in `storage`.
  double *x{nullptr}, *y{nullptr}, *z{nullptr}, *vx{nullptr}, *vy{nullptr}, *vz{nullptr};
  double *ax{nullptr}, *ay{nullptr}, *az{nullptr}, *rn{nullptr};
  // The direction from the earth's centre, in single precision (the near test's: twice the
  // lanes, and its circle has degrees to spare against a ten-millionth).
  float *ux{nullptr}, *uy{nullptr}, *uz{nullptr};
  double r_max{0};
  // One thread's track is rebuilt for each satellite in the same buffers, which only grow: fresh
  // ones for every satellite cost a tenth of the search in malloc and the kernel's page faults.
  std::vector<double> storage, times, r, v, rot, grid;
  std::vector<float> unit;
  std::vector<std::int8_t> err;
};

// Four doubles in one SIMD register where the instruction set has one (AVX2, AVX-512: the
// search's clones), two halves of SSE2 otherwise. GCC's vector extension.
using lane_vec = double __attribute__((vector_size(4 * sizeof(double))));
using lane_mask = long long __attribute__((vector_size(4 * sizeof(long long))));  // comparisons' lanes

template <class T>
T* at_least(std::vector<T>& buffer, std::size_t n) {
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// Built once per instruction set where the compiler can pick one at load time (GCC on x86-64
// Linux, through an ifunc), so the station scan runs in AVX-512 or AVX2 lanes where the CPU has
// them; elsewhere the plain build.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define SKYRELAY_SCAN_CLONES [[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
#else
#define SKYRELAY_SCAN_CLONES
#endif

// TEME states (rows of three) to the track's earth-fixed arrays, given the rotation's cosine and
// sine at each point: positions, velocities, radii, and accelerations from
// gravity with J2 (the same in TEME and earth-fixed axes: it is symmetric about z) plus the
// rotating frame's Coriolis and centrifugal terms; and the greatest radius. Four points at a time
// in SIMD lanes (GCC does not vectorise the loop by itself: the rows of three), the rest one by
// one.
SKYRELAY_SCAN_CLONES
void earth_fixed_states(track& tr, const double* __restrict r, const double* __restrict v,
                        const double* __restrict rot_c, const double* __restrict rot_s, double mu, double j2re2) {
  double *__restrict x = tr.x, *__restrict y = tr.y, *__restrict z = tr.z;
  double *__restrict vx = tr.vx, *__restrict vy = tr.vy, *__restrict vz = tr.vz;
  double *__restrict ax = tr.ax, *__restrict ay = tr.ay, *__restrict az = tr.az;
  double* __restrict rn = tr.rn;
  constexpr double w = earth_rotation_rad_s;
  const std::size_t n = tr.n;
  auto store = [](double* to, const lane_vec& from) { std::memcpy(to, &from, sizeof from); };
  auto rows = [](lane_vec& to, const double* a, std::size_t i, int c) {
    to = lane_vec{a[3 * i + c], a[3 * i + 3 + c], a[3 * i + 6 + c], a[3 * i + 9 + c]};
  };
  lane_vec most = {0.0, 0.0, 0.0, 0.0};
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    lane_vec c, s;
    std::memcpy(&c, rot_c + i, sizeof c);
    std::memcpy(&s, rot_s + i, sizeof s);
    lane_vec rx, ry, pz, wx, wy, wz;
    rows(rx, r, i, 0);
    rows(ry, r, i, 1);
    rows(pz, r, i, 2);
    rows(wx, v, i, 0);
    rows(wy, v, i, 1);
    rows(wz, v, i, 2);
    const lane_vec px = c * rx + s * ry, py = -s * rx + c * ry;
    const lane_vec ux = c * wx + s * wy + w * py, uy = -s * wx + c * wy - w * px;
    store(x + i, px);
    store(y + i, py);
    store(z + i, pz);
    store(vx + i, ux);
    store(vy + i, uy);
    store(vz + i, wz);
    const lane_vec zz = pz * pz, r2 = px * px + py * py + zz;
    lane_vec norm;
    for (int l = 0; l < 4; ++l) norm[l] = std::sqrt(r2[l]);
    store(rn + i, norm);
    most = norm > most ? norm : most;
    const lane_vec inv = 1.0 / (r2 * norm), inv_r2 = inv * norm;
    const lane_vec g = -mu * inv, j = j2re2 * inv_r2, q = 5.0 * zz * inv_r2;
    const lane_vec gxy = g * (1.0 + j * (1.0 - q)), gz = g * (1.0 + j * (3.0 - q));
    store(ax + i, gxy * px + 2.0 * w * uy + w * w * px);
    store(ay + i, gxy * py - 2.0 * w * ux + w * w * py);
    store(az + i, gz * pz);
  }
  double r_max = std::max(std::max(most[0], most[1]), std::max(most[2], most[3]));
  for (; i < n; ++i) {
    const double c = rot_c[i], s = rot_s[i];
    const double px = c * r[3 * i] + s * r[3 * i + 1], py = -s * r[3 * i] + c * r[3 * i + 1], pz = r[3 * i + 2];
    const double ux = c * v[3 * i] + s * v[3 * i + 1] + w * py, uy = -s * v[3 * i] + c * v[3 * i + 1] - w * px;
    x[i] = px;
    y[i] = py;
    z[i] = pz;
    vx[i] = ux;
    vy[i] = uy;
    vz[i] = v[3 * i + 2];
    const double zz = pz * pz, r2 = px * px + py * py + zz, norm = std::sqrt(r2);
    rn[i] = norm;
    r_max = std::max(r_max, norm);
    const double inv = 1.0 / (r2 * norm), inv_r2 = inv * norm;  // one division for 1/r^3 and 1/r^2
    const double g = -mu * inv, j = j2re2 * inv_r2, q = 5.0 * zz * inv_r2;
    const double gxy = g * (1.0 + j * (1.0 - q)), gz = g * (1.0 + j * (3.0 - q));
    ax[i] = gxy * px + 2.0 * w * uy + w * w * px;
    ay[i] = gxy * py - 2.0 * w * ux + w * w * py;
    az[i] = gz * pz;
  }
  tr.r_max = r_max;
}

// The track's directions from the earth's centre (track::ux, uy, uz), in `unit`.
SKYRELAY_SCAN_CLONES
void unit_vectors(track& tr) {
  const std::size_t n = tr.n;
  float* columns = at_least(tr.unit, 3 * (n + 1));
  float *__restrict ux = columns, *__restrict uy = columns + n + 1, *__restrict uz = columns + 2 * (n + 1);
  const double *__restrict x = tr.x, *__restrict y = tr.y, *__restrict z = tr.z, *__restrict rn = tr.rn;
  for (std::size_t i = 0; i < n; ++i) {
    const double inv = 1.0 / rn[i];
    ux[i] = static_cast<float>(x[i] * inv);
    uy[i] = static_cast<float>(y[i] * inv);
    uz[i] = static_cast<float>(z[i] * inv);
  }
  tr.ux = ux;
  tr.uy = uy;
  tr.uz = uz;
}

// The times of an eccentric orbit's grid, from its osculating elements at `start` (r, v in km and
// km/s, TEME): Kepler's ellipse, stepped in eccentric anomaly E so that each step turns the
// satellite, earth-fixed, by at most `angle` (1.1 times the true anomaly's advance, for the
// perturbations, plus the earth's rotation over the step's time; both exact on the ellipse), and
// lasts at most `cap` s. Empty where the ellipse is not one (then the grid is even).
void anomaly_grid(std::vector<double>& times, const double r[3], const double v[3], double mu, double n_rad_s,
                  double start, double end, double angle, double cap) {
  times.clear();
  const double rn = std::sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2]);
  const double v2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
  const double rv = r[0] * v[0] + r[1] * v[1] + r[2] * v[2];
  const double a = 1.0 / (2.0 / rn - v2 / mu);
  if (!(a > 0.0) || !(n_rad_s > 0.0)) return;
  const double ecos = 1.0 - rn / a, esin = rv / std::sqrt(mu * a);
  const double e = std::hypot(ecos, esin);
  if (!(e > 1e-3 && e < 0.99)) return;
  const double e0 = std::atan2(esin, ecos);
  const double w = earth_rotation_rad_s, c = 1.1, root = std::sqrt(1.0 - e * e);
  double ea = e0, t = start, sin_a, cos_a;
  fast::sincos(e0, sin_a, cos_a);
  times.push_back(start);
  // (Bounded: each step lasts at least a second or the grid is given up.)
  const std::size_t most = static_cast<std::size_t>((end - start) / 1.0) + 2;
  while (t < end) {
    // The turn over [E, E + dE] is at most dE times the greatest of dnu/dE (1.1 sqrt(1 - e^2) /
    // (1 - e cos E)) plus that of w dt/dE (w (1 - e cos E) / n); 1 - e cos E is monotone between
    // perigee and apogee, so those are at the step's ends unless it holds one of them.
    const double ce0 = 1.0 - e * cos_a;
    double de = angle / (c * root / ce0 + w * ce0 / n_rad_s);
    double sin_b = 0, cos_b = 0, dt = 0;
    for (int k = 0;; ++k) {
      const double eb = ea + de;
      fast::sincos(eb, sin_b, cos_b);
      const double ce1 = 1.0 - e * cos_b;
      const double ce_min = std::floor(ea / (2.0 * pi)) != std::floor(eb / (2.0 * pi)) ? 1.0 - e : std::min(ce0, ce1);
      const double ce_max = std::floor(ea / (2.0 * pi) - 0.5) != std::floor(eb / (2.0 * pi) - 0.5) ? 1.0 + e : std::max(ce0, ce1);
      const double turn = de * (c * root / ce_min + w * ce_max / n_rad_s);
      dt = (de - e * (sin_b - sin_a)) / n_rad_s;
      const double shrink = std::min(angle / turn, cap / dt);
      if (shrink >= 1.0 || k == 40) break;
      de *= 0.97 * shrink;
    }
    if (!(dt >= 1.0) || times.size() >= most) {
      times.clear();
      return;
    }
    ea += de;
    sin_a = sin_b;
    cos_a = cos_b;
    t += dt;
    times.push_back(t);
  }
}

// Velocities from the positions themselves: at each point the derivative of the quartic through
// the five nearest points (two on either side, or the first or last five). SGP4's velocities are
// not its positions' derivatives (by metres per second in eccentric orbits), and a Hermite
// interpolant inherits that mismatch times the step, which on this grid reaches minutes at
// apogee; the quartic's own error is far smaller (about h^4 x^(5) / 30: centimetres per second
// at perigee, where the steps are short).
void positions_rates(const double* t, const double* r, double* v, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t first = i < 2 ? 0 : (i + 3 > n ? n - 5 : i - 2);
    const std::size_t m = i - first;  // where i is in the stencil
    double x[5], w[5];
    for (std::size_t j = 0; j < 5; ++j) x[j] = t[first + j] - t[i];
    // d/dt of Lagrange's basis polynomials at x[m] = 0.
    double self = 0.0;
    for (std::size_t j = 0; j < 5; ++j) {
      if (j == m) continue;
      self += 1.0 / (x[m] - x[j]);
      double num = 1.0, den = x[j] - x[m];
      for (std::size_t k = 0; k < 5; ++k) {
        if (k == j || k == m) continue;
        num *= x[m] - x[k];
        den *= x[j] - x[k];
      }
      w[j] = num / den;
    }
    w[m] = self;
    for (int c = 0; c < 3; ++c) {
      double d = 0.0;
      for (std::size_t j = 0; j < 5; ++j) d += w[j] * r[3 * (first + j) + c];
      v[3 * i + c] = d;
    }
  }
}

// The same on an even grid: the central difference of seven points (error h^6 x^(7) / 140), and
// SGP4's own velocities at the three points at either end.
SKYRELAY_SCAN_CLONES
void even_rates(double h, const double* __restrict r, double* __restrict v, std::size_t n) {
  // Over the rows of three as one flat array: component j of point i is r[3 i + j], and its
  // neighbours k points away are 3 k further on.
  const double k = 1.0 / (60.0 * h);
  for (std::size_t j = 9; j + 9 < 3 * n; ++j)
    v[j] = (45.0 * (r[j + 3] - r[j - 3]) - 9.0 * (r[j + 6] - r[j - 6]) + (r[j + 9] - r[j - 9])) * k;
}

// GMST at a window's start and its rate there (rad/s, from the IAU-82 polynomial): GMST
// advances linearly to far better than a microradian over any window a pass search covers.
struct sidereal_line {
  double theta0, omega;
};
sidereal_line sidereal_at(double jd0, double fr0, double dut1) {
  const double ut1 = ut1_jd(jd0, fr0, dut1);
  const double tut1 = (ut1 - 2451545.0) / 36525.0;
  const double dsec_dcentury =
      876600.0 * 3600.0 + 8640184.812866 + 2.0 * 0.093104 * tut1 - 3.0 * 6.2e-6 * tut1 * tut1;
  return {gmst82(ut1), dsec_dcentury / (36525.0 * 86400.0) * (deg / 240.0)};
}

// The track's ten state columns, and the earth rotation's cosines and sines, for `valid` points.
void lay_out_columns(track& tr, std::size_t valid, double*& rot_c, double*& rot_s) {
  double* columns = at_least(tr.storage, 10 * (valid + 1));
  double** heads[] = {&tr.x, &tr.y, &tr.z, &tr.vx, &tr.vy, &tr.vz, &tr.ax, &tr.ay, &tr.az, &tr.rn};
  for (std::size_t c = 0; c < 10; ++c) *heads[c] = columns + c * (valid + 1);
  rot_c = at_least(tr.rot, 2 * valid + 2);
  rot_s = rot_c + valid + 1;
}

// An eccentric orbit's track on its anomaly_grid: a third to a seventh of the points of an even
// grid whose step is short enough for perigee. Each step's turn is checked afterwards on the
// propagated states themselves (the greater of the two ends' earth-fixed angular rates times the
// step, at most `angle`); false, and the caller builds the even grid, if any step fails that or
// the grid cannot be made.
bool build_uneven_track(track& tr, const sgp4& sat, double start, double end, double dut1, double even_h) {
  tr.angle = grid_angle_uneven;
  double jd0, fr0;
  unix_to_jd(start, jd0, fr0);
  const double base = sat.minutes_since_epoch(jd0, fr0);
  state_vector at_start;
  if (sat.propagate(base, at_start) != sgp4_error::none) return false;
  const gravity_constants& k = sat.constants();
  anomaly_grid(tr.grid, at_start.r, at_start.v, k.mu, sat.mean_motion_rad_min() / 60.0, start, end, tr.angle,
               std::max(even_h, anomaly_grid_longest_s));
  const std::size_t count = tr.grid.size();
  if (count < 2 || static_cast<double>(count) >= (end - start) / even_h) return false;
  const double* grid = tr.grid.data();
  double* ts = at_least(tr.times, count);
  for (std::size_t i = 0; i < count; ++i) ts[i] = base + (grid[i] - start) / 60.0;
  double* r = at_least(tr.r, 3 * count);
  double* v = at_least(tr.v, 3 * count);
  std::int8_t* err = at_least(tr.err, count);
  sat.propagate_batch(ts, count, r, v, err);
  std::size_t valid = 0;
  while (valid < count && err[valid] == 0) ++valid;
  if (valid < 5) return false;
  positions_rates(grid, r, v, valid);
  tr.n = valid;
  tr.uniform = false;
  tr.tt = grid;
  tr.t0 = start;
  tr.h = 0.0;  // (unused on an uneven grid)
  tr.inv_h = 0.0;
  const auto [theta0, omega_gmst] = sidereal_at(jd0, fr0, dut1);
  double *rot_c, *rot_s;
  lay_out_columns(tr, valid, rot_c, rot_s);
  for (std::size_t i = 0; i < valid; ++i) {
    fast::sincos(theta0 + omega_gmst * (grid[i] - start), rot_s[i], rot_c[i]);
  }
  earth_fixed_states(tr, r, v, rot_c, rot_s, k.mu, 1.5 * k.j2 * k.radius_km * k.radius_km);
  unit_vectors(tr);
  // The check on the states: |r x v| / r^2 earth-fixed at both ends of each step.
  double prev = 0.0;
  for (std::size_t i = 0; i < valid; ++i) {
    const double cx = tr.y[i] * tr.vz[i] - tr.z[i] * tr.vy[i], cy = tr.z[i] * tr.vx[i] - tr.x[i] * tr.vz[i],
                 cz = tr.x[i] * tr.vy[i] - tr.y[i] * tr.vx[i];
    const double rate = std::sqrt(cx * cx + cy * cy + cz * cz) / (tr.rn[i] * tr.rn[i]);
    if (i > 0 && std::max(prev, rate) * (grid[i] - grid[i - 1]) > tr.angle) return false;
    prev = rate;
  }
  return true;
}

void build_track(track& tr, const sgp4& sat, double start, double end, double dut1) {
  tr.r_max = 0;
  const double n = sat.mean_motion_rad_min() / 60.0;  // rad/s
  const double e = std::min(sat.eccentricity() + 0.03, 0.99);
  // Fastest angular motion in the earth-fixed frame (at perigee), with room for perturbations.
  const double omega = 1.1 * n * std::sqrt(1.0 + e) / std::pow(1.0 - e, 1.5) + earth_rotation_rad_s;
  const double angle = sat.eccentricity() < circular_below      ? grid_angle_circular
                       : sat.eccentricity() < anomaly_grid_from ? grid_angle_eccentric
                                                                : grid_angle_uneven;
  const double even_h = std::clamp(angle / omega, 1.0, 900.0);
  if (sat.eccentricity() >= anomaly_grid_from && build_uneven_track(tr, sat, start, end, dut1, even_h)) return;
  tr.uniform = true;
  tr.angle = angle;
  tr.h = even_h;
  tr.inv_h = 1.0 / tr.h;
  tr.t0 = start;
  const std::size_t count = static_cast<std::size_t>(std::ceil((end - start) / tr.h)) + 1;
  double* ts = at_least(tr.times, count);
  double jd0, fr0;
  unix_to_jd(start, jd0, fr0);
  const double base = sat.minutes_since_epoch(jd0, fr0);
  const double step_min = tr.h / 60.0;
  // (A 32-bit index, which SSE2 converts to doubles in its lanes: neither it nor AVX2 has a
  // conversion of 64-bit integers, and the loop stayed scalar. A window of 2^31 steps would be
  // 68 years, but the rest, if any, is filled one by one.)
  const auto steps = static_cast<std::int32_t>(
      std::min<std::size_t>(count, static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())));
  for (std::int32_t i = 0; i < steps; ++i) ts[i] = base + static_cast<double>(i) * step_min;
  for (std::size_t i = static_cast<std::size_t>(steps); i < count; ++i) ts[i] = base + static_cast<double>(i) * step_min;
  double* r = at_least(tr.r, 3 * count);
  double* v = at_least(tr.v, 3 * count);
  std::int8_t* err = at_least(tr.err, count);
  sat.propagate_batch(ts, count, r, v, err);
  std::size_t valid = 0;
  while (valid + 8 <= count) {  // eight flags at a time: almost every track has no error
    std::uint64_t word;
    std::memcpy(&word, err + valid, 8);
    if (word) break;
    valid += 8;
  }
  while (valid < count && err[valid] == 0) ++valid;
  tr.n = valid;
  // GMST's sine and cosine stepped by rotation, re-anchored every 256 points.
  const auto [theta0, omega_gmst] = sidereal_at(jd0, fr0, dut1);
  double *rot_c, *rot_s;
  lay_out_columns(tr, valid, rot_c, rot_s);
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
    rot_c[i] = c;
    rot_s[i] = s;
  }
  const gravity_constants& k = sat.constants();
  even_rates(tr.h, r, v, valid);
  earth_fixed_states(tr, r, v, rot_c, rot_s, k.mu, 1.5 * k.j2 * k.radius_km * k.radius_km);
  unit_vectors(tr);
}

// pass_quality from the sines of the maximum elevation and of the mask clamped at the horizon
// (the search has both; the sines of the angles cost 2 % of it).
double quality_of(double sin_max, double sin_floor, double duration_s) {
  const double e = std::clamp((sin_max - sin_floor) / (1.0 - sin_floor), 0.0, 1.0);
  const double d = std::clamp(duration_s / 900.0, 0.0, 1.0);
  return 0.6 * e + 0.4 * d;
}

// One station's view of one track, in vectorised passes over the grid points: whether each point
// is near enough to matter (the satellite's direction from the earth's centre within the widened
// visibility circle, cos_near being the cosine of its radius), and, for the points the search
// reaches, the sine of the elevation less the mask's (f) and its rate (g), as from_state computes
// them below.
struct station_geometry {
  double ecef[3], up[3], dir[3];  // position (km), local vertical, unit position
  double cos_near, sin_mask;
};

void scan_near(const track& tr, const station_geometry& gs, unsigned char* __restrict near) {
  const float *__restrict ux = tr.ux, *__restrict uy = tr.uy, *__restrict uz = tr.uz;
  const float nx = static_cast<float>(gs.dir[0]), ny = static_cast<float>(gs.dir[1]), nz = static_cast<float>(gs.dir[2]);
  const float cos_near = static_cast<float>(gs.cos_near);
  for (std::size_t i = 0; i < tr.n; ++i) near[i] = static_cast<unsigned char>(ux[i] * nx + uy[i] * ny + uz[i] * nz >= cos_near);
}

void scan_values(const track& tr, const station_geometry& gs, std::size_t begin, std::size_t end,
                 double* __restrict f, double* __restrict g, double* __restrict gd, std::int64_t* __restrict signs) {
  const double *__restrict x = tr.x, *__restrict y = tr.y, *__restrict z = tr.z;
  const double *__restrict vx = tr.vx, *__restrict vy = tr.vy, *__restrict vz = tr.vz;
  const double *__restrict ax = tr.ax, *__restrict ay = tr.ay, *__restrict az = tr.az;
  const double ex = gs.ecef[0], ey = gs.ecef[1], ez = gs.ecef[2];
  const double ux = gs.up[0], uy = gs.up[1], uz = gs.up[2], sin_mask = gs.sin_mask;
  for (std::size_t i = begin; i < end; ++i) {
    const double dx = x[i] - ex, dy = y[i] - ey, dz = z[i] - ez;
    const double u = ux * dx + uy * dy + uz * dz;
    const double vu = ux * vx[i] + uy * vy[i] + uz * vz[i];
    const double dv = dx * vx[i] + dy * vy[i] + dz * vz[i];
    const double w = 1.0 / std::sqrt(dx * dx + dy * dy + dz * dz);
    const double rhodot = dv * w;
    const double fi = u * w - sin_mask, gi = (vu - u * rhodot * w) * w;
    f[i] = fi;
    g[i] = gi;
    // (As 64-bit integers, the width of the doubles: as bytes they kept GCC from vectorising.)
    signs[i] = static_cast<std::int64_t>(fi < 0) | (static_cast<std::int64_t>(gi > 0) << 1) |
               (static_cast<std::int64_t>(gi < 0) << 2);
    const double au = ux * ax[i] + uy * ay[i] + uz * az[i];
    const double vv = vx[i] * vx[i] + vy[i] * vy[i] + vz[i] * vz[i];
    const double da = dx * ax[i] + dy * ay[i] + dz * az[i];
    const double rhoddot = (vv + da - rhodot * rhodot) * w;
    gd[i] = (au - (2.0 * vu * rhodot + u * rhoddot) * w + 2.0 * u * rhodot * rhodot * w * w) * w;
  }
}

// One station's view of the current track: the grid points' values (f), rates (g) and rates'
// rates (gd), the signs of f and g as bits of an integer the width of a double (signs), and which
// points are near. Room for the track's points and 16 more (the walk reads the near flags 8 at a
// time), reused from station to station and satellite to satellite.
struct scratch {
  std::size_t room{0};
  std::unique_ptr<double[]> f, g, gd;
  std::unique_ptr<unsigned char[]> near;
  std::unique_ptr<std::int64_t[]> signs;
  void reserve(std::size_t points) {
    if (points + 16 <= room) return;
    room = points + 16;
    f.reset(new double[room]);
    g.reset(new double[room]);
    gd.reset(new double[room]);
    near.reset(new unsigned char[room]());
    signs.reset(new std::int64_t[room]());
  }
};

// The first k in [begin, end) where bytes[k] and bytes[k + 1] are both 0 (bytes holding 0 or 1),
// or end; eight at a time (bytes has room for end + 8).
std::size_t first_pair_of_zeros(const unsigned char* bytes, std::size_t begin, std::size_t end) {
  for (std::size_t k = begin; k < end; k += 8) {
    std::uint64_t a, b;
    std::memcpy(&a, bytes + k, 8);
    std::memcpy(&b, bytes + k + 1, 8);
    if (const std::uint64_t m = ~(a | b) & 0x0101010101010101ull)
      return std::min(end, k + static_cast<std::size_t>(std::countr_zero(m)) / 8);
  }
  return end;
}

// Root finding works on the sine of the elevation (u / range, no atan2): it crosses the sine of
// the mask exactly when the elevation crosses the mask, and its rate vanishes exactly where the
// elevation's does.
struct sample {
  // No initialisers: the lanes' and brackets' samples are written before they are read, and
  // zeroing them first cost more than the search's own writes (a value-initialised sample{} is
  // still all zeros).
  double t;
  double f;     // sin(elevation) - sin(mask)
  double g;     // d sin(elevation) / dt, 1/s
  double gdot;  // d g / dt, 1/s^2 (Newton's derivative at culminations, second order elsewhere)
  double dx, dy, dz;  // earth-fixed offset from the station (km): azimuth when reported
  double vx, vy, vz;  // earth-fixed velocity (km/s)
  double ax, ay, az;  // and acceleration (km/s^2)
  double u, range;    // up component and range (km): elevation when reported
};

// What the search itself needs of a sample: a grid point's is only this.
struct point {
  double t, f, g, gdot;
};
point point_of(const sample& s) { return {s.t, s.f, s.g, s.gdot}; }

// The quintic through two points' values, rates and rates' rates, on z in [0, 1] (z = 0 at a):
// f = f0 + m0 z + q0 z^2 / 2 + c3 z^3 + c4 z^4 + c5 z^5 with m = w g and q = w^2 gdot. Over a
// grid step it follows the sine of the elevation to about 5e-4 (its sixth derivative), a
// fraction of a second at a rise or a culmination: a first guess that leaves the interpolated
// evaluation one Newton step, where the cubic through values and rates left two.
struct quintic {
  double f0, m0, q0, c3, c4, c5;
  quintic() = default;
  quintic(const point& a, const point& b) {
    const double w = b.t - a.t, d = b.f - a.f;
    const double m1 = w * b.g, q1 = w * w * b.gdot;
    f0 = a.f;
    m0 = w * a.g;
    q0 = w * w * a.gdot;
    c3 = 10.0 * d - 6.0 * m0 - 4.0 * m1 - 1.5 * q0 + 0.5 * q1;
    c4 = -15.0 * d + 8.0 * m0 + 7.0 * m1 + 1.5 * q0 - q1;
    c5 = 6.0 * d - 3.0 * (m0 + m1) + 0.5 * (q1 - q0);
  }
  double value(double z) const { return f0 + z * (m0 + z * (0.5 * q0 + z * (c3 + z * (c4 + z * c5)))); }
  double rate(double z) const { return m0 + z * (q0 + z * (3.0 * c3 + z * (4.0 * c4 + z * 5.0 * c5))); }
  double curvature(double z) const { return q0 + z * (6.0 * c3 + z * (12.0 * c4 + z * 20.0 * c5)); }
  double jerk(double z) const { return 6.0 * c3 + z * (24.0 * c4 + z * 60.0 * c5); }
};

// The extremum between two samples whose rates have opposite signs, on the cubic through both
// samples' values and rates: where it lies (0 at a, 1 at b) and its value. The cubic's derivative,
// a quadratic with opposite signs at the ends, has exactly one root between them.
struct peak {
  double z, value;
};
peak cubic_peak(const point& a, const point& b) {
  const double w = b.t - a.t;
  const double m0 = w * a.g, m1 = w * b.g, d = b.f - a.f;
  const double bq = 3.0 * d - 2.0 * m0 - m1, cq = m0 + m1 - 2.0 * d;  // f = f0 + m0 z + bq z^2 + cq z^3
  // m0 + 2 bq z + 3 cq z^2 = 0, by the form that loses no digits: q = -(bq + sign(bq) sqrt(...)),
  // roots q / (3 cq) and m0 / q.
  const double disc = std::max(bq * bq - 3.0 * cq * m0, 0.0);
  const double q = -(bq + std::copysign(std::sqrt(disc), bq));
  double z = q != 0.0 ? m0 / q : -1.0;
  if (!(z >= 0.0 && z <= 1.0) && cq != 0.0) z = q / (3.0 * cq);
  if (!(z >= 0.0 && z <= 1.0)) z = m0 / (m0 - m1);  // the rate's chord, if rounding left no root
  z = std::clamp(z, 0.0, 1.0);
  return {z, a.f + z * (m0 + z * (bq + z * cq))};
}

// A step between two grid points (or a grid point and the window's end) where something can
// happen, as the walk finds it; what it holds is worked out afterwards, for all of a station's
// steps at once.
struct step_job {
  point a, b;
  std::size_t k{0};      // the grid step [k, k + 1] that holds it
  bool extremum{false};  // the rate changes sign: a culmination or a low point between a and b
  bool is_max{false};
  bool peak{false};      // its extremum is among the peaks solved
  bool skip{false};      // nothing in it can matter
};

// A bracket of the root finding and its root.
struct bracket {
  bracket(const point& from, const point& to, std::size_t step) : a(from), b(to), k(step) {}
  point a, b;
  std::size_t k;  // the grid step that holds it (the uneven grid's lookups start there)
  sample x;  // written by the root finding
};

// One thread's lists of them, reused from station to station.
struct step_buffers {
  std::vector<step_job> steps;
  std::vector<bracket> peaks, crossings;
};

// How many brackets the root finding works on in lock-step: each one's Newton steps are a chain
// of dependent divisions and square roots, and independent chains side by side let the CPU
// overlap them.
constexpr std::size_t lanes = 4;

// One satellite's track over one station.
class pair_search {
 public:
  pair_search(const track& tr, const site& st, double end)
      : tr_(tr), st_(st), end_(end), sin_mask_(std::sin(st.min_elevation_rad)),
        sin_floor_(st.min_elevation_rad > 0 ? sin_mask_ : 0.0),
        up_{st.cos_lat * st.cos_lon, st.cos_lat * st.sin_lon, st.sin_lat} {}
  void run(std::size_t si, std::size_t gi, std::vector<pass_window>& out, scratch& buffers, step_buffers& work);

 private:
  sample at_point(std::size_t i) const;
  // The interpolated sample at t, with the acceleration and g's rate (what the second-order
  // Newton steps and advance() need).
  sample at(double t) const;
  // at() for the active ones of `lanes` times at once, in SIMD lanes.
  void at_lanes(const double* t, const bool* active, const bracket* job, sample* const* x) const;
  void culminations(bracket* jobs, std::size_t count) const;
  void crossings(bracket* jobs, std::size_t count) const;
  void solve(step_buffers& work);
  void open_at(const sample& s, bool clipped);
  void close_at(const sample& s, bool clipped);
  void consider_max(const sample& s);
  sample from_state(double t, const double r[3], const double v[3], const double* acc) const;
  void advance(sample& s, double dt) const;
  void east_north(const sample& s, double& e, double& n) const;

  const track& tr_;
  const site& st_;
  double end_;
  double sin_mask_;
  double sin_floor_;  // the sine of the mask, or 0 below the horizon: quality_of's lower end
  double up_[3];
  sample best_{};          // the highest sample of the open pass: its angles are computed at close
  double aos_e_{0}, aos_n_{0};  // the open pass's AOS, east and north: its azimuth is computed at close
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
  sample s{};
  s.t = t;
  s.dx = r[0] - st_.ecef[0];
  s.dy = r[1] - st_.ecef[1];
  s.dz = r[2] - st_.ecef[2];
  s.vx = v[0];
  s.vy = v[1];
  s.vz = v[2];
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
    s.ax = acc[0];
    s.ay = acc[1];
    s.az = acc[2];
    const double au = up_[0] * acc[0] + up_[1] * acc[1] + up_[2] * acc[2];
    const double vv = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
    const double da = s.dx * acc[0] + s.dy * acc[1] + s.dz * acc[2];
    const double rhoddot = (vv + da - rhodot * rhodot) * w;
    s.gdot = (au - (2.0 * vu * rhodot + s.u * rhoddot) * w + 2.0 * s.u * rhodot * rhodot * w * w) * w;
  }
  return s;
}

// A sample moved by dt along its velocity and acceleration: for the last step of a root, where
// what that leaves out (a sixth of the jerk, 1e-5 km/s^3 in a low orbit, times dt cubed) is
// below 0.2 mm for the half second a last step may take.
void pair_search::advance(sample& x, double dt) const {
  // In place: the position's step takes the velocity before the velocity's own.
  const double h = 0.5 * dt * dt;
  x.t += dt;
  x.dx += x.vx * dt + x.ax * h;
  x.dy += x.vy * dt + x.ay * h;
  x.dz += x.vz * dt + x.az * h;
  x.vx += x.ax * dt;
  x.vy += x.ay * dt;
  x.vz += x.az * dt;
  x.u = up_[0] * x.dx + up_[1] * x.dy + up_[2] * x.dz;
  x.range = std::sqrt(x.dx * x.dx + x.dy * x.dy + x.dz * x.dz);
  x.f = x.u / x.range - sin_mask_;
  x.g += x.gdot * dt;
}

// atan2 to a few ulps in a third of libm's time (three azimuths a pass made it 5 % of the search):
// the smaller of |y| and |x| over the larger, r in [0, 1], is reduced to d = (r - c) / (1 + r c)
// with c the nearest sixteenth, |d| <= 1/32, and atan r = atan c + atan d, atan d by its series to
// d^11 (the first term left out is below 1e-19).
const std::array<double, 17> atan_sixteenths = [] {
  std::array<double, 17> t{};
  for (int j = 0; j <= 16; ++j) t[j] = std::atan(j / 16.0);
  return t;
}();

// Four of them at once in SIMD lanes, without branches (a pass's three azimuths and its
// elevation: the signs of random directions mispredicted the scalar one's branches). Where y and x
// are both zero, 0. (Written to `out`: a returned AVX vector would change the plain build's ABI.)
void fast_atan2(const lane_vec& y, const lane_vec& x, lane_vec& out) {
  const lane_mask magnitude = lane_mask{} + 0x7fffffffffffffffLL;
  const lane_vec ax = reinterpret_cast<lane_vec>(reinterpret_cast<lane_mask>(x) & magnitude);
  const lane_vec ay = reinterpret_cast<lane_vec>(reinterpret_cast<lane_mask>(y) & magnitude);
  const lane_vec zero{}, one = zero + 1.0;
  const lane_mask steep = ay > ax;
  const lane_vec num = steep ? ax : ay, den = steep ? ay : ax;
  const lane_vec r = num / (den == zero ? one : den);
  const lane_mask j = __builtin_convertvector(r * 16.0 + 0.5, lane_mask);
  const lane_vec c = __builtin_convertvector(j, lane_vec) / 16.0, d = (r - c) / (1.0 + r * c), d2 = d * d;
  const lane_vec table = {atan_sixteenths[j[0]], atan_sixteenths[j[1]], atan_sixteenths[j[2]], atan_sixteenths[j[3]]};
  lane_vec a = table + d * (1.0 + d2 * (-1.0 / 3 + d2 * (1.0 / 5 + d2 * (-1.0 / 7 + d2 * (1.0 / 9 - d2 * (1.0 / 11))))));
  a = steep ? 0.5 * pi - a : a;
  a = x < zero ? pi - a : a;
  out = y < zero ? -a : a;
}

// The horizontal components of a sample's offset from the station: east (e) and north (n).
void pair_search::east_north(const sample& s, double& e, double& n) const {
  e = -st_.sin_lon * s.dx + st_.cos_lon * s.dy;
  n = -st_.sin_lat * st_.cos_lon * s.dx - st_.sin_lat * st_.sin_lon * s.dy + st_.cos_lat * s.dz;
}

sample pair_search::at_point(std::size_t i) const {
  const double r[3] = {tr_.x[i], tr_.y[i], tr_.z[i]}, v[3] = {tr_.vx[i], tr_.vy[i], tr_.vz[i]};
  const double a[3] = {tr_.ax[i], tr_.ay[i], tr_.az[i]};
  return from_state(tr_.time_of(i), r, v, a);
}

sample pair_search::at(double t) const {
  std::size_t i;
  double s, h, inv_h;
  if (tr_.uniform) {
    const double x = (t - tr_.t0) * tr_.inv_h;
    i = static_cast<std::size_t>(std::clamp(std::floor(x), 0.0, static_cast<double>(tr_.n - 2)));
    s = x - static_cast<double>(i);
    h = tr_.h;
    inv_h = tr_.inv_h;
  } else {
    i = tr_.step_of(t);
    h = tr_.tt[i + 1] - tr_.tt[i];
    inv_h = 1.0 / h;
    s = (t - tr_.tt[i]) * inv_h;
  }
  const double* cols[9] = {tr_.x, tr_.y, tr_.z, tr_.vx, tr_.vy, tr_.vz, tr_.ax, tr_.ay, tr_.az};
  double r[3], v[3], a[3];
  for (int c = 0; c < 3; ++c) {
    // The quintic p0 + m0 s + q0 s^2 / 2 + c3 s^3 + c4 s^4 + c5 s^5 on s in [0, 1] that matches
    // position, velocity (m = h v) and acceleration (q = h^2 a) at both ends.
    const double p0 = cols[c][i], d = cols[c][i + 1] - p0;
    const double m0 = h * cols[c + 3][i], m1 = h * cols[c + 3][i + 1];
    const double q0 = h * h * cols[c + 6][i], q1 = h * h * cols[c + 6][i + 1];
    const double c3 = 10.0 * d - 6.0 * m0 - 4.0 * m1 - 1.5 * q0 + 0.5 * q1;
    const double c4 = -15.0 * d + 8.0 * m0 + 7.0 * m1 + 1.5 * q0 - q1;
    const double c5 = 6.0 * d - 3.0 * (m0 + m1) + 0.5 * (q1 - q0);
    r[c] = p0 + s * (m0 + s * (0.5 * q0 + s * (c3 + s * (c4 + s * c5))));
    v[c] = (m0 + s * (q0 + s * (3.0 * c3 + s * (4.0 * c4 + s * (5.0 * c5))))) * inv_h;
    a[c] = (q0 + s * (6.0 * c3 + s * (12.0 * c4 + s * (20.0 * c5)))) * inv_h * inv_h;
  }
  return from_state(t, r, v, a);
}

static_assert(lanes == 4, "at_lanes() works on four lanes");

// at() and from_state() for every active lane at once: the interpolant's three quintics and the
// topocentric geometry in SIMD lanes (inactive lanes compute an active one's time and are
// dropped). The same arithmetic as at() lane by lane, but for how the compiler fuses
// multiply-adds: within an ulp or so of it.
void pair_search::at_lanes(const double* t, const bool* active, const bracket* job, sample* const* out) const {
  std::size_t fill = 0;
  while (fill < lanes && !active[fill]) ++fill;
  if (fill == lanes) return;
  std::size_t idx[lanes];
  lane_vec sv, tv, h, hh, inv_h, inv_h2;
  if (tr_.uniform) {
    const double last = static_cast<double>(tr_.n - 2);
    for (std::size_t l = 0; l < lanes; ++l) {
      const double tl = active[l] ? t[l] : t[fill];
      const double xl = (tl - tr_.t0) * tr_.inv_h;
      idx[l] = static_cast<std::size_t>(std::clamp(std::floor(xl), 0.0, last));
      sv[l] = xl - static_cast<double>(idx[l]);
      tv[l] = tl;
    }
    const double hs = tr_.h, is = tr_.inv_h;
    h = hs + lane_vec{};
    hh = hs * hs + lane_vec{};
    inv_h = is + lane_vec{};
    inv_h2 = is * is + lane_vec{};
  } else {
    for (std::size_t l = 0; l < lanes; ++l) {
      const std::size_t from = active[l] ? l : fill;
      const double tl = t[from];
      const std::size_t k = tr_.step_near(tl, job[from].k);
      const double hl = tr_.tt[k + 1] - tr_.tt[k], il = 1.0 / hl;
      idx[l] = k;
      sv[l] = (tl - tr_.tt[k]) * il;
      tv[l] = tl;
      h[l] = hl;
      hh[l] = hl * hl;
      inv_h[l] = il;
      inv_h2[l] = il * il;
    }
  }
  const std::size_t i0 = idx[0], i1 = idx[1], i2 = idx[2], i3 = idx[3];
  const double* cols[9] = {tr_.x, tr_.y, tr_.z, tr_.vx, tr_.vy, tr_.vz, tr_.ax, tr_.ay, tr_.az};
  lane_vec r[3], v[3], a[3];
  for (int c = 0; c < 3; ++c) {
    const double *P = cols[c], *V = cols[c + 3], *A = cols[c + 6];
    const lane_vec p0 = {P[i0], P[i1], P[i2], P[i3]}, p1 = {P[i0 + 1], P[i1 + 1], P[i2 + 1], P[i3 + 1]};
    const lane_vec m0 = h * lane_vec{V[i0], V[i1], V[i2], V[i3]};
    const lane_vec m1 = h * lane_vec{V[i0 + 1], V[i1 + 1], V[i2 + 1], V[i3 + 1]};
    const lane_vec q0 = hh * lane_vec{A[i0], A[i1], A[i2], A[i3]};
    const lane_vec q1 = hh * lane_vec{A[i0 + 1], A[i1 + 1], A[i2 + 1], A[i3 + 1]};
    const lane_vec d = p1 - p0;
    const lane_vec c3 = 10.0 * d - 6.0 * m0 - 4.0 * m1 - 1.5 * q0 + 0.5 * q1;
    const lane_vec c4 = -15.0 * d + 8.0 * m0 + 7.0 * m1 + 1.5 * q0 - q1;
    const lane_vec c5 = 6.0 * d - 3.0 * (m0 + m1) + 0.5 * (q1 - q0);
    r[c] = p0 + sv * (m0 + sv * (0.5 * q0 + sv * (c3 + sv * (c4 + sv * c5))));
    v[c] = (m0 + sv * (q0 + sv * (3.0 * c3 + sv * (4.0 * c4 + sv * (5.0 * c5))))) * inv_h;
    a[c] = (q0 + sv * (6.0 * c3 + sv * (12.0 * c4 + sv * (20.0 * c5)))) * inv_h2;
  }
  // from_state(), lane by lane in SIMD.
  const lane_vec dx = r[0] - st_.ecef[0], dy = r[1] - st_.ecef[1], dz = r[2] - st_.ecef[2];
  const lane_vec u = up_[0] * dx + up_[1] * dy + up_[2] * dz;
  const lane_vec vu = up_[0] * v[0] + up_[1] * v[1] + up_[2] * v[2];
  const lane_vec dv = dx * v[0] + dy * v[1] + dz * v[2];
  const lane_vec rho2 = dx * dx + dy * dy + dz * dz;
  lane_vec rho;
  for (std::size_t l = 0; l < lanes; ++l) rho[l] = std::sqrt(rho2[l]);
  const lane_vec w = 1.0 / rho;
  const lane_vec rhodot = dv * w;
  const lane_vec f = u * w - sin_mask_;
  const lane_vec g = (vu - u * rhodot * w) * w;
  const lane_vec au = up_[0] * a[0] + up_[1] * a[1] + up_[2] * a[2];
  const lane_vec vv = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
  const lane_vec da = dx * a[0] + dy * a[1] + dz * a[2];
  const lane_vec rhoddot = (vv + da - rhodot * rhodot) * w;
  const lane_vec gdot = (au - (2.0 * vu * rhodot + u * rhoddot) * w + 2.0 * u * rhodot * rhodot * w * w) * w;
  for (std::size_t l = 0; l < lanes; ++l) {
    if (!active[l]) continue;
    sample& s = *out[l];
    s.t = tv[l];
    s.f = f[l];
    s.g = g[l];
    s.gdot = gdot[l];
    s.dx = dx[l];
    s.dy = dy[l];
    s.dz = dz[l];
    s.vx = v[0][l];
    s.vy = v[1][l];
    s.vz = v[2][l];
    s.ax = a[0][l];
    s.ay = a[1][l];
    s.az = a[2][l];
    s.u = u[l];
    s.range = rho[l];
  }
}

// The culminations (or low points) in brackets whose elevation rates have opposite signs:
// Newton's method on the rate with its own derivative (from the interpolant's acceleration), kept
// inside the bracket (a step that would leave it bisects instead), to a hundredth of a second:
// the elevation is flat there. Each starts from the peak of the cubic through both samples; the
// last Newton step is taken by moving the sample, not by evaluating the interpolant again.
// `lanes` brackets at a time, in lock-step; each one's arithmetic is what it was alone.
void pair_search::culminations(bracket* jobs, std::size_t count) const {
  constexpr double tolerance = 10 * root_tolerance_s;
  for (std::size_t first = 0; first < count; first += lanes) {
    bracket* job = jobs + first;
    const std::size_t m = std::min(lanes, count - first);
    double lo[lanes], hi[lanes], t[lanes], w[lanes], z0[lanes], inv_w[lanes], inv_w3[lanes];
    bool rising_at_lo[lanes], active[lanes] = {};
    quintic p[lanes];
    // Each lane's sample is its bracket's own (the lanes past m, never active, point at a spare).
    sample spare;
    sample* x[lanes];
    for (std::size_t l = 0; l < lanes; ++l) x[l] = l < m ? &job[l].x : &spare;
    for (std::size_t l = 0; l < m; ++l) {
      const point &a = job[l].a, &b = job[l].b;
      lo[l] = a.t;
      hi[l] = b.t;
      rising_at_lo[l] = a.g > 0;
      w[l] = b.t - a.t;
      inv_w[l] = 1.0 / w[l];
      inv_w3[l] = inv_w[l] * inv_w[l] * inv_w[l];
      p[l] = quintic(a, b);
      z0[l] = cubic_peak(a, b).z;
      active[l] = true;
    }
    // Two Newton steps on the quintics' rates, in SIMD lanes: a lane whose step would leave
    // (0, 1) keeps its z and takes no further step, as it did alone.
    lane_vec z, q0, c3, c4, c5, m0;
    for (std::size_t l = 0; l < lanes; ++l) {
      const std::size_t k = l < m ? l : 0;
      z[l] = z0[k];
      m0[l] = p[k].m0;
      q0[l] = p[k].q0;
      c3[l] = p[k].c3;
      c4[l] = p[k].c4;
      c5[l] = p[k].c5;
    }
    lane_mask live = z == z;
    for (int k = 0; k < 2; ++k) {
      const lane_vec c = q0 + z * (6.0 * c3 + z * (12.0 * c4 + z * 20.0 * c5));
      const lane_vec r = m0 + z * (q0 + z * (3.0 * c3 + z * (4.0 * c4 + z * 5.0 * c5)));
      const lane_vec next = c != 0.0 ? z - r / c : z;
      live = live & (next > 0.0) & (next < 1.0);
      z = live ? next : z;
    }
    for (std::size_t l = 0; l < m; ++l) t[l] = job[l].a.t + w[l] * z[l];
    for (int i = 0; i < 40; ++i) {
      at_lanes(t, active, job, x);
      bool any = false;
      for (std::size_t l = 0; l < m; ++l) {
        if (!active[l]) continue;
        if (x[l]->g == 0.0) {
          active[l] = false;
          continue;
        }
        if ((x[l]->g > 0) == rising_at_lo[l]) lo[l] = t[l]; else hi[l] = t[l];
        double next = 0.5 * (lo[l] + hi[l]);
        if (x[l]->gdot != 0.0) {
          // Newton's step, then once more with the rate's second derivative (the quintic's, near
          // enough for a correction) over that step: with dt = -g / g' and the slope
          // s = g' + jerk dt / 2, the step -g / s is -g g' / (g' s), and g' s = g'^2 - jerk g / 2,
          // so both are one division each, side by side (the two divisions one after the other
          // were a tenth of a Newton step's latency).
          const double g = x[l]->g, gd = x[l]->gdot;
          const double jerk = p[l].jerk((t[l] - job[l].a.t) * inv_w[l]) * inv_w3[l];
          const double den = gd * gd - 0.5 * jerk * g;
          const double dt = -g / gd, corrected = -(g * gd) / den;
          next = t[l] + (den > 0.0 ? corrected : dt);
        }
        // (>= and <=: a converged step rounds to t itself, an ulp of a Unix time being 2e-7 s)
        if (!(next >= lo[l] && next <= hi[l])) next = 0.5 * (lo[l] + hi[l]);
        if (std::fabs(next - t[l]) < accept_culmination_s || hi[l] - lo[l] < tolerance) {
          advance(*x[l], next - t[l]);
          active[l] = false;
          continue;
        }
        t[l] = next;
        any = true;
      }
      if (!any) break;
    }
  }
}

void pair_search::open_at(const sample& s, bool clipped) {
  open_ = true;
  cur_ = pass_window{};
  cur_.satellite = si_;
  cur_.station = gi_;
  cur_.aos = s.t;
  east_north(s, aos_e_, aos_n_);
  cur_.starts_before = clipped;
  best_ = s;
}

void pair_search::consider_max(const sample& s) {
  if (open_ && s.f > best_.f) best_ = s;
}

void pair_search::close_at(const sample& s, bool clipped) {
  if (!open_) return;
  consider_max(s);
  open_ = false;
  cur_.culmination = best_.t;
  cur_.culmination_range_km = best_.range;
  cur_.los = s.t;
  // The three azimuths and the culmination's elevation, in one call's four lanes. The elevation is
  // the angle of the up component over the horizontal one (better conditioned near the zenith
  // than asin of u / range, and a fifth of libm's asin's time).
  double be, bn, se, sn;
  east_north(best_, be, bn);
  east_north(s, se, sn);
  lane_vec angle;
  fast_atan2(lane_vec{aos_e_, be, best_.u, se}, lane_vec{aos_n_, bn, std::sqrt(be * be + bn * bn), sn}, angle);
  angle /= deg;
  angle = (angle < 0.0) & lane_mask{-1, -1, 0, -1} ? angle + 360.0 : angle;
  cur_.aos_azimuth_deg = angle[0];
  cur_.culmination_azimuth_deg = angle[1];
  cur_.max_elevation_deg = angle[2];
  cur_.los_azimuth_deg = angle[3];
  cur_.ends_after = clipped;
  cur_.duration_s = cur_.los - cur_.aos;
  cur_.quality = quality_of(std::clamp(best_.u / best_.range, -1.0, 1.0), sin_floor_, cur_.duration_s);
  out_->push_back(cur_);
}

// Brackets between two samples where the elevation is monotone and crosses the mask: the
// crossing, found by Newton's method on the elevation with its rate as the derivative, kept
// inside the bracket (a step that would leave it bisects instead). `lanes` brackets at a time,
// in lock-step; each one's arithmetic is what it was alone.
void pair_search::crossings(bracket* jobs, std::size_t count) const {
  for (std::size_t first = 0; first < count; first += lanes) {
    bracket* job = jobs + first;
    const std::size_t m = std::min(lanes, count - first);
    double lo[lanes], hi[lanes], t[lanes], w[lanes], z0[lanes];
    quintic p[lanes];
    bool rising[lanes], active[lanes] = {};
    // Each lane's sample is its bracket's own (the lanes past m, never active, point at a spare).
    sample spare;
    sample* x[lanes];
    for (std::size_t l = 0; l < lanes; ++l) x[l] = l < m ? &job[l].x : &spare;
    for (std::size_t l = 0; l < m; ++l) {
      const point &a = job[l].a, &b = job[l].b;
      lo[l] = a.t;
      hi[l] = b.t;
      rising[l] = a.f < 0;
      // First guess: the chord's zero, moved by Newton steps on the quintic through both
      // samples' values, rates and rates' rates (no propagation; usually within a few hundredths
      // of a second of the crossing).
      w[l] = b.t - a.t;
      z0[l] = a.f / (a.f - b.f);
      p[l] = quintic(a, b);
    }
    // Three Newton steps on the quintics, in SIMD lanes: a lane whose step would leave (0, 1)
    // keeps its z and takes no further step, as it did alone.
    lane_vec z, f0, m0, q0, c3, c4, c5;
    for (std::size_t l = 0; l < lanes; ++l) {
      const std::size_t k = l < m ? l : 0;
      z[l] = z0[k];
      f0[l] = p[k].f0;
      m0[l] = p[k].m0;
      q0[l] = p[k].q0;
      c3[l] = p[k].c3;
      c4[l] = p[k].c4;
      c5[l] = p[k].c5;
    }
    lane_mask live = z == z;
    for (int k = 0; k < 3; ++k) {
      const lane_vec dv = m0 + z * (q0 + z * (3.0 * c3 + z * (4.0 * c4 + z * 5.0 * c5)));
      const lane_vec v = f0 + z * (m0 + z * (0.5 * q0 + z * (c3 + z * (c4 + z * c5))));
      const lane_vec next = dv != 0.0 ? z - v / dv : z;
      live = live & (next > 0.0) & (next < 1.0);
      z = live ? next : z;
    }
    for (std::size_t l = 0; l < m; ++l) t[l] = job[l].a.t + w[l] * z[l];
    for (std::size_t l = 0; l < lanes; ++l) active[l] = l < m;
    at_lanes(t, active, job, x);
    for (int i = 0; i < 40; ++i) {
      bool any = false;
      for (std::size_t l = 0; l < m; ++l) {
        if (!active[l]) continue;
        if (x[l]->f == 0.0) {
          active[l] = false;
          continue;
        }
        if ((x[l]->f < 0) == rising[l]) lo[l] = t[l]; else hi[l] = t[l];
        double next = 0.5 * (lo[l] + hi[l]);
        if (x[l]->g != 0.0) {
          // Newton's step, then once more with the rate's change over that step (second order:
          // from an error e it lands within about f''' e^3 / 6 f' of the crossing, microseconds
          // for the seconds it may take). With dt = -f / g and the slope s = g + g' dt / 2, the
          // step -f / s is -f g / (g s), and g s = g^2 - g' f / 2: one division, side by side
          // with dt's, where the slope's took a second one after it.
          const double f = x[l]->f, g = x[l]->g;
          const double den = g * g - 0.5 * x[l]->gdot * f;
          const double dt = -f / g, corrected = -(f * g) / den;
          next = t[l] + (den > 0.0 ? corrected : dt);
        }
        if (!(next >= lo[l] && next <= hi[l])) next = 0.5 * (lo[l] + hi[l]);  // inclusive: see culminations()
        if (std::fabs(next - t[l]) < accept_rise_set_s) {
          advance(*x[l], next - t[l]);
          active[l] = false;
          continue;
        }
        t[l] = next;
        any = true;
      }
      if (!any) break;
      at_lanes(t, active, job, x);
    }
  }
}

// What a station's steps hold, in three rounds over all of them: the culminations (and low
// points) where the rate changes sign, then the crossings of the mask on either side of them and
// in the steps without one, then the passes, opened and closed in the order of the steps. A grid
// step is short enough that at most one extremum lies in it.
void pair_search::solve(step_buffers& work) {
  std::vector<step_job>& steps = work.steps;
  std::vector<bracket>& peaks = work.peaks;
  std::vector<bracket>& cross = work.crossings;
  peaks.clear();
  cross.clear();
  for (step_job& s : steps) {
    const point &a = s.a, &b = s.b;
    s.extremum = (a.g > 0 && b.g <= 0) || (a.g < 0 && b.g >= 0);
    s.is_max = a.g > 0;
    s.skip = false;
    s.peak = false;
    if (s.extremum) {
      // A low point between two samples below the mask stays below it. A high point between two
      // samples below the mask matters only if it could reach the mask: the cubic through both
      // samples' values and rates estimates it to well under 0.01 in the sine of the elevation
      // over one step; a deficit of 0.05 (about 3 degrees) rules it out.
      if (a.f < 0 && b.f < 0 && (!s.is_max || cubic_peak(a, b).value < -0.05))
        s.skip = true;
      else {
        peaks.emplace_back(a, b, s.k);
        s.peak = true;
      }
    } else if ((a.f < 0) == (b.f < 0)) {
      s.skip = true;
    }
  }
  culminations(peaks.data(), peaks.size());
  std::size_t pk = 0;
  for (step_job& s : steps) {
    if (s.skip) continue;
    if (!s.peak) {
      cross.emplace_back(s.a, s.b, s.k);
      continue;
    }
    const sample& x = peaks[pk++].x;
    // A maximum below the mask, between two samples below it, cannot matter.
    if (s.is_max && x.f < 0 && s.a.f < 0 && s.b.f < 0) {
      s.skip = true;
      continue;
    }
    if ((s.a.f < 0) != (x.f < 0)) cross.emplace_back(s.a, point_of(x), s.k);
    if ((x.f < 0) != (s.b.f < 0)) cross.emplace_back(point_of(x), s.b, s.k);
  }
  crossings(cross.data(), cross.size());
  std::size_t cr = 0;
  pk = 0;
  auto crossing = [&](const bracket& c) {
    if (c.a.f < 0)
      open_at(c.x, false);
    else
      close_at(c.x, false);
  };
  for (const step_job& s : steps) {
    const sample* x = s.peak ? &peaks[pk++].x : nullptr;
    if (s.skip) continue;
    if (!x) {
      crossing(cross[cr++]);
      continue;
    }
    if ((s.a.f < 0) != (x->f < 0)) crossing(cross[cr++]);
    if (s.is_max) consider_max(*x);
    if ((x->f < 0) != (s.b.f < 0)) crossing(cross[cr++]);
  }
  steps.clear();
}

void pair_search::run(std::size_t si, std::size_t gi, std::vector<pass_window>& out, scratch& buffers,
                      step_buffers& work) {
  double *f = buffers.f.get(), *g = buffers.g.get(), *gd = buffers.gd.get();
  unsigned char* near = buffers.near.get();
  std::int64_t* signs = buffers.signs.get();
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
  const station_geometry gs{{st_.ecef[0], st_.ecef[1], st_.ecef[2]},
                            {up_[0], up_[1], up_[2]},
                            {st_.ecef[0] / rs, st_.ecef[1] / rs, st_.ecef[2] / rs},
                            std::cos(std::min(lambda + tr_.angle * 0.6, pi)),
                            sin_mask_};
  const std::size_t n = tr_.n;
  scan_near(tr_, gs, near);
  std::memset(near + n, 0, 9);
  // Intervals [i, i + 1] that start before the window's end.
  const std::size_t last =
      tr_.uniform ? std::min(n - 1, static_cast<std::size_t>(std::ceil((end_ - tr_.t0) / tr_.h)))
                  : std::min(n - 1, static_cast<std::size_t>(std::lower_bound(tr_.tt, tr_.tt + n, end_) - tr_.tt));
  const sample first = at_point(0);
  if (first.f >= 0) open_at(first, true);
  auto grid_point = [&](std::size_t k) {
    return k == 0 ? point_of(first) : point{tr_.time_of(k), f[k], g[k], gd[k]};
  };
  std::size_t i = 0;
  while (i < last) {
    if (!near[i] && !near[i + 1]) {
      // Out of sight for the whole step (so no pass can be open): jump to the next near point.
      const void* hit = std::memchr(near + i + 1, 1, last - i);
      if (!hit) break;
      i = static_cast<std::size_t>(static_cast<const unsigned char*>(hit) - near) - 1;
      continue;
    }
    // A stretch of steps [i, e) each with a near end. Their grid points' values are computed in
    // one vectorised pass, and only the steps where something can happen (the sine of the
    // elevation crosses the mask, or its rate changes sign other than at a low point below the
    // mask) are listed for solve(): most near steps are neither, and skipping them without building
    // their points is what makes the walk cheap.
    const std::size_t e = first_pair_of_zeros(near, i + 1, last);
    const bool clipped = tr_.time_of(e) > end_;  // the last point is past the end
    const std::size_t grid_end = clipped ? e - 1 : e;                    // steps with both ends on the grid
    scan_values(tr_, gs, i, grid_end + 1, f, g, gd, signs);
    if (i == 0 && grid_end > 0) work.steps.push_back({grid_point(0), grid_point(1), 0});  // starts at `first`
    // Only where the signs of f or g change between grid points can a step hold an event.
    for (std::size_t k = i == 0 ? 1 : i; k < grid_end; ++k) {
      if (signs[k] == signs[k + 1]) continue;
      const double fa = f[k], fb = f[k + 1], ga = g[k], gb = g[k + 1];
      const bool turns = (ga > 0 && gb <= 0) || (ga < 0 && gb >= 0);
      const bool crosses = (fa < 0) != (fb < 0);
      if (crosses || (turns && !(ga < 0 && fa < 0 && fb < 0))) work.steps.push_back({grid_point(k), grid_point(k + 1), k});
    }
    if (clipped) work.steps.push_back({grid_point(grid_end), point_of(at(end_)), grid_end});
    i = e;
  }
  solve(work);
  if (open_) {
    // Still in view at the window's end, or at the last good state before a propagation error.
    const double t_last = std::min(end_, tr_.time_of(n - 1));
    close_at(at(t_last), true);
  }
}

// The threads' results in one vector sorted by (AOS, satellite, station). Each part is already in
// (satellite, station, AOS) order (a thread takes satellites in increasing order and searches
// the stations in turn), so merging the parts by satellite and then sorting by AOS alone with a
// stable sort gives that order. The sort is a least-significant-digit radix sort of the AOS's
// bits on small keys that point into the parts: a comparison sort of the 112-byte windows, or
// of keys with three fields, cost 4 % of the whole search.
std::vector<pass_window> sorted_by_aos(std::vector<std::vector<pass_window>>& parts,
                                       std::vector<std::uint32_t>* order = nullptr) {
  struct key {
    std::uint64_t bits;  // the AOS as an unsigned integer in the same order as the double
    std::uint32_t part, index;
  };
  std::size_t total = 0;
  for (const auto& p : parts) total += p.size();
  std::vector<key> keys(total), spare(total);
  auto ordered_bits = [](double t) {
    const auto b = std::bit_cast<std::uint64_t>(t);
    return (b >> 63) ? ~b : b | (std::uint64_t{1} << 63);
  };
  // Merge by satellite: every satellite's passes are in one part, contiguous.
  std::vector<std::size_t> at(parts.size(), 0);
  for (std::size_t k = 0; k < total;) {
    std::size_t best = parts.size();
    for (std::size_t p = 0; p < parts.size(); ++p) {
      if (at[p] == parts[p].size()) continue;
      if (best == parts.size() || parts[p][at[p]].satellite < parts[best][at[best]].satellite) best = p;
    }
    const std::size_t sat = parts[best][at[best]].satellite;
    for (; at[best] < parts[best].size() && parts[best][at[best]].satellite == sat; ++at[best], ++k)
      keys[k] = {ordered_bits(parts[best][at[best]].aos), static_cast<std::uint32_t>(best),
                 static_cast<std::uint32_t>(at[best])};
  }
  // One histogram per 13-bit digit in one pass; digits that all keys share (the high ones: the
  // times lie within days of each other) are skipped. (Thirteen bits: a day's AOS differ in their
  // low 38 bits, three passes where bytes took five.)
  constexpr int digit_bits = 13, digits = (64 + digit_bits - 1) / digit_bits;
  constexpr std::uint64_t digit_mask = (std::uint64_t{1} << digit_bits) - 1;
  std::vector<std::uint32_t> counts(static_cast<std::size_t>(digits) << digit_bits, 0);
  for (const key& k : keys)
    for (int d = 0; d < digits; ++d) ++counts[(static_cast<std::size_t>(d) << digit_bits) + ((k.bits >> (digit_bits * d)) & digit_mask)];
  for (int d = 0; d < digits; ++d) {
    std::uint32_t* c = counts.data() + (static_cast<std::size_t>(d) << digit_bits);
    if (total == 0 || c[(keys[0].bits >> (digit_bits * d)) & digit_mask] == total) continue;
    std::uint32_t sum = 0;
    for (std::size_t j = 0; j <= digit_mask; ++j) {
      const std::uint32_t here = c[j];
      c[j] = sum;
      sum += here;
    }
    for (const key& k : keys) spare[c[(k.bits >> (digit_bits * d)) & digit_mask]++] = k;
    keys.swap(spare);
  }
  if (order) {
    // The windows stay where they are (the parts one after the other); `order` says where each
    // one of the sorted sequence is.
    std::vector<std::size_t> offset(parts.size(), 0);
    for (std::size_t p = 1; p < parts.size(); ++p) offset[p] = offset[p - 1] + parts[p - 1].size();
    order->resize(total);
    for (std::size_t k = 0; k < total; ++k)
      (*order)[k] = static_cast<std::uint32_t>(offset[keys[k].part] + keys[k].index);
    if (parts.size() == 1) return std::move(parts[0]);
    std::vector<pass_window> all;
    all.reserve(total);
    for (auto& p : parts) all.insert(all.end(), p.begin(), p.end());
    return all;
  }
  if (parts.size() == 1) {
    // One thread's part is put in order where it is (following each cycle of the permutation):
    // a second 8 MB vector for a day of gpredict's catalogue over 20 stations cost its page
    // faults anew on every call, 5 % of a search.
    std::vector<pass_window>& only = parts[0];
    for (std::size_t start = 0; start < total; ++start) {
      if (keys[start].part != 0) continue;  // already placed (marked)
      const pass_window held = only[start];
      std::size_t to = start;
      // A second walk along the cycle, a few windows ahead, asks for the windows to be moved
      // next: the moves themselves are a chain of dependent loads from all over the vector.
      std::size_t ahead = start;
      for (int d = 0; d < 8 && keys[ahead].index != start; ++d) ahead = keys[ahead].index;
      while (keys[to].index != start) {
        const std::size_t from = keys[to].index;
        if (keys[ahead].index != start) {
          ahead = keys[ahead].index;
          __builtin_prefetch(&only[ahead]);
          __builtin_prefetch(reinterpret_cast<const char*>(&only[ahead]) + sizeof(pass_window) - 1);
        }
        only[to] = only[from];
        keys[to].part = 1;
        to = from;
      }
      only[to] = held;
      keys[to].part = 1;
    }
    return std::move(only);
  }
  std::vector<pass_window> all;
  all.reserve(total);
  for (const key& k : keys) all.push_back(parts[k.part][k.index]);
  return all;
}

// Every station's search of one track, built once per instruction set like the scans, with
// everything it calls inlined into it (flatten): the root finding and the walk, scalar code, then
// use fused multiply-adds where the CPU has them.
SKYRELAY_SCAN_CLONES [[gnu::flatten]]
void search_track(const track& tr, std::span<const site> stations, double end, std::size_t si,
                  std::vector<pass_window>& out, scratch& buffers, step_buffers& steps) {
  for (std::size_t gi = 0; gi < stations.size(); ++gi) {
    pair_search search(tr, stations[gi], end);
    search.run(si, gi, out, buffers, steps);
  }
}

}  // namespace

double pass_quality(double max_elevation_rad, double min_elevation_rad, double duration_s) {
  return quality_of(std::sin(max_elevation_rad), std::sin(std::max(min_elevation_rad, 0.0)), duration_s);
}

namespace {

std::vector<pass_window> search_all(std::span<const sgp4* const> satellites, std::span<const site> stations,
                                    double start, double end, const pass_options& options,
                                    std::vector<std::uint32_t>* order) {
  std::vector<pass_window> all;
  if (order) order->clear();
  if (!(end > start) || satellites.empty() || stations.empty()) return all;
  unsigned threads = options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<std::size_t>(threads, satellites.size()));
  std::vector<std::vector<pass_window>> parts(threads);
  // Room for about six passes per satellite, station and day (a low orbit has four or five) in
  // each thread's part, at most 32 MB each: growing the parts by doubling copied every window
  // about twice (3 % of the search). Pages never written are never touched.
  const double pairs_days = static_cast<double>(satellites.size()) * static_cast<double>(stations.size()) *
                            std::ceil((end - start) / 86400.0) / threads;
  const double most = (32 << 20) / static_cast<double>(sizeof(pass_window));
  for (auto& part : parts) part.reserve(static_cast<std::size_t>(std::min(6.0 * pairs_days, most)));
  std::atomic<std::size_t> next{0};
  auto work = [&](unsigned id) {
    // One station's view of the current track, reused from station to station.
    scratch buffers;
    // The steps and brackets of one station's search, reused by every search of the thread (as
    // fresh vectors for each satellite they were grown again 979 times for gpredict's catalogue).
    step_buffers steps;
    track tr;
    for (;;) {
      const std::size_t si = next.fetch_add(1, std::memory_order_relaxed);
      if (si >= satellites.size()) break;
      const sgp4* sat = satellites[si];
      if (!sat || sat->init_error() != sgp4_error::none) continue;
      build_track(tr, *sat, start, end, options.dut1_s);
      buffers.reserve(tr.n);
      search_track(tr, stations, end, si, parts[id], buffers, steps);
    }
  };
  if (threads <= 1) {
    work(0);
  } else {
    std::vector<std::thread> pool;
    for (unsigned i = 0; i < threads; ++i) {
      pool.emplace_back(work, i);
      name_thread(pool.back(), "skyrelay-orbit");
    }
    for (auto& th : pool) th.join();
  }
  return sorted_by_aos(parts, order);
}

}  // namespace

std::vector<pass_window> find_passes(std::span<const sgp4* const> satellites, std::span<const site> stations,
                                     double start, double end, const pass_options& options) {
  return search_all(satellites, stations, start, end, options, nullptr);
}

std::vector<pass_window> find_passes_unordered(std::span<const sgp4* const> satellites,
                                               std::span<const site> stations, double start, double end,
                                               const pass_options& options, std::vector<std::uint32_t>& order) {
  return search_all(satellites, stations, start, end, options, &order);
}

}  // namespace skyrelay::orbit
