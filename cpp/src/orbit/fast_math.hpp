// Internal: branch-free sine, cosine and small-angle helpers that compilers vectorise (no libm
// calls). Accurate to a few units in the last place for |x| < 1e6 rad, which covers any
// propagation span; used only by the batch propagator, which is checked against the scalar one.
#pragma once

#include <cmath>
#include <numbers>

namespace skyrelay::orbit::fast {

// pi/2 in three parts of at most 30 significant bits each, so k * part is exact for
// |k| < 2^22 (Cody-Waite reduction).
inline constexpr double pio2_1 = 1.570796325802803;
inline constexpr double pio2_2 = 9.920935791635221e-10;
inline constexpr double pio2_3 = 5.170182981794105e-19;
inline constexpr double two_over_pi = 2.0 / std::numbers::pi;
inline constexpr double round_magic = 6755399441055744.0;  // 1.5 * 2^52: x + m - m rounds x

// sin(r) and cos(r) for |r| <= pi/4 from their Taylor series (terms up to r^17 and r^18; the
// first omitted term is below 1e-19).
inline void sincos_reduced(double r, double& s, double& c) {
  const double r2 = r * r;
  double ps = 1.0 / 355687428096000.0;        // 1/17!
  ps = ps * r2 - 1.0 / 1307674368000.0;       // 1/15!
  ps = ps * r2 + 1.0 / 6227020800.0;          // 1/13!
  ps = ps * r2 - 1.0 / 39916800.0;            // 1/11!
  ps = ps * r2 + 1.0 / 362880.0;              // 1/9!
  ps = ps * r2 - 1.0 / 5040.0;                // 1/7!
  ps = ps * r2 + 1.0 / 120.0;                 // 1/5!
  ps = ps * r2 - 1.0 / 6.0;                   // 1/3!
  s = r + r * r2 * ps;
  double pc = 1.0 / 6402373705728000.0;       // 1/18!
  pc = pc * r2 - 1.0 / 20922789888000.0;      // 1/16!
  pc = pc * r2 + 1.0 / 87178291200.0;         // 1/14!
  pc = pc * r2 - 1.0 / 479001600.0;           // 1/12!
  pc = pc * r2 + 1.0 / 3628800.0;             // 1/10!
  pc = pc * r2 - 1.0 / 40320.0;               // 1/8!
  pc = pc * r2 + 1.0 / 720.0;                 // 1/6!
  pc = pc * r2 - 1.0 / 24.0;                  // 1/4!
  pc = pc * r2 + 0.5;
  c = 1.0 - r2 * pc;
}

inline void sincos(double x, double& s, double& c) {
  const double k = (x * two_over_pi + round_magic) - round_magic;  // nearest quadrant
  const double r = ((x - k * pio2_1) - k * pio2_2) - k * pio2_3;
  double sr, cr;
  sincos_reduced(r, sr, cr);
  // Quadrant k mod 4, as a double: 0, 1, 2 or 3.
  const double q = k - 4.0 * ((k * 0.25 + round_magic) - round_magic);
  const double qm = q < 0 ? q + 4.0 : q;
  const bool odd = qm == 1.0 || qm == 3.0;
  const double ss = odd ? cr : sr;
  const double cc = odd ? sr : cr;
  s = (qm == 2.0 || qm == 3.0) ? -ss : ss;
  c = (qm == 1.0 || qm == 2.0) ? -cc : cc;
}

// sin and cos of a small angle (|d| < 0.01): error below 1e-19.
inline void sincos_small(double d, double& s, double& c) {
  const double d2 = d * d;
  s = d * (1.0 - d2 * (1.0 / 6.0 - d2 * (1.0 / 120.0 - d2 * (1.0 / 5040.0))));
  c = 1.0 - d2 * (0.5 - d2 * (1.0 / 24.0 - d2 * (1.0 / 720.0)));
}

// x - 2pi * trunc(x / 2pi): fmod's result to within a rounding of x.
inline double wrap(double x) {
  constexpr double twopi = 2.0 * std::numbers::pi;
  const double q = x * (1.0 / twopi);
  // truncation toward zero through the rounding trick
  double t = (q + round_magic) - round_magic;
  t = (q >= 0) ? (t > q ? t - 1.0 : t) : (t < q ? t + 1.0 : t);
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
