// SGP4/SDP4 initialisation and propagation. Equations from Hoots & Roehrich (1980) with the
// revisions of Vallado et al. (2006); names follow the papers so each line can be checked.
#include "skyrelay/orbit/sgp4.hpp"

#include <cmath>
#include <numbers>

#include "deep_space.hpp"

namespace skyrelay::orbit {
namespace {
constexpr double pi = std::numbers::pi;
constexpr double twopi = 2.0 * pi;
constexpr double deg = pi / 180.0;
constexpr double x2o3 = 2.0 / 3.0;
constexpr double minutes_per_day = 1440.0;
}  // namespace

const char* describe(sgp4_error e) {
  switch (e) {
    case sgp4_error::none: return "ok";
    case sgp4_error::mean_eccentricity: return "mean eccentricity out of range (e >= 1 or e < -0.001)";
    case sgp4_error::mean_motion: return "mean motion less than zero";
    case sgp4_error::perturbed_eccentricity: return "perturbed eccentricity out of range (e < 0 or e > 1)";
    case sgp4_error::semilatus_rectum: return "semi-latus rectum less than zero";
    case sgp4_error::decayed: return "satellite has decayed (radius below one earth radius)";
  }
  return "unknown error";
}

gravity_constants constants_of(gravity_model g) {
  gravity_constants k{};
  switch (g) {
    case gravity_model::wgs72old:
      k.mu = 398600.79964;
      k.radius_km = 6378.135;
      k.xke = 0.0743669161;
      k.j2 = 0.001082616;
      k.j3 = -0.00000253881;
      k.j4 = -0.00000165597;
      break;
    case gravity_model::wgs72:
      k.mu = 398600.8;
      k.radius_km = 6378.135;
      k.xke = 60.0 / std::sqrt(k.radius_km * k.radius_km * k.radius_km / k.mu);
      k.j2 = 0.001082616;
      k.j3 = -0.00000253881;
      k.j4 = -0.00000165597;
      break;
    case gravity_model::wgs84:
      k.mu = 398600.5;
      k.radius_km = 6378.137;
      k.xke = 60.0 / std::sqrt(k.radius_km * k.radius_km * k.radius_km / k.mu);
      k.j2 = 0.00108262998905;
      k.j3 = -0.00000253215306;
      k.j4 = -0.00000161098761;
      break;
  }
  k.tumin = 1.0 / k.xke;
  k.j3oj2 = k.j3 / k.j2;
  return k;
}

double gmst82(double jd_ut1) {
  const double tut1 = (jd_ut1 - 2451545.0) / 36525.0;
  double theta = -6.2e-6 * tut1 * tut1 * tut1 + 0.093104 * tut1 * tut1 +
                 (876600.0 * 3600.0 + 8640184.812866) * tut1 + 67310.54841;  // seconds
  theta = std::fmod(theta * deg / 240.0, twopi);
  if (theta < 0.0) theta += twopi;
  return theta;
}

sgp4::sgp4(const elements& el, gravity_model g, opsmode mode) : k_(constants_of(g)), mode_(mode) {
  epoch_jd_ = el.epoch_jd;
  epoch_fr_ = el.epoch_fr;
  const double xpdotp = minutes_per_day / twopi;  // rev/day -> rad/min
  bstar_ = el.bstar;
  ecco_ = el.eccentricity;
  argpo_ = el.arg_perigee_deg * deg;
  inclo_ = el.inclination_deg * deg;
  mo_ = el.mean_anomaly_deg * deg;
  no_kozai_ = el.mean_motion / xpdotp;
  nodeo_ = el.raan_deg * deg;

  const double re = k_.radius_km, j2 = k_.j2, j4 = k_.j4, j3oj2 = k_.j3oj2;
  const double ss = 78.0 / re + 1.0;
  const double qzms2ttemp = (120.0 - 78.0) / re;
  const double qzms2t = qzms2ttemp * qzms2ttemp * qzms2ttemp * qzms2ttemp;
  // Days since 1950 Jan 0.0, the theory's epoch count. Formed from the one-double Julian date,
  // as the reference implementation does: the lunar-solar terms of deep-space orbits depend on
  // its rounding (about 5e-10 days) at the level of a few metres for very eccentric orbits, and
  // the reference output (tcppver.out) is only reproduced this way.
  const double epoch = (epoch_jd_ + epoch_fr_) - 2433281.5;

  // Recover the original (Brouwer) mean motion and semi-major axis from the Kozai mean motion.
  const double eccsq = ecco_ * ecco_;
  const double omeosq = 1.0 - eccsq;
  const double rteosq = std::sqrt(omeosq);
  const double cosio = std::cos(inclo_);
  const double cosio2 = cosio * cosio;
  const double ak = std::pow(k_.xke / no_kozai_, x2o3);
  const double d1 = 0.75 * j2 * (3.0 * cosio2 - 1.0) / (rteosq * omeosq);
  double del = d1 / (ak * ak);
  const double adel = ak * (1.0 - del * del - del * (1.0 / 3.0 + 134.0 * del * del / 81.0));
  del = d1 / (adel * adel);
  no_unkozai_ = no_kozai_ / (1.0 + del);
  const double ao = std::pow(k_.xke / no_unkozai_, x2o3);
  const double sinio = std::sin(inclo_);
  const double po = ao * omeosq;
  const double con42 = 1.0 - 5.0 * cosio2;
  con41_ = -con42 - cosio2 - cosio2;
  const double posq = po * po;
  const double rp = ao * (1.0 - ecco_);
  // Sidereal time at epoch. Both modes use the IAU-82 formula, as the revised reference code
  // does (the 1970-based AFSPC approximation differs by well under a microradian).
  gsto_ = gmst82(epoch + 2433281.5);

  if (omeosq >= 0.0 || no_unkozai_ >= 0.0) {
    isimp_ = rp < (220.0 / re + 1.0);
    // Atmospheric density parameters: below 156 km perigee the s and q0 constants change.
    double sfour = ss, qzms24 = qzms2t;
    const double perige = (rp - 1.0) * re;
    if (perige < 156.0) {
      sfour = perige < 98.0 ? 20.0 : perige - 78.0;
      const double q = (120.0 - sfour) / re;
      qzms24 = q * q * q * q;
      sfour = sfour / re + 1.0;
    }
    const double pinvsq = 1.0 / posq;
    const double tsi = 1.0 / (ao - sfour);
    eta_ = ao * ecco_ * tsi;
    const double etasq = eta_ * eta_;
    const double eeta = ecco_ * eta_;
    const double psisq = std::fabs(1.0 - etasq);
    const double coef = qzms24 * std::pow(tsi, 4.0);
    const double coef1 = coef / std::pow(psisq, 3.5);
    const double cc2 = coef1 * no_unkozai_ *
                       (ao * (1.0 + 1.5 * etasq + eeta * (4.0 + etasq)) +
                        0.375 * j2 * tsi / psisq * con41_ * (8.0 + 3.0 * etasq * (8.0 + etasq)));
    cc1_ = bstar_ * cc2;
    const double cc3 = ecco_ > 1.0e-4 ? -2.0 * coef * tsi * j3oj2 * no_unkozai_ * sinio / ecco_ : 0.0;
    x1mth2_ = 1.0 - cosio2;
    cc4_ = 2.0 * no_unkozai_ * coef1 * ao * omeosq *
           (eta_ * (2.0 + 0.5 * etasq) + ecco_ * (0.5 + 2.0 * etasq) -
            j2 * tsi / (ao * psisq) *
                (-3.0 * con41_ * (1.0 - 2.0 * eeta + etasq * (1.5 - 0.5 * eeta)) +
                 0.75 * x1mth2_ * (2.0 * etasq - eeta * (1.0 + etasq)) * std::cos(2.0 * argpo_)));
    cc5_ = 2.0 * coef1 * ao * omeosq * (1.0 + 2.75 * (etasq + eeta) + eeta * etasq);
    const double cosio4 = cosio2 * cosio2;
    const double temp1 = 1.5 * j2 * pinvsq * no_unkozai_;
    const double temp2 = 0.5 * temp1 * j2 * pinvsq;
    const double temp3 = -0.46875 * j4 * pinvsq * pinvsq * no_unkozai_;
    mdot_ = no_unkozai_ + 0.5 * temp1 * rteosq * con41_ +
            0.0625 * temp2 * rteosq * (13.0 - 78.0 * cosio2 + 137.0 * cosio4);
    argpdot_ = -0.5 * temp1 * con42 + 0.0625 * temp2 * (7.0 - 114.0 * cosio2 + 395.0 * cosio4) +
               temp3 * (3.0 - 36.0 * cosio2 + 49.0 * cosio4);
    const double xhdot1 = -temp1 * cosio;
    nodedot_ = xhdot1 + (0.5 * temp2 * (4.0 - 19.0 * cosio2) + 2.0 * temp3 * (3.0 - 7.0 * cosio2)) * cosio;
    const double xpidot = argpdot_ + nodedot_;
    omgcof_ = bstar_ * cc3 * std::cos(argpo_);
    xmcof_ = ecco_ > 1.0e-4 ? -x2o3 * coef * bstar_ / eeta : 0.0;
    nodecf_ = 3.5 * omeosq * xhdot1 * cc1_;
    t2cof_ = 1.5 * cc1_;
    // Guard against division by zero for retrograde equatorial orbits.
    const double onepc = std::fabs(cosio + 1.0) > 1.5e-12 ? 1.0 + cosio : 1.5e-12;
    xlcof_ = -0.25 * j3oj2 * sinio * (3.0 + 5.0 * cosio) / onepc;
    aycof_ = -0.5 * j3oj2 * sinio;
    const double delmotemp = 1.0 + eta_ * std::cos(mo_);
    delmo_ = delmotemp * delmotemp * delmotemp;
    sinmao_ = std::sin(mo_);
    x7thm1_ = 7.0 * cosio2 - 1.0;

    // Deep space: a period of 225 minutes or more.
    if (twopi / no_unkozai_ >= 225.0) {
      deep_ = true;
      isimp_ = true;
      detail::lunar_solar_setup setup{};
      detail::lunar_solar_terms(epoch, ecco_, argpo_, inclo_, nodeo_, no_unkozai_, ds_, setup);
      detail::secular_setup({k_.xke, argpo_, mo_, mdot_, no_unkozai_, nodeo_, nodedot_, xpidot,
                             ecco_, eccsq, inclo_, gsto_},
                            setup, ds_);
    }

    if (!isimp_) {
      const double cc1sq = cc1_ * cc1_;
      d2_ = 4.0 * ao * tsi * cc1sq;
      const double temp = d2_ * tsi * cc1_ / 3.0;
      d3_ = (17.0 * ao + sfour) * temp;
      d4_ = 0.5 * temp * ao * tsi * (221.0 * ao + 31.0 * sfour) * cc1_;
      t3cof_ = d2_ + 2.0 * cc1sq;
      t4cof_ = 0.25 * (3.0 * d3_ + cc1_ * (12.0 * d2_ + 10.0 * cc1sq));
      t5cof_ = 0.2 * (3.0 * d4_ + 12.0 * cc1_ * d3_ + 6.0 * d2_ * d2_ + 15.0 * cc1sq * (2.0 * d2_ + cc1sq));
    } else {
      d2_ = d3_ = d4_ = t3cof_ = t4cof_ = t5cof_ = 0.0;
    }
  }

  state_vector sv{};
  init_error_ = propagate(0.0, sv);
}

sgp4_error sgp4::propagate(double t, state_vector& out, resonance_state* rs) const {
  out = state_vector{};
  const double re = k_.radius_km, xke = k_.xke, j2 = k_.j2, j3oj2 = k_.j3oj2;
  const double vkmpersec = re * xke / 60.0;

  // Secular gravity and drag.
  const double xmdf = mo_ + mdot_ * t;
  const double argpdf = argpo_ + argpdot_ * t;
  const double nodedf = nodeo_ + nodedot_ * t;
  double argpm = argpdf, mm = xmdf;
  const double t2 = t * t;
  double nodem = nodedf + nodecf_ * t2;
  double tempa = 1.0 - cc1_ * t;
  double tempe = bstar_ * cc4_ * t;
  double templ = t2cof_ * t2;
  if (!isimp_) {
    const double delomg = omgcof_ * t;
    const double delmtemp = 1.0 + eta_ * std::cos(xmdf);
    const double delm = xmcof_ * (delmtemp * delmtemp * delmtemp - delmo_);
    const double temp = delomg + delm;
    mm = xmdf + temp;
    argpm = argpdf - temp;
    const double t3 = t2 * t, t4 = t3 * t;
    tempa = tempa - d2_ * t2 - d3_ * t3 - d4_ * t4;
    tempe += bstar_ * cc5_ * (std::sin(mm) - sinmao_);
    templ += t3cof_ * t3 + t4 * (t4cof_ + t * t5cof_);
  }
  double nm = no_unkozai_, em = ecco_, inclm = inclo_;
  if (deep_) {
    resonance_state local{};
    detail::secular_effects(ds_, argpo_, argpdot_, t, gsto_, no_unkozai_, em, argpm, inclm, mm,
                            nodem, nm, rs ? *rs : local);
  }
  if (nm <= 0.0) return sgp4_error::mean_motion;
  const double am = std::pow(xke / nm, x2o3) * tempa * tempa;
  nm = xke / std::pow(am, 1.5);
  em -= tempe;
  if (em >= 1.0 || em < -0.001) return sgp4_error::mean_eccentricity;
  if (em < 1.0e-6) em = 1.0e-6;
  mm += no_unkozai_ * templ;
  double xlm = mm + argpm + nodem;
  nodem = std::fmod(nodem, twopi);
  argpm = std::fmod(argpm, twopi);
  xlm = std::fmod(xlm, twopi);
  mm = std::fmod(xlm - argpm - nodem, twopi);

  // Lunar-solar periodics.
  double ep = em, xincp = inclm, argpp = argpm, nodep = nodem, mp = mm;
  double sinip = std::sin(inclm), cosip = std::cos(inclm);
  double aycof = aycof_, xlcof = xlcof_, con41 = con41_, x1mth2 = x1mth2_, x7thm1 = x7thm1_;
  if (deep_) {
    detail::lunar_solar_periodics(ds_, t, false, mode_, ep, xincp, nodep, argpp, mp);
    if (xincp < 0.0) {
      xincp = -xincp;
      nodep += pi;
      argpp -= pi;
    }
    if (ep < 0.0 || ep > 1.0) return sgp4_error::perturbed_eccentricity;
    sinip = std::sin(xincp);
    cosip = std::cos(xincp);
    aycof = -0.5 * j3oj2 * sinip;
    const double onepc = std::fabs(cosip + 1.0) > 1.5e-12 ? 1.0 + cosip : 1.5e-12;
    xlcof = -0.25 * j3oj2 * sinip * (3.0 + 5.0 * cosip) / onepc;
  }

  // Long-period periodics.
  const double axnl = ep * std::cos(argpp);
  double temp = 1.0 / (am * (1.0 - ep * ep));
  const double aynl = ep * std::sin(argpp) + temp * aycof;
  const double xl = mp + argpp + nodep + temp * xlcof * axnl;

  // Kepler's equation in the Lyddane variables, Newton steps clamped to 0.95 rad, at most 10.
  const double u = std::fmod(xl - nodep, twopi);
  double eo1 = u, tem5 = 9999.9, sineo1 = 0, coseo1 = 0;
  for (int ktr = 1; std::fabs(tem5) >= 1.0e-12 && ktr <= 10; ++ktr) {
    sineo1 = std::sin(eo1);
    coseo1 = std::cos(eo1);
    tem5 = 1.0 - coseo1 * axnl - sineo1 * aynl;
    tem5 = (u - aynl * coseo1 + axnl * sineo1 - eo1) / tem5;
    if (std::fabs(tem5) >= 0.95) tem5 = tem5 > 0.0 ? 0.95 : -0.95;
    eo1 += tem5;
  }

  // Short-period preliminaries.
  const double ecose = axnl * coseo1 + aynl * sineo1;
  const double esine = axnl * sineo1 - aynl * coseo1;
  const double el2 = axnl * axnl + aynl * aynl;
  const double pl = am * (1.0 - el2);
  if (pl < 0.0) return sgp4_error::semilatus_rectum;
  const double rl = am * (1.0 - ecose);
  const double rdotl = std::sqrt(am) * esine / rl;
  const double rvdotl = std::sqrt(pl) / rl;
  const double betal = std::sqrt(1.0 - el2);
  temp = esine / (1.0 + betal);
  const double sinu = am / rl * (sineo1 - aynl - axnl * temp);
  const double cosu = am / rl * (coseo1 - axnl + aynl * temp);
  double su = std::atan2(sinu, cosu);
  const double sin2u = (cosu + cosu) * sinu;
  const double cos2u = 1.0 - 2.0 * sinu * sinu;
  temp = 1.0 / pl;
  const double temp1 = 0.5 * j2 * temp;
  const double temp2 = temp1 * temp;

  if (deep_) {
    const double cosisq = cosip * cosip;
    con41 = 3.0 * cosisq - 1.0;
    x1mth2 = 1.0 - cosisq;
    x7thm1 = 7.0 * cosisq - 1.0;
  }
  // Short-period periodics.
  const double mrt = rl * (1.0 - 1.5 * temp2 * betal * con41) + 0.5 * temp1 * x1mth2 * cos2u;
  su -= 0.25 * temp2 * x7thm1 * sin2u;
  const double xnode = nodep + 1.5 * temp2 * cosip * sin2u;
  const double xinc = xincp + 1.5 * temp2 * cosip * sinip * cos2u;
  const double mvt = rdotl - nm * temp1 * x1mth2 * sin2u / xke;
  const double rvdot = rvdotl + nm * temp1 * (x1mth2 * cos2u + 1.5 * con41) / xke;

  // Orientation vectors.
  const double sinsu = std::sin(su), cossu = std::cos(su);
  const double snod = std::sin(xnode), cnod = std::cos(xnode);
  const double sini = std::sin(xinc), cosi = std::cos(xinc);
  const double xmx = -snod * cosi, xmy = cnod * cosi;
  const double ux = xmx * sinsu + cnod * cossu;
  const double uy = xmy * sinsu + snod * cossu;
  const double uz = sini * sinsu;
  const double vx = xmx * cossu - cnod * sinsu;
  const double vy = xmy * cossu - snod * sinsu;
  const double vz = sini * cossu;

  const double mr = mrt * re;
  out.r[0] = mr * ux;
  out.r[1] = mr * uy;
  out.r[2] = mr * uz;
  out.v[0] = (mvt * ux + rvdot * vx) * vkmpersec;
  out.v[1] = (mvt * uy + rvdot * vy) * vkmpersec;
  out.v[2] = (mvt * uz + rvdot * vz) * vkmpersec;
  if (mrt < 1.0) return sgp4_error::decayed;
  return sgp4_error::none;
}

}  // namespace skyrelay::orbit
