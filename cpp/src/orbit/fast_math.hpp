// Internal: branch-free sine, cosine and small-angle helpers that compilers vectorise (no libm
// calls). Accurate to 5e-14 for |x| < 1e6 rad, which covers any propagation span: a few
// hundred times an ulp, a third of a nanometre on an orbit's scale; used only by the batch
// propagator, which is checked against the scalar one.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <numbers>

namespace skyrelay::orbit::fast {

// pi/2 in three parts of at most 30 significant bits each, so k * part is exact for
// |k| < 2^22 (Cody-Waite reduction).
inline constexpr double pio2_1 = 1.570796325802803;
inline constexpr double pio2_2 = 9.920935791635221e-10;
inline constexpr double pio2_3 = 5.170182981794105e-19;
inline constexpr double two_over_pi = 2.0 / std::numbers::pi;
inline constexpr double round_magic = 6755399441055744.0;  // 1.5 * 2^52: x + m - m rounds x

// x rounded to the nearest integer k, in two forms: k as a double, and the bits of x + m, whose
// low bits hold k modulo 2^51 (two's complement), so k's parity and quadrant are integer tests.
struct rounded {
  double k;
  std::int64_t bits;
};
inline rounded round_to_int(double x) {
  const double biased = x + round_magic;
  return {biased - round_magic, std::bit_cast<std::int64_t>(biased)};
}

// Flips the sign of x where the given bit of `flip` (a 0 or 1 in bit 0) is set.
inline double flip_sign(double x, std::int64_t flip) {
  return std::bit_cast<double>(std::bit_cast<std::int64_t>(x) ^ (flip << 63));
}

// sin(r) and cos(r) for |r| <= pi/4 from their Taylor series (terms up to r^13 and r^14; the
// first omitted terms are below 2.1e-14 and 1.0e-15: a tenth of a nanometre on an orbit's
// scale, where the batch path is held to 1e-7 km of the scalar one).
inline void sincos_reduced(double r, double& s, double& c) {
  const double r2 = r * r;
  double ps = 1.0 / 6227020800.0;             // 1/13!
  ps = ps * r2 - 1.0 / 39916800.0;            // 1/11!
  ps = ps * r2 + 1.0 / 362880.0;              // 1/9!
  ps = ps * r2 - 1.0 / 5040.0;                // 1/7!
  ps = ps * r2 + 1.0 / 120.0;                 // 1/5!
  ps = ps * r2 - 1.0 / 6.0;                   // 1/3!
  s = r + r * r2 * ps;
  double pc = 1.0 / 87178291200.0;            // 1/14!
  pc = pc * r2 - 1.0 / 479001600.0;           // 1/12!
  pc = pc * r2 + 1.0 / 3628800.0;             // 1/10!
  pc = pc * r2 - 1.0 / 40320.0;               // 1/8!
  pc = pc * r2 + 1.0 / 720.0;                 // 1/6!
  pc = pc * r2 - 1.0 / 24.0;                  // 1/4!
  pc = pc * r2 + 0.5;
  c = 1.0 - r2 * pc;
}

inline void sincos(double x, double& s, double& c) {
  const rounded q = round_to_int(x * two_over_pi);  // nearest quadrant
  const double k = q.k;
  const double r = ((x - k * pio2_1) - k * pio2_2) - k * pio2_3;
  double sr, cr;
  sincos_reduced(r, sr, cr);
  // Quadrant k mod 4: odd ones swap sine and cosine; 2 and 3 negate the sine, 1 and 2 the cosine.
  const bool odd = (q.bits & 1) != 0;
  s = flip_sign(odd ? cr : sr, (q.bits >> 1) & 1);
  c = flip_sign(odd ? sr : cr, ((q.bits + 1) >> 1) & 1);
}

// sin and cos of a small angle (|d| < 0.01): error below 1e-19.
inline void sincos_small(double d, double& s, double& c) {
  const double d2 = d * d;
  s = d * (1.0 - d2 * (1.0 / 6.0 - d2 * (1.0 / 120.0 - d2 * (1.0 / 5040.0))));
  c = 1.0 - d2 * (0.5 - d2 * (1.0 / 24.0 - d2 * (1.0 / 720.0)));
}

// sin and cos of a tiny angle (|d| < 2e-3, as SGP4's short-period corrections to the argument of
// latitude, node and inclination are): errors below d^5 / 120 and d^6 / 720, 3e-16 and 1e-19.
inline void sincos_tiny(double d, double& s, double& c) {
  const double d2 = d * d;
  s = d - d * d2 * (1.0 / 6.0);
  c = 1.0 - d2 * (0.5 - d2 * (1.0 / 24.0));
}

// sin and cos of an angle up to 0.1 rad (Taylor terms to d^9 and d^10; error below 1e-18), for
// turning a known sine and cosine by a Newton step.
inline void sincos_step(double d, double& s, double& c) {
  const double d2 = d * d;
  s = d * (1.0 - d2 * (1.0 / 6.0 - d2 * (1.0 / 120.0 - d2 * (1.0 / 5040.0 - d2 * (1.0 / 362880.0)))));
  c = 1.0 - d2 * (0.5 - d2 * (1.0 / 24.0 - d2 * (1.0 / 720.0 - d2 * (1.0 / 40320.0 - d2 * (1.0 / 3628800.0)))));
}

// sin(r) for |r| <= pi/2 from its series to r^17 (the first omitted term is below 4.4e-14).
inline double sin_half_range(double r) {
  const double r2 = r * r;
  double p = 1.0 / 355687428096000.0;      // 1/17!
  p = p * r2 - 1.0 / 1307674368000.0;      // 1/15!
  p = p * r2 + 1.0 / 6227020800.0;         // 1/13!
  p = p * r2 - 1.0 / 39916800.0;           // 1/11!
  p = p * r2 + 1.0 / 362880.0;             // 1/9!
  p = p * r2 - 1.0 / 5040.0;               // 1/7!
  p = p * r2 + 1.0 / 120.0;                // 1/5!
  p = p * r2 - 1.0 / 6.0;                  // 1/3!
  return r + r * r2 * p;
}

// sin(x) alone: one polynomial instead of sincos's two. x - k*pi lands in [-pi/2, pi/2] and
// sin(x) = (-1)^k sin(x - k*pi); k*pi is taken off as 2k multiples of the three-part pi/2.
inline double sin(double x) {
  const rounded q = round_to_int(x * (1.0 / std::numbers::pi));
  const double m = 2.0 * q.k;
  const double r = ((x - m * pio2_1) - m * pio2_2) - m * pio2_3;
  return flip_sign(sin_half_range(r), q.bits & 1);
}

// cos(x) alone: x - (k + 1/2)*pi lands in [-pi/2, pi/2] and cos(x) = (-1)^(k+1) sin(that).
inline double cos(double x) {
  const rounded q = round_to_int(x * (1.0 / std::numbers::pi) - 0.5);
  const double m = 2.0 * q.k + 1.0;
  const double r = ((x - m * pio2_1) - m * pio2_2) - m * pio2_3;
  return flip_sign(sin_half_range(r), (q.bits & 1) ^ 1);
}

// x - 2pi * trunc(x / 2pi): fmod's result to within a rounding of x.
inline double wrap(double x) {
  constexpr double twopi = 2.0 * std::numbers::pi;
  const double q = x * (1.0 / twopi);
#if defined(__SSE4_1__) || defined(__aarch64__)
  const double t = std::trunc(q);  // one rounding instruction
#else
  // truncation toward zero through the rounding trick (SSE2 has no rounding instruction)
  double t = (q + round_magic) - round_magic;
  t = (q >= 0) ? (t > q ? t - 1.0 : t) : (t < q ? t + 1.0 : t);
#endif
  return x - t * twopi;
}

}  // namespace skyrelay::orbit::fast

