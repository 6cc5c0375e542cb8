// The batch propagator: the SGP4/SDP4 equations of sgp4.cpp and deep_space.cpp evaluated for
// blocks of times in SIMD lanes. The algebra is the same; what differs is how it is computed:
//   * sine, cosine and atan2 are branch-free polynomials (fast_math.hpp), not libm calls;
//   * Kepler's equation runs in every lane for a step count chosen from the eccentricity, each
//     lane freezing where the scalar loop would stop;
//   * the short-period corrections to the argument of latitude, node and inclination are
//     applied by angle addition (they are below 1e-3 rad), which replaces one atan2 and three
//     full sine/cosine pairs;
//   * branches become selects: both sides are computed and each lane keeps its own.
// The resonance integrator's 720-minute steps stay sequential (one lane at a time); the rates at
// each time's final state are vectorised. tests/python/test_orbit.py holds this path to the
// scalar propagator within 1e-6 km over the gpredict catalogue and the verification set (up to
// the first error on each side of epoch: past a decay both paths run on into meaningless
// numbers, and they need not agree there).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

#include "batch.hpp"
#include "fast_math.hpp"

// This file is compiled once per instruction set (see CMakeLists.txt), each time into its own
// namespace; batch_dispatch.cpp picks one at run time.
#ifndef SKYRELAY_BATCH_NS
#define SKYRELAY_BATCH_NS generic
#endif

