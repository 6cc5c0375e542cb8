// The deep-space equations of Spacetrack Report #3 as revised by Vallado et al. (2006). The
// variable names follow the papers' so that each line can be checked against them.
#include "deep_space.hpp"

#include <cmath>
#include <numbers>

namespace skyrelay::orbit::detail {
namespace {
constexpr double twopi = 2.0 * std::numbers::pi;
// Solar and lunar constants of the theory.
constexpr double zes = 0.01675, zel = 0.05490;
constexpr double zns = 1.19459e-5, znl = 1.5835218e-4;
constexpr double rptim = 4.37526908801129966e-3;  // earth rotation, rad/min
}  // namespace

void lunar_solar_terms(double epoch, double ecco, double argpo, double inclo, double nodeo,
                       double no, sgp4::deep_terms& d, lunar_solar_setup& s) {
  constexpr double c1ss = 2.9864797e-6, c1l = 4.7968065e-7;
  constexpr double zsinis = 0.39785416, zcosis = 0.91744867;
  constexpr double zcosgs = 0.1945905, zsings = -0.98088458;

  const double snodm = std::sin(nodeo), cnodm = std::cos(nodeo);
  const double sinomm = std::sin(argpo), cosomm = std::cos(argpo);
  s.sinim = std::sin(inclo);
  s.cosim = std::cos(inclo);
  const double em = ecco;
  s.emsq = em * em;
  const double betasq = 1.0 - s.emsq;
  const double rtemsq = std::sqrt(betasq);

  d.peo = d.pinco = d.plo = d.pgho = d.pho = 0.0;
  const double day = epoch + 18261.5;  // days since 1900 Jan 0.5
  const double xnodce = std::fmod(4.5236020 - 9.2422029e-4 * day, twopi);
  const double stem = std::sin(xnodce), ctem = std::cos(xnodce);
  const double zcosil = 0.91375164 - 0.03568096 * ctem;
  const double zsinil = std::sqrt(1.0 - zcosil * zcosil);
  const double zsinhl = 0.089683511 * stem / zsinil;
  const double zcoshl = std::sqrt(1.0 - zsinhl * zsinhl);
  const double gam = 5.8351514 + 0.0019443680 * day;
  double zx = 0.39785416 * stem / zsinil;
  const double zy = zcoshl * ctem + 0.91744867 * zsinhl * stem;
  zx = std::atan2(zx, zy);
  zx = gam + zx - xnodce;
  const double zcosgl = std::cos(zx), zsingl = std::sin(zx);

  // First the sun, then the moon, with the same algebra.
  double zcosg = zcosgs, zsing = zsings, zcosi = zcosis, zsini = zsinis;
  double zcosh = cnodm, zsinh = snodm, cc = c1ss;
  const double xnoi = 1.0 / no;
  double z1 = 0, z2 = 0, z3 = 0, z11 = 0, z12 = 0, z13 = 0, z21 = 0, z22 = 0, z23 = 0, z31 = 0,
         z32 = 0, z33 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
  double ss1 = 0, ss2 = 0, ss3 = 0, ss4 = 0, ss5 = 0, ss6 = 0, ss7 = 0, sz1 = 0, sz2 = 0, sz3 = 0,
         sz11 = 0, sz12 = 0, sz13 = 0, sz21 = 0, sz22 = 0, sz23 = 0, sz31 = 0, sz32 = 0, sz33 = 0;
  for (int body = 0; body < 2; ++body) {
    const double a1 = zcosg * zcosh + zsing * zcosi * zsinh;
    const double a3 = -zsing * zcosh + zcosg * zcosi * zsinh;
    const double a7 = -zcosg * zsinh + zsing * zcosi * zcosh;
    const double a8 = zsing * zsini;
    const double a9 = zsing * zsinh + zcosg * zcosi * zcosh;
    const double a10 = zcosg * zsini;
    const double a2 = s.cosim * a7 + s.sinim * a8;
    const double a4 = s.cosim * a9 + s.sinim * a10;
    const double a5 = -s.sinim * a7 + s.cosim * a8;
    const double a6 = -s.sinim * a9 + s.cosim * a10;

    const double x1 = a1 * cosomm + a2 * sinomm;
    const double x2 = a3 * cosomm + a4 * sinomm;
    const double x3 = -a1 * sinomm + a2 * cosomm;
    const double x4 = -a3 * sinomm + a4 * cosomm;
    const double x5 = a5 * sinomm;
    const double x6 = a6 * sinomm;
    const double x7 = a5 * cosomm;
    const double x8 = a6 * cosomm;

    z31 = 12.0 * x1 * x1 - 3.0 * x3 * x3;
    z32 = 24.0 * x1 * x2 - 6.0 * x3 * x4;
    z33 = 12.0 * x2 * x2 - 3.0 * x4 * x4;
    z1 = 3.0 * (a1 * a1 + a2 * a2) + z31 * s.emsq;
    z2 = 6.0 * (a1 * a3 + a2 * a4) + z32 * s.emsq;
    z3 = 3.0 * (a3 * a3 + a4 * a4) + z33 * s.emsq;
    z11 = -6.0 * a1 * a5 + s.emsq * (-24.0 * x1 * x7 - 6.0 * x3 * x5);
    z12 = -6.0 * (a1 * a6 + a3 * a5) + s.emsq * (-24.0 * (x2 * x7 + x1 * x8) - 6.0 * (x3 * x6 + x4 * x5));
    z13 = -6.0 * a3 * a6 + s.emsq * (-24.0 * x2 * x8 - 6.0 * x4 * x6);
    z21 = 6.0 * a2 * a5 + s.emsq * (24.0 * x1 * x5 - 6.0 * x3 * x7);
    z22 = 6.0 * (a4 * a5 + a2 * a6) + s.emsq * (24.0 * (x2 * x5 + x1 * x6) - 6.0 * (x4 * x7 + x3 * x8));
    z23 = 6.0 * a4 * a6 + s.emsq * (24.0 * x2 * x6 - 6.0 * x4 * x8);
    z1 = z1 + z1 + betasq * z31;
    z2 = z2 + z2 + betasq * z32;
    z3 = z3 + z3 + betasq * z33;
    s3 = cc * xnoi;
    s2 = -0.5 * s3 / rtemsq;
    s4 = s3 * rtemsq;
    s1 = -15.0 * em * s4;
    s5 = x1 * x3 + x2 * x4;
    s6 = x2 * x3 + x1 * x4;
    s7 = x2 * x4 - x1 * x3;

    if (body == 0) {  // keep the solar values, set up the lunar geometry
      ss1 = s1; ss2 = s2; ss3 = s3; ss4 = s4; ss5 = s5; ss6 = s6; ss7 = s7;
      sz1 = z1; sz2 = z2; sz3 = z3; sz11 = z11; sz12 = z12; sz13 = z13;
      sz21 = z21; sz22 = z22; sz23 = z23; sz31 = z31; sz32 = z32; sz33 = z33;
      zcosg = zcosgl;
      zsing = zsingl;
      zcosi = zcosil;
      zsini = zsinil;
      zcosh = zcoshl * cnodm + zsinhl * snodm;
      zsinh = snodm * zcoshl - cnodm * zsinhl;
      cc = c1l;
    }
  }

  d.zmol = std::fmod(4.7199672 + 0.22997150 * day - gam, twopi);
  d.zmos = std::fmod(6.2565837 + 0.017201977 * day, twopi);

  // Solar periodic coefficients.
  d.se2 = 2.0 * ss1 * ss6;
  d.se3 = 2.0 * ss1 * ss7;
  d.si2 = 2.0 * ss2 * sz12;
  d.si3 = 2.0 * ss2 * (sz13 - sz11);
  d.sl2 = -2.0 * ss3 * sz2;
  d.sl3 = -2.0 * ss3 * (sz3 - sz1);
  d.sl4 = -2.0 * ss3 * (-21.0 - 9.0 * s.emsq) * zes;
  d.sgh2 = 2.0 * ss4 * sz32;
  d.sgh3 = 2.0 * ss4 * (sz33 - sz31);
  d.sgh4 = -18.0 * ss4 * zes;
  d.sh2 = -2.0 * ss2 * sz22;
  d.sh3 = -2.0 * ss2 * (sz23 - sz21);
  // Lunar periodic coefficients.
  d.ee2 = 2.0 * s1 * s6;
  d.e3 = 2.0 * s1 * s7;
  d.xi2 = 2.0 * s2 * z12;
  d.xi3 = 2.0 * s2 * (z13 - z11);
  d.xl2 = -2.0 * s3 * z2;
  d.xl3 = -2.0 * s3 * (z3 - z1);
  d.xl4 = -2.0 * s3 * (-21.0 - 9.0 * s.emsq) * zel;
  d.xgh2 = 2.0 * s4 * z32;
  d.xgh3 = 2.0 * s4 * (z33 - z31);
  d.xgh4 = -18.0 * s4 * zel;
  d.xh2 = -2.0 * s2 * z22;
  d.xh3 = -2.0 * s2 * (z23 - z21);

  s.s1 = s1; s.s2 = s2; s.s3 = s3; s.s4 = s4; s.s5 = s5;
  s.ss1 = ss1; s.ss2 = ss2; s.ss3 = ss3; s.ss4 = ss4; s.ss5 = ss5;
  s.sz1 = sz1; s.sz3 = sz3; s.sz11 = sz11; s.sz13 = sz13; s.sz21 = sz21; s.sz23 = sz23;
  s.sz31 = sz31; s.sz33 = sz33;
  s.z1 = z1; s.z3 = z3; s.z11 = z11; s.z13 = z13; s.z21 = z21; s.z23 = z23; s.z31 = z31; s.z33 = z33;
}

void lunar_solar_periodics(const sgp4::deep_terms& d, double t, bool init, opsmode mode,
                           double& ep, double& inclp, double& nodep, double& argpp, double& mp) {
  // Solar terms.
  double zm = init ? d.zmos : d.zmos + zns * t;
  double zf = zm + 2.0 * zes * std::sin(zm);
  double sinzf = std::sin(zf);
  double f2 = 0.5 * sinzf * sinzf - 0.25;
  double f3 = -0.5 * sinzf * std::cos(zf);
  const double ses = d.se2 * f2 + d.se3 * f3;
  const double sis = d.si2 * f2 + d.si3 * f3;
  const double sls = d.sl2 * f2 + d.sl3 * f3 + d.sl4 * sinzf;
  const double sghs = d.sgh2 * f2 + d.sgh3 * f3 + d.sgh4 * sinzf;
  const double shs = d.sh2 * f2 + d.sh3 * f3;
  // Lunar terms.
  zm = init ? d.zmol : d.zmol + znl * t;
  zf = zm + 2.0 * zel * std::sin(zm);
  sinzf = std::sin(zf);
  f2 = 0.5 * sinzf * sinzf - 0.25;
  f3 = -0.5 * sinzf * std::cos(zf);
  const double sel = d.ee2 * f2 + d.e3 * f3;
  const double sil = d.xi2 * f2 + d.xi3 * f3;
  const double sll = d.xl2 * f2 + d.xl3 * f3 + d.xl4 * sinzf;
  const double sghl = d.xgh2 * f2 + d.xgh3 * f3 + d.xgh4 * sinzf;
  const double shll = d.xh2 * f2 + d.xh3 * f3;

  if (init) return;
  const double pe = ses + sel - d.peo;
  const double pinc = sis + sil - d.pinco;
  const double pl = sls + sll - d.plo;
  double pgh = sghs + sghl - d.pgho;
  double ph = shs + shll - d.pho;

  inclp += pinc;
  ep += pe;
  const double sinip = std::sin(inclp), cosip = std::cos(inclp);
  if (inclp >= 0.2) {
    ph /= sinip;
    pgh -= cosip * ph;
    argpp += pgh;
    nodep += ph;
    mp += pl;
  } else {
    // Lyddane's modification for low inclinations: apply the node and inclination terms in
    // terms of sin(i)sin(node) and sin(i)cos(node), which stay defined as i goes to zero.
    const double sinop = std::sin(nodep), cosop = std::cos(nodep);
    double alfdp = sinip * sinop;
    double betdp = sinip * cosop;
    const double dalf = ph * cosop + pinc * cosip * sinop;
    const double dbet = -ph * sinop + pinc * cosip * cosop;
    alfdp += dalf;
    betdp += dbet;
    nodep = std::fmod(nodep, twopi);
    if (nodep < 0.0 && mode == opsmode::afspc) nodep += twopi;
    double xls = mp + argpp + cosip * nodep;
    const double dls = pl + pgh - pinc * nodep * sinip;
    xls += dls;
    const double xnoh = nodep;
    nodep = std::atan2(alfdp, betdp);
    if (nodep < 0.0 && mode == opsmode::afspc) nodep += twopi;
    if (std::fabs(xnoh - nodep) > std::numbers::pi) nodep += nodep < xnoh ? twopi : -twopi;
    mp += pl;
    argpp = xls - mp - cosip * nodep;
  }
}

void secular_setup(const secular_inputs& in, const lunar_solar_setup& s, sgp4::deep_terms& d) {
  constexpr double q22 = 1.7891679e-6, q31 = 2.1460748e-6, q33 = 2.2123015e-7;
  constexpr double root22 = 1.7891679e-6, root44 = 7.3636953e-9, root54 = 2.1765803e-9;
  constexpr double root32 = 3.7393792e-7, root52 = 1.1428639e-7;
  constexpr double near_equatorial = 5.2359877e-2;  // 3 degrees

  const double nm = in.no, em = in.ecco, inclm = in.inclo;
  const double sinim = s.sinim, cosim = s.cosim, emsq = s.emsq;

  d.irez = 0;
  if (nm < 0.0052359877 && nm > 0.0034906585) d.irez = 1;            // 24-hour synchronous
  if (nm >= 8.26e-3 && nm <= 9.24e-3 && em >= 0.5) d.irez = 2;       // 12-hour, eccentric

  // Solar secular terms.
  const double ses = s.ss1 * zns * s.ss5;
  const double sis = s.ss2 * zns * (s.sz11 + s.sz13);
  const double sls = -zns * s.ss3 * (s.sz1 + s.sz3 - 14.0 - 6.0 * emsq);
  const double sghs = s.ss4 * zns * (s.sz31 + s.sz33 - 6.0);
  double shs = -zns * s.ss2 * (s.sz21 + s.sz23);
  const bool flat = inclm < near_equatorial || inclm > std::numbers::pi - near_equatorial;
  if (flat) shs = 0.0;
  if (sinim != 0.0) shs /= sinim;
  const double sgs = sghs - cosim * shs;
  // Lunar secular terms.
  d.dedt = ses + s.s1 * znl * s.s5;
  d.didt = sis + s.s2 * znl * (s.z11 + s.z13);
  d.dmdt = sls - znl * s.s3 * (s.z1 + s.z3 - 14.0 - 6.0 * emsq);
  const double sghl = s.s4 * znl * (s.z31 + s.z33 - 6.0);
  double shll = -znl * s.s2 * (s.z21 + s.z23);
  if (flat) shll = 0.0;
  d.domdt = sgs + sghl;
  d.dnodt = shs;
  if (sinim != 0.0) {
    d.domdt -= cosim / sinim * shll;
    d.dnodt += shll / sinim;
  }

  if (d.irez == 0) return;
  const double theta = std::fmod(in.gsto, twopi);
  const double aonv = std::pow(nm / in.xke, 2.0 / 3.0);

  if (d.irez == 2) {
    // Geopotential resonance of 12-hour orbits: eccentricity functions fitted piecewise.
    const double cosisq = cosim * cosim;
    const double e = in.ecco, e2 = in.eccsq, e3 = e * e2;
    const double g201 = -0.306 - (e - 0.64) * 0.440;
    double g211, g310, g322, g410, g422, g520, g521, g532, g533;
    if (e <= 0.65) {
      g211 = 3.616 - 13.2470 * e + 16.2900 * e2;
      g310 = -19.302 + 117.3900 * e - 228.4190 * e2 + 156.5910 * e3;
      g322 = -18.9068 + 109.7927 * e - 214.6334 * e2 + 146.5816 * e3;
      g410 = -41.122 + 242.6940 * e - 471.0940 * e2 + 313.9530 * e3;
      g422 = -146.407 + 841.8800 * e - 1629.014 * e2 + 1083.4350 * e3;
      g520 = -532.114 + 3017.977 * e - 5740.032 * e2 + 3708.2760 * e3;
    } else {
      g211 = -72.099 + 331.819 * e - 508.738 * e2 + 266.724 * e3;
      g310 = -346.844 + 1582.851 * e - 2415.925 * e2 + 1246.113 * e3;
      g322 = -342.585 + 1554.908 * e - 2366.899 * e2 + 1215.972 * e3;
      g410 = -1052.797 + 4758.686 * e - 7193.992 * e2 + 3651.957 * e3;
      g422 = -3581.690 + 16178.110 * e - 24462.770 * e2 + 12422.520 * e3;
      g520 = e > 0.715 ? -5149.66 + 29936.92 * e - 54087.36 * e2 + 31324.56 * e3
                       : 1464.74 - 4664.75 * e + 3763.64 * e2;
    }
    if (e < 0.7) {
      g533 = -919.22770 + 4988.6100 * e - 9064.7700 * e2 + 5542.21 * e3;
      g521 = -822.71072 + 4568.6173 * e - 8491.4146 * e2 + 5337.524 * e3;
      g532 = -853.66600 + 4690.2500 * e - 8624.7700 * e2 + 5341.4 * e3;
    } else {
      g533 = -37995.780 + 161616.52 * e - 229838.20 * e2 + 109377.94 * e3;
      g521 = -51752.104 + 218913.95 * e - 309468.16 * e2 + 146349.42 * e3;
      g532 = -40023.880 + 170470.89 * e - 242699.48 * e2 + 115605.82 * e3;
    }
    const double sini2 = sinim * sinim;
    const double f220 = 0.75 * (1.0 + 2.0 * cosim + cosisq);
    const double f221 = 1.5 * sini2;
    const double f321 = 1.875 * sinim * (1.0 - 2.0 * cosim - 3.0 * cosisq);
    const double f322 = -1.875 * sinim * (1.0 + 2.0 * cosim - 3.0 * cosisq);
    const double f441 = 35.0 * sini2 * f220;
    const double f442 = 39.3750 * sini2 * sini2;
    const double f522 = 9.84375 * sinim *
                        (sini2 * (1.0 - 2.0 * cosim - 5.0 * cosisq) + 0.33333333 * (-2.0 + 4.0 * cosim + 6.0 * cosisq));
    const double f523 = sinim * (4.92187512 * sini2 * (-2.0 - 4.0 * cosim + 10.0 * cosisq) +
                                 6.56250012 * (1.0 + 2.0 * cosim - 3.0 * cosisq));
    const double f542 = 29.53125 * sinim * (2.0 - 8.0 * cosim + cosisq * (-12.0 + 8.0 * cosim + 10.0 * cosisq));
    const double f543 = 29.53125 * sinim * (-2.0 - 8.0 * cosim + cosisq * (12.0 + 8.0 * cosim - 10.0 * cosisq));

    const double xno2 = nm * nm, ainv2 = aonv * aonv;
    double temp1 = 3.0 * xno2 * ainv2;
    double temp = temp1 * root22;
    d.d2201 = temp * f220 * g201;
    d.d2211 = temp * f221 * g211;
    temp1 *= aonv;
    temp = temp1 * root32;
    d.d3210 = temp * f321 * g310;
    d.d3222 = temp * f322 * g322;
    temp1 *= aonv;
    temp = 2.0 * temp1 * root44;
    d.d4410 = temp * f441 * g410;
    d.d4422 = temp * f442 * g422;
    temp1 *= aonv;
    temp = temp1 * root52;
    d.d5220 = temp * f522 * g520;
    d.d5232 = temp * f523 * g532;
    temp = 2.0 * temp1 * root54;
    d.d5421 = temp * f542 * g521;
    d.d5433 = temp * f543 * g533;
    d.xlamo = std::fmod(in.mo + in.nodeo + in.nodeo - theta - theta, twopi);
    d.xfact = in.mdot + d.dmdt + 2.0 * (in.nodedot + d.dnodt - rptim) - in.no;
  } else {
    // Synchronous (24-hour) resonance.
    const double g200 = 1.0 + emsq * (-2.5 + 0.8125 * emsq);
    const double g310 = 1.0 + 2.0 * emsq;
    const double g300 = 1.0 + emsq * (-6.0 + 6.60937 * emsq);
    const double f220 = 0.75 * (1.0 + cosim) * (1.0 + cosim);
    const double f311 = 0.9375 * sinim * sinim * (1.0 + 3.0 * cosim) - 0.75 * (1.0 + cosim);
    double f330 = 1.0 + cosim;
    f330 = 1.875 * f330 * f330 * f330;
    const double del1 = 3.0 * nm * nm * aonv * aonv;
    d.del2 = 2.0 * del1 * f220 * g200 * q22;
    d.del3 = 3.0 * del1 * f330 * g300 * q33 * aonv;
    d.del1 = del1 * f311 * g310 * q31 * aonv;
    d.xlamo = std::fmod(in.mo + in.nodeo + in.argpo - theta, twopi);
    d.xfact = in.mdot + in.xpidot - rptim + d.dmdt + d.domdt + d.dnodt - in.no;
  }
}

void secular_effects(const sgp4::deep_terms& d, double argpo, double argpdot, double t, double gsto,
                     double no, double& em, double& argpm, double& inclm, double& mm, double& nodem,
                     double& nm, resonance_state& rs) {
  constexpr double fasx2 = 0.13130908, fasx4 = 2.8843198, fasx6 = 0.37448087;
  constexpr double g22 = 5.7686396, g32 = 0.95240898, g44 = 1.8014998, g52 = 1.0508330, g54 = 4.4108898;
  constexpr double stepp = 720.0, stepn = -720.0, step2 = 259200.0;

  const double theta = std::fmod(gsto + t * rptim, twopi);
  em += d.dedt * t;
  inclm += d.didt * t;
  argpm += d.domdt * t;
  nodem += d.dnodt * t;
  mm += d.dmdt * t;
  nm = no;
  if (d.irez == 0) return;

  // The integrator restarts from epoch unless `rs` already lies between epoch and t.
  if (rs.atime == 0.0 || t * rs.atime <= 0.0 || std::fabs(t) < std::fabs(rs.atime)) {
    rs.atime = 0.0;
    rs.xni = no;
    rs.xli = d.xlamo;
  }
  const double delt = t > 0.0 ? stepp : stepn;
  double xndt = 0, xldot = 0, xnddt = 0, ft = 0;
  for (;;) {
    if (d.irez != 2) {
      xndt = d.del1 * std::sin(rs.xli - fasx2) + d.del2 * std::sin(2.0 * (rs.xli - fasx4)) +
             d.del3 * std::sin(3.0 * (rs.xli - fasx6));
      xldot = rs.xni + d.xfact;
      xnddt = d.del1 * std::cos(rs.xli - fasx2) + 2.0 * d.del2 * std::cos(2.0 * (rs.xli - fasx4)) +
              3.0 * d.del3 * std::cos(3.0 * (rs.xli - fasx6));
      xnddt *= xldot;
    } else {
      const double xomi = argpo + argpdot * rs.atime;
      const double x2omi = xomi + xomi, x2li = rs.xli + rs.xli;
      xndt = d.d2201 * std::sin(x2omi + rs.xli - g22) + d.d2211 * std::sin(rs.xli - g22) +
             d.d3210 * std::sin(xomi + rs.xli - g32) + d.d3222 * std::sin(-xomi + rs.xli - g32) +
             d.d4410 * std::sin(x2omi + x2li - g44) + d.d4422 * std::sin(x2li - g44) +
             d.d5220 * std::sin(xomi + rs.xli - g52) + d.d5232 * std::sin(-xomi + rs.xli - g52) +
             d.d5421 * std::sin(xomi + x2li - g54) + d.d5433 * std::sin(-xomi + x2li - g54);
      xldot = rs.xni + d.xfact;
      xnddt = d.d2201 * std::cos(x2omi + rs.xli - g22) + d.d2211 * std::cos(rs.xli - g22) +
              d.d3210 * std::cos(xomi + rs.xli - g32) + d.d3222 * std::cos(-xomi + rs.xli - g32) +
              d.d5220 * std::cos(xomi + rs.xli - g52) + d.d5232 * std::cos(-xomi + rs.xli - g52) +
              2.0 * (d.d4410 * std::cos(x2omi + x2li - g44) + d.d4422 * std::cos(x2li - g44) +
                     d.d5421 * std::cos(xomi + x2li - g54) + d.d5433 * std::cos(-xomi + x2li - g54));
      xnddt *= xldot;
    }
    if (std::fabs(t - rs.atime) < stepp) {
      ft = t - rs.atime;
      break;
    }
    rs.xli += xldot * delt + xndt * step2;
    rs.xni += xndt * delt + xnddt * step2;
    rs.atime += delt;
  }
  nm = rs.xni + xndt * ft + xnddt * ft * ft * 0.5;
  const double xl = rs.xli + xldot * ft + xndt * ft * ft * 0.5;
  if (d.irez != 1)
    mm = xl - 2.0 * nodem + 2.0 * theta;
  else
    mm = xl - nodem - argpm + theta;
}

}  // namespace skyrelay::orbit::detail
