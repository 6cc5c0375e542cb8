// Internal: the deep-space (SDP4) parts of the propagator: lunar-solar setup, periodics,
// secular rates and the resonance integrator. Only sgp4.cpp includes this.
#pragma once

#include "skyrelay/orbit/sgp4.hpp"

namespace skyrelay::orbit::detail {

// What the lunar-solar setup computes at epoch and the secular-rate setup reads.
struct lunar_solar_setup {
  double sinim, cosim, emsq;
  double s1, s2, s3, s4, s5;
  double ss1, ss2, ss3, ss4, ss5;
  double sz1, sz3, sz11, sz13, sz21, sz23, sz31, sz33;
  double z1, z3, z11, z13, z21, z23, z31, z33;
};

// Lunar and solar coefficients at epoch (`epoch` is days since 1950 Jan 0.0 as the theory
// counts them). Fills the periodic terms of `d`.
void lunar_solar_terms(double epoch, double ecco, double argpo, double inclo, double nodeo,
                       double no, sgp4::deep_terms& d, lunar_solar_setup& s);

// Lunar-solar periodics at `t` minutes; at initialisation (`init`) only evaluated, never
// applied. Changes the osculating-to-be elements in place.
void lunar_solar_periodics(const sgp4::deep_terms& d, double t, bool init, opsmode mode,
                           double& ep, double& inclp, double& nodep, double& argpp, double& mp);

struct secular_inputs {
  double xke, argpo, mo, mdot, no, nodeo, nodedot, xpidot, ecco, eccsq, inclo, gsto;
};

// Secular lunar-solar rates and the resonance coefficients (12-hour and 24-hour orbits).
void secular_setup(const secular_inputs& in, const lunar_solar_setup& s, sgp4::deep_terms& d);

// Secular lunar-solar effects and the resonance integration at `t` minutes. Updates the mean
// elements in place and sets `nm` (mean motion).
void secular_effects(const sgp4::deep_terms& d, double argpo, double argpdot, double t, double gsto,
                     double no, double& em, double& argpm, double& inclm, double& mm, double& nodem,
                     double& nm, resonance_state& rs);

}  // namespace skyrelay::orbit::detail