namespace skyrelay::orbit::SKYRELAY_BATCH_NS {


namespace {

constexpr std::size_t block = 64;
constexpr double pi = std::numbers::pi;
constexpr double twopi = 2.0 * pi;

// Per-lane values handed from the mean-element stage to Kepler's equation and the output.
struct lanes {
  alignas(64) double am[block], rtam[block], nm[block], axnl[block], aynl[block], u[block], nodep[block];
  alignas(64) double sinip[block], cosip[block], code[block], eo1[block];
};

template <bool Simple>
void near_front(const batch_coefficients& k, const double* __restrict ts, std::size_t n,
                lanes& __restrict L) {
  const double rta0 = std::sqrt(k.a0);
  for (std::size_t l = 0; l < n; ++l) {
    const double t = ts[l];
    const double xmdf = k.mo + k.mdot * t;
    const double argpdf = k.argpo + k.argpdot * t;
    const double t2 = t * t;
    double nodem = k.nodeo + k.nodedot * t + k.nodecf * t2;
    double tempa = 1.0 - k.cc1 * t;
    double tempe = k.bstar * k.cc4 * t;
    double templ = k.t2cof * t2;
    double mm = xmdf, argpm = argpdf;
    if constexpr (!Simple) {
      const double delmtemp = 1.0 + k.eta * fast::cos(xmdf);
      const double delm = k.xmcof * (delmtemp * delmtemp * delmtemp - k.delmo);
      const double temp = k.omgcof * t + delm;
      mm = xmdf + temp;
      argpm = argpdf - temp;
      const double t3 = t2 * t, t4 = t3 * t;
      tempa = tempa - k.d2 * t2 - k.d3 * t3 - k.d4 * t4;
      tempe += k.bstar * k.cc5 * (fast::sin(mm) - k.sinmao);
      templ += k.t3cof * t3 + t4 * (k.t4cof + t * k.t5cof);
    }
    const double a = k.a0 * tempa * tempa;
    const double rta = rta0 * std::fabs(tempa);  // sqrt(a) without a square root
    L.am[l] = a;
    L.rtam[l] = rta;
    double em = k.ecco - tempe;
    L.code[l] = (em >= 1.0 || em < -0.001) ? 1.0 : 0.0;
    em = em < 1.0e-6 ? 1.0e-6 : em;
    // One division for both xke / a^1.5 and 1 / (a (1 - e^2)).
    const double p = a * (1.0 - em * em), a32 = a * rta;
    const double inv = 1.0 / (p * a32);
    L.nm[l] = k.xke * p * inv;
    const double temp = a32 * inv;
    mm += k.no * templ;
    // The scalar path reduces mm + argpm + nodem, nodem, argpm and mm modulo 2 pi one after
    // another; all that matters downstream is u = mm + argpm + ... modulo 2 pi and the sines and
    // cosines of argpm and nodem (the polynomials reduce their own arguments), so one reduction
    // does, to within roundings of the angles' size (an ulp of the mean anomaly, 4e-12 rad a
    // year from epoch in a low orbit, which the scalar path's own reductions round at too).
    double sa, ca;
    fast::sincos(argpm, sa, ca);
    L.axnl[l] = em * ca;
    L.aynl[l] = em * sa + temp * k.aycof;
    L.u[l] = fast::wrap(mm + argpm + temp * k.xlcof * L.axnl[l]);
    L.eo1[l] = L.u[l];
    L.nodep[l] = nodem;
  }
}

// Resonance rates at an integrator state (the equations of secular_effects in deep_space.cpp).
template <int Irez>
inline void resonance_rates(const sgp4::deep_terms& d, double argpo, double argpdot, double atime, double xli,
                            double xni, double xfact, double& xndt, double& xldot, double& xnddt) {
  constexpr double fasx2 = 0.13130908, fasx4 = 2.8843198, fasx6 = 0.37448087;
  constexpr double g22 = 5.7686396, g32 = 0.95240898, g44 = 1.8014998, g52 = 1.0508330, g54 = 4.4108898;
  xldot = xni + xfact;
  if constexpr (Irez != 2) {
    double s1, c1, s2, c2, s3, c3;
    fast::sincos(xli - fasx2, s1, c1);
    fast::sincos(2.0 * (xli - fasx4), s2, c2);
    fast::sincos(3.0 * (xli - fasx6), s3, c3);
    xndt = d.del1 * s1 + d.del2 * s2 + d.del3 * s3;
    xnddt = (d.del1 * c1 + 2.0 * d.del2 * c2 + 3.0 * d.del3 * c3) * xldot;
  } else {
    const double xomi = argpo + argpdot * atime;
    const double x2omi = xomi + xomi, x2li = xli + xli;
    double s[10], c[10];
    const double args[10] = {x2omi + xli - g22, xli - g22,         xomi + xli - g32, -xomi + xli - g32,
                             x2omi + x2li - g44, x2li - g44,        xomi + xli - g52, -xomi + xli - g52,
                             xomi + x2li - g54,  -xomi + x2li - g54};
#pragma GCC unroll 10
    for (int i = 0; i < 10; ++i) fast::sincos(args[i], s[i], c[i]);
    xndt = d.d2201 * s[0] + d.d2211 * s[1] + d.d3210 * s[2] + d.d3222 * s[3] + d.d4410 * s[4] +
           d.d4422 * s[5] + d.d5220 * s[6] + d.d5232 * s[7] + d.d5421 * s[8] + d.d5433 * s[9];
    xnddt = (d.d2201 * c[0] + d.d2211 * c[1] + d.d3210 * c[2] + d.d3222 * c[3] + d.d5220 * c[6] +
             d.d5232 * c[7] + 2.0 * (d.d4410 * c[4] + d.d4422 * c[5] + d.d5421 * c[8] + d.d5433 * c[9])) *
            xldot;
  }
}

template <int Irez, bool Lyddane>
void deep_front(const batch_coefficients& kr, const sgp4::deep_terms& dr,
                                     const double* __restrict ts, std::size_t n, lanes& __restrict L,
                                     resonance_state& rs) {
  // Local copies: the compiler then knows the lanes written below cannot alias them.
  const batch_coefficients k = kr;
  const sgp4::deep_terms d = dr;
  constexpr double zes = 0.01675, zel = 0.05490, zns = 1.19459e-5, znl = 1.5835218e-4;
  constexpr double rptim = 4.37526908801129966e-3;
  alignas(64) double xli[block], xni[block], atime[block], ft[block];
  // The integrator, one lane after another: its state carries over from time to time.
  if constexpr (Irez != 0) {
    for (std::size_t l = 0; l < n; ++l) {
      const double t = ts[l];
      if (rs.atime == 0.0 || t * rs.atime <= 0.0 || std::fabs(t) < std::fabs(rs.atime)) {
        rs.atime = 0.0;
        rs.xni = k.no;
        rs.xli = d.xlamo;
      }
      const double delt = t > 0.0 ? 720.0 : -720.0;
      while (std::fabs(t - rs.atime) >= 720.0) {
        double xndt, xldot, xnddt;
        resonance_rates<Irez>(d, k.argpo, k.argpdot, rs.atime, rs.xli, rs.xni, d.xfact, xndt, xldot, xnddt);
        rs.xli += xldot * delt + xndt * 259200.0;
        rs.xni += xndt * delt + xnddt * 259200.0;
        rs.atime += delt;
      }
      xli[l] = rs.xli;
      xni[l] = rs.xni;
      atime[l] = rs.atime;
      ft[l] = t - rs.atime;
    }
  }
  const bool afspc = k.afspc;
  for (std::size_t l = 0; l < n; ++l) {
    const double t = ts[l];
    const double t2 = t * t;
    double argpm = k.argpo + k.argpdot * t + d.domdt * t;
    double nodem = k.nodeo + k.nodedot * t + k.nodecf * t2 + d.dnodt * t;
    double mm = k.mo + k.mdot * t + d.dmdt * t;
    double em = k.ecco + d.dedt * t;
    const double inclm = k.inclo + d.didt * t;
    const double tempa = 1.0 - k.cc1 * t;
    const double tempe = k.bstar * k.cc4 * t;
    const double templ = k.t2cof * t2;
    double nm = k.no;
    double cube = k.cbrt0;
    if constexpr (Irez != 0) {
      double xndt, xldot, xnddt;
      resonance_rates<Irez>(d, k.argpo, k.argpdot, atime[l], xli[l], xni[l], d.xfact, xndt, xldot, xnddt);
      const double f = ft[l];
      nm = xni[l] + xndt * f + xnddt * f * f * 0.5;
      const double xl = xli[l] + xldot * f + xndt * f * f * 0.5;
      const double theta = fast::wrap(k.gsto + t * rptim);
      mm = Irez == 1 ? xl - nodem - argpm + theta : xl - 2.0 * nodem + 2.0 * theta;
      // (xke / nm)^(1/3) by Newton from the epoch value: nm stays within a few parts in 1e3.
      const double x = k.xke / nm;
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) cube -= (cube * cube * cube - x) / (3.0 * cube * cube);
    }
    double code = nm <= 0.0 ? 2.0 : 0.0;
    const double a = cube * cube * tempa * tempa;
    const double rta = std::fabs(cube * tempa);  // sqrt(a) without a square root
    L.am[l] = a;
    L.rtam[l] = rta;
    em -= tempe;
    code = code != 0.0 ? code : ((em >= 1.0 || em < -0.001) ? 1.0 : 0.0);
    em = em < 1.0e-6 ? 1.0e-6 : em;
    mm += k.no * templ;
    const double xlm = fast::wrap(mm + argpm + nodem);
    nodem = fast::wrap(nodem);
    argpm = fast::wrap(argpm);
    mm = fast::wrap(xlm - argpm - nodem);

    // Lunar-solar periodics (lunar_solar_periodics in deep_space.cpp).
    double szm = fast::sin(d.zmos + zns * t), szf, czf;
    fast::sincos(d.zmos + zns * t + 2.0 * zes * szm, szf, czf);
    double f2 = 0.5 * szf * szf - 0.25, f3 = -0.5 * szf * czf;
    const double ses = d.se2 * f2 + d.se3 * f3, sis = d.si2 * f2 + d.si3 * f3;
    const double sls = d.sl2 * f2 + d.sl3 * f3 + d.sl4 * szf, sghs = d.sgh2 * f2 + d.sgh3 * f3 + d.sgh4 * szf;
    const double shs = d.sh2 * f2 + d.sh3 * f3;
    szm = fast::sin(d.zmol + znl * t);
    fast::sincos(d.zmol + znl * t + 2.0 * zel * szm, szf, czf);
    f2 = 0.5 * szf * szf - 0.25;
    f3 = -0.5 * szf * czf;
    const double pe = ses + d.ee2 * f2 + d.e3 * f3 - d.peo;
    const double pinc = sis + d.xi2 * f2 + d.xi3 * f3 - d.pinco;
    const double pl = sls + d.xl2 * f2 + d.xl3 * f3 + d.xl4 * szf - d.plo;
    const double pgh = sghs + d.xgh2 * f2 + d.xgh3 * f3 + d.xgh4 * szf - d.pgho;
    const double ph = shs + d.xh2 * f2 + d.xh3 * f3 - d.pho;
    double inclp = inclm + pinc;
    const double ep = em + pe;
    double sinip, cosip;
    fast::sincos(inclp, sinip, cosip);
    // Ordinary inclinations.
    const double pha = ph / sinip;
    const double argp_a = argpm + (pgh - cosip * pha);
    const double node_a = nodem + pha;
    double argpp = argp_a, nodep = node_a;
    const double mp = mm + pl;
    if constexpr (Lyddane) {
      // Lyddane's form below 0.2 rad.
      double sinop, cosop;
      fast::sincos(nodem, sinop, cosop);
      const double alfdp = sinip * sinop + (ph * cosop + pinc * cosip * sinop);
      const double betdp = sinip * cosop + (-ph * sinop + pinc * cosip * cosop);
      const double node0 = (nodem < 0.0 && afspc) ? nodem + twopi : nodem;
      const double xls = mm + argpm + cosip * node0 + (pl + pgh - pinc * node0 * sinip);
      double node_b = fast::atan2(alfdp, betdp);
      node_b = (node_b < 0.0 && afspc) ? node_b + twopi : node_b;
      node_b = std::fabs(node0 - node_b) > pi ? (node_b < node0 ? node_b + twopi : node_b - twopi) : node_b;
      const double argp_b = xls - mp - cosip * node_b;
      const bool ordinary = inclp >= 0.2;
      argpp = ordinary ? argp_a : argp_b;
      nodep = ordinary ? node_a : node_b;
    }
    // A negative inclination flips the node and the argument of perigee.
    const bool flip = inclp < 0.0;
    inclp = flip ? -inclp : inclp;
    sinip = flip ? -sinip : sinip;
    nodep = flip ? nodep + pi : nodep;
    argpp = flip ? argpp - pi : argpp;
    code = code != 0.0 ? code : ((ep < 0.0 || ep > 1.0) ? 3.0 : 0.0);

    const double aycof = -0.5 * k.j3oj2 * sinip;
    const double onepc = std::fabs(cosip + 1.0) > 1.5e-12 ? 1.0 + cosip : 1.5e-12;
    const double xlcof = -0.25 * k.j3oj2 * sinip * (3.0 + 5.0 * cosip) / onepc;
    double sa, ca;
    fast::sincos(argpp, sa, ca);
    L.axnl[l] = ep * ca;
    // One division for both xke / a^1.5 and 1 / (a (1 - e^2)).
    const double p = a * (1.0 - ep * ep), a32 = a * rta;
    const double inv = 1.0 / (p * a32);
    L.nm[l] = k.xke * p * inv;
    const double temp = a32 * inv;
    L.aynl[l] = ep * sa + temp * aycof;
    const double xl = mp + argpp + nodep + temp * xlcof * L.axnl[l];
    L.u[l] = fast::wrap(xl - nodep);
    L.eo1[l] = L.u[l];
    L.nodep[l] = nodep;
    L.sinip[l] = sinip;
    L.cosip[l] = cosip;
    L.code[l] = code;
  }
}

// Newton's method on Kepler's equation as the scalar loop takes its steps: a lane stops once its
// correction is below 1e-12 and keeps the sine and cosine it last evaluated (those of the step
// before). Only the first step evaluates a full sine and cosine; while every correction still
// moving is under 0.1 rad (always, below an eccentricity of about 0.09), the next step's come
// from turning the last ones by the correction (angle addition with a short series). A stopped
// lane turns by zero, which leaves its sine and cosine as they were. Every store is
// unconditional: a conditional one becomes a masked store, which is slow on some CPUs.
//
// Near-circular blocks (every lane's eccentricity below 0.02, most of any catalogue) take two
// Newton steps and no bookkeeping: from a start within e / (1 - e) of the root, the error after
// one step is below (e / 2) times its square (4.3e-6 rad at e = 0.02) and after the second below
// 2e-13 rad, a nanometre along the orbit. Both steps turn the sine and cosine, so they belong to
// the final angle (the general loop's belong to the one before its last, sub-1e-12 step).
constexpr double near_circular_e2 = 0.02 * 0.02;

void kepler_near_circular(std::size_t n, lanes& __restrict L, double* __restrict s, double* __restrict c) {
  for (std::size_t l = 0; l < n; ++l) {
    const double ax = L.axnl[l], ay = L.aynl[l], u = L.u[l];
    double sl, cl;
    fast::sincos(u, sl, cl);
    // First step from E = u: the residual is ax sin E - ay cos E.
    const double d1 = (ax * sl - ay * cl) / (1.0 - cl * ax - sl * ay);
    double ds, dc;
    fast::sincos_small(d1, ds, dc);  // (|d1| < 0.021: its series is good to 1e-18 there)
    double s1 = sl * dc + cl * ds, c1 = cl * dc - sl * ds;
    const double e1 = u + d1;
    const double d2 = (u - ay * c1 + ax * s1 - e1) / (1.0 - c1 * ax - s1 * ay);
    // |d2| < 5e-6: sine and cosine to second order (the third is below 3e-17).
    const double h2 = 0.5 * d2 * d2;
    s[l] = s1 + c1 * d2 - s1 * h2;
    c[l] = c1 - s1 * d2 - c1 * h2;
  }
}

void kepler(const batch_coefficients& k, std::size_t n, lanes& __restrict L, double* __restrict s,
            double* __restrict c) {
  {
    std::int64_t wide = 0;  // integers: see below
    for (std::size_t l = 0; l < n; ++l)
      wide |= L.axnl[l] * L.axnl[l] + L.aynl[l] * L.aynl[l] >= near_circular_e2 ? 1 : 0;
    if (wide == 0) {
      kepler_near_circular(n, L, s, c);
      return;
    }
  }
  alignas(64) double turn[block];
  for (std::size_t l = 0; l < n; ++l) {
    fast::sincos(L.eo1[l], s[l], c[l]);
    turn[l] = 1.0;  // every lane moves at first
  }
  for (int step = 0; step < k.kepler_steps; ++step) {
    // Counted in integers: a floating-point max or sum would not vectorise without reassociation.
    std::int64_t live = 0, far = 0;
    for (std::size_t l = 0; l < n; ++l) {
      const double ax = L.axnl[l], ay = L.aynl[l];
      double d = (L.u[l] - ay * c[l] + ax * s[l] - L.eo1[l]) / (1.0 - c[l] * ax - s[l] * ay);
      d = d > 0.95 ? 0.95 : (d < -0.95 ? -0.95 : d);
      const bool on = turn[l] != 0.0 && std::fabs(d) >= 1.0e-12;  // a stopped lane stays stopped
      turn[l] = on ? d : 0.0;
      L.eo1[l] += turn[l];
      live |= on ? 1 : 0;
      far |= std::fabs(turn[l]) > 0.1 ? 1 : 0;
    }
    if (live == 0 || step + 1 == k.kepler_steps) break;
    if (far == 0) {
      for (std::size_t l = 0; l < n; ++l) {
        double ds, dc;
        fast::sincos_step(turn[l], ds, dc);
        const double s2 = s[l] * dc + c[l] * ds;
        c[l] = c[l] * dc - s[l] * ds;
        s[l] = s2;
      }
    } else {
      for (std::size_t l = 0; l < n; ++l) fast::sincos(L.eo1[l], s[l], c[l]);
    }
  }
}

// Deep: the inclination varies from lane to lane (lunar-solar terms); near the earth it is the
// epoch's, and what depends on it alone is computed once per block.
template <bool Deep>
// The caller's rows (r, v, err) overlap neither each other nor the lanes. Said with __restrict:
// else GCC checks at run time how far apart the buffers lie, and takes a scalar copy of the loop
// when they are close, whose results differed from the vector loop's in the last bit. The same
// times then gave positions that depended on where the output arrays happened to be allocated.
void kepler_and_output(const batch_coefficients& k, std::size_t n, lanes& __restrict L,
                       double* __restrict r, double* __restrict v, std::int8_t* __restrict err) {
  alignas(64) double sl[block], cl[block];
  kepler(k, n, L, sl, cl);
  const double radius = k.radius, vkmpersec = k.vkmpersec, j2 = k.j2, inv_xke = 1.0 / k.xke;
  for (std::size_t l = 0; l < n; ++l) {
    const double s = sl[l], c = cl[l];
    const double a = L.am[l], ax = L.axnl[l], ay = L.aynl[l];
    const double ecose = ax * c + ay * s;
    const double esine = ax * s - ay * c;
    const double el2 = ax * ax + ay * ay;
    const double betal = std::sqrt(1.0 - el2);
    const double pl = a * (1.0 - el2);
    const double rl = a * (1.0 - ecose);
    // One division for 1 / rl, 1 / pl and 1 / (1 + betal).
    const double onepb = 1.0 + betal;
    const double inv = 1.0 / (rl * pl * onepb);
    const double inv_rl = inv * pl * onepb, inv_pl = inv * rl * onepb;
    const double rdotl = L.rtam[l] * esine * inv_rl;
    const double rvdotl = L.rtam[l] * betal * inv_rl;  // sqrt(pl) / rl
    double temp = esine * inv * rl * pl;                  // esine / (1 + betal)
    const double sinu = a * inv_rl * (s - ay - ax * temp);
    const double cosu = a * inv_rl * (c - ax + ay * temp);
    const double sin2u = (cosu + cosu) * sinu;
    const double cos2u = 1.0 - 2.0 * sinu * sinu;
    temp = inv_pl;
    const double temp1 = 0.5 * j2 * temp;
    const double temp2 = temp1 * temp;
    const double sinip = Deep ? L.sinip[l] : k.sinio, cosip = Deep ? L.cosip[l] : k.cosio;
    const double cosisq = cosip * cosip;
    const double con41 = 3.0 * cosisq - 1.0, x1mth2 = 1.0 - cosisq, x7thm1 = 7.0 * cosisq - 1.0;
    const double mrt = rl * (1.0 - 1.5 * temp2 * betal * con41) + 0.5 * temp1 * x1mth2 * cos2u;
    const double dsu = -0.25 * temp2 * x7thm1 * sin2u;
    const double dnode = 1.5 * temp2 * cosip * sin2u;
    const double dinc = 1.5 * temp2 * cosip * sinip * cos2u;
    const double mvt = rdotl - L.nm[l] * temp1 * x1mth2 * sin2u * inv_xke;
    const double rvdot = rvdotl + L.nm[l] * temp1 * (x1mth2 * cos2u + 1.5 * con41) * inv_xke;

    // (sinu, cosu) has unit length up to the eccentricity times Kepler's last correction (below
    // 1e-12), a few nanometres along the orbit: no normalisation.
    double ds, dc;
    fast::sincos_tiny(dsu, ds, dc);
    const double sinsu = sinu * dc + cosu * ds;
    const double cossu = cosu * dc - sinu * ds;
    double sn0, cn0;
    fast::sincos(L.nodep[l], sn0, cn0);
    fast::sincos_tiny(dnode, ds, dc);
    const double snod = sn0 * dc + cn0 * ds;
    const double cnod = cn0 * dc - sn0 * ds;
    fast::sincos_tiny(dinc, ds, dc);
    const double sini = sinip * dc + cosip * ds;
    const double cosi = cosip * dc - sinip * ds;

    const double xmx = -snod * cosi, xmy = cnod * cosi;
    const double ux = xmx * sinsu + cnod * cossu;
    const double uy = xmy * sinsu + snod * cossu;
    const double uz = sini * sinsu;
    const double vx = xmx * cossu - cnod * sinsu;
    const double vy = xmy * cossu - snod * sinsu;
    const double vz = sini * cossu;
    const double prior = L.code[l];
    const double code = prior != 0.0 ? prior : (pl < 0.0 ? 4.0 : (mrt < 1.0 ? 6.0 : 0.0));
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double mr = code == 0.0 ? mrt * radius : nan;
    const double vs = code == 0.0 ? vkmpersec : nan;
    // Straight into the caller's (n, 3) rows: a store with a stride of three vectorises (as
    // permutes), and saves the pass that interleaved six lane arrays afterwards (a tenth of
    // the time).
    r[3 * l] = mr * ux;
    r[3 * l + 1] = mr * uy;
    r[3 * l + 2] = mr * uz;
    v[3 * l] = (mvt * ux + rvdot * vx) * vs;
    v[3 * l + 1] = (mvt * uy + rvdot * vy) * vs;
    v[3 * l + 2] = (mvt * uz + rvdot * vz) * vs;
    L.code[l] = code;
  }
  // Interleave into the caller's (n, 3) rows outside the vector loops.
  for (std::size_t l = 0; l < n; ++l) err[l] = static_cast<std::int8_t>(L.code[l]);
}

}  // namespace