namespace skyrelay::orbit::fast {

// atan(z) for |z| <= 0.2 from its series (terms to z^27; the first omitted is below 1e-20).
inline double atan_small(double z) {
  const double z2 = z * z;
  double p = 1.0 / 27.0;
  p = -p * z2 + 1.0 / 25.0;
  p = -p * z2 + 1.0 / 23.0;
  p = -p * z2 + 1.0 / 21.0;
  p = -p * z2 + 1.0 / 19.0;
  p = -p * z2 + 1.0 / 17.0;
  p = -p * z2 + 1.0 / 15.0;
  p = -p * z2 + 1.0 / 13.0;
  p = -p * z2 + 1.0 / 11.0;
  p = -p * z2 + 1.0 / 9.0;
  p = -p * z2 + 1.0 / 7.0;
  p = -p * z2 + 1.0 / 5.0;
  p = -p * z2 + 1.0 / 3.0;
  return z - z * z2 * p;
}

// atan2 without branches: fold into [0, 1], then into |z| <= tan(pi/8) around pi/4, halve the
// angle once (|z| <= 0.2), and unfold.
inline double atan2(double y, double x) {
  const double ax = std::fabs(x), ay = std::fabs(y);
  const double mx = ax > ay ? ax : ay, mn = ax > ay ? ay : ax;
  const double a = mx > 0.0 ? mn / mx : 0.0;
  const bool big = a > 0.41421356237309503;
  const double z = big ? (a - 1.0) / (a + 1.0) : a;
  const double h = z / (1.0 + std::sqrt(1.0 + z * z));
  double res = 2.0 * atan_small(h) + (big ? std::numbers::pi / 4 : 0.0);
  res = ay > ax ? std::numbers::pi / 2 - res : res;
  res = x < 0.0 ? std::numbers::pi - res : res;
  return y < 0.0 ? -res : res;  // (-0.0 counts as positive: signbit does not vectorise)
}

}  // namespace skyrelay::orbit::fast