void run_batch(const batch_coefficients& k, const sgp4::deep_terms& ds, const batch_kind& kind,
               const double* tsince, std::size_t n, double* r, double* v, std::int8_t* err) {
  lanes L;
  resonance_state rs;
  for (std::size_t i = 0; i < n; i += block) {
    const std::size_t m = std::min(block, n - i);
    if (kind.deep) {
      switch (kind.irez * 2 + (kind.low_inclination ? 1 : 0)) {
        case 0: deep_front<0, false>(k, ds, tsince + i, m, L, rs); break;
        case 1: deep_front<0, true>(k, ds, tsince + i, m, L, rs); break;
        case 2: deep_front<1, false>(k, ds, tsince + i, m, L, rs); break;
        case 3: deep_front<1, true>(k, ds, tsince + i, m, L, rs); break;
        case 4: deep_front<2, false>(k, ds, tsince + i, m, L, rs); break;
        default: deep_front<2, true>(k, ds, tsince + i, m, L, rs); break;
      }
    } else if (kind.simple) {
      near_front<true>(k, tsince + i, m, L);
    } else {
      near_front<false>(k, tsince + i, m, L);
    }
    if (kind.deep)
      kepler_and_output<true>(k, m, L, r + 3 * i, v + 3 * i, err + i);
    else
      kepler_and_output<false>(k, m, L, r + 3 * i, v + 3 * i, err + i);
  }
}

}  // namespace skyrelay::orbit::SKYRELAY_BATCH_NS
