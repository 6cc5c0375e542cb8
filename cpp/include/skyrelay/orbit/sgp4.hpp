// SGP4 (near-earth) and SDP4 (deep-space) propagation of TLE mean elements, after Hoots &
// Roehrich, Spacetrack Report #3 (1980), with the corrections of Vallado, Crawford, Hujsak &
// Kelso, "Revisiting Spacetrack Report #3" (AIAA 2006-6753). Output is in the TEME frame:
// kilometres and kilometres per second.
//
// A propagator is immutable after construction and safe to share between threads. The deep-
// space resonance integrator steps from epoch in fixed 720-minute steps; callers that walk
// forward in time can pass a `resonance_state` to continue from the previous call instead of
// from epoch (the result is the same, only cheaper). Each thread needs its own state.
#pragma once

#include <cstddef>
#include <cstdint>

#include "skyrelay/orbit/elements.hpp"

namespace skyrelay::orbit {

enum class gravity_model { wgs72old, wgs72, wgs84 };

// 'a' (AFSPC, the historic operational code) or 'i' (improved; the reference output uses it).
enum class opsmode { afspc, improved };

// The standard error codes, returned as data (0: none).
enum class sgp4_error : int {
  none = 0,
  mean_eccentricity = 1,       // mean eccentricity out of [-0.001, 1)
  mean_motion = 2,             // mean motion not positive
  perturbed_eccentricity = 3,  // eccentricity after lunar-solar terms out of [0, 1]
  semilatus_rectum = 4,        // semi-latus rectum negative
  decayed = 6,                 // radius below one earth radius
};
const char* describe(sgp4_error e);

struct gravity_constants {
  double mu;         // km^3/s^2
  double radius_km;  // equatorial radius
  double xke;        // sqrt(mu) in earth radii^1.5 per minute
  double tumin;      // minutes per time unit
  double j2, j3, j4, j3oj2;
};
gravity_constants constants_of(gravity_model g);

struct resonance_state {
  double atime{0}, xli{0}, xni{0};
};

struct state_vector {
  double r[3];
  double v[3];
};

class sgp4 {
 public:
  explicit sgp4(const elements& el, gravity_model g = gravity_model::wgs72,
                opsmode mode = opsmode::improved);

  // Position and velocity `tsince` minutes after epoch. Returns the error code; on an error
  // `out` holds what was computed before the check that failed (or zeros).
  sgp4_error propagate(double tsince, state_vector& out, resonance_state* rs = nullptr) const;

  // Many times at once (minutes since epoch, in any order, best ascending): positions (n x 3,
  // km), velocities (n x 3, km/s) and error codes (n). Near-earth orbits take a vectorised path
  // (SIMD lanes over times, polynomial sine and cosine, angle-addition in place of the final
  // atan2) that agrees with `propagate` to about 1e-9 km; positions and velocities at an error
  // are NaN. Deep-space orbits use `propagate` time by time. r, v and err must not overlap; the
  // same times give the same bits wherever they lie.
  void propagate_batch(const double* tsince, std::size_t n, double* r, double* v, std::int8_t* err) const;

  // The same at a two-part Julian date (UTC).
  sgp4_error propagate_jd(double jd, double fr, state_vector& out, resonance_state* rs = nullptr) const {
    return propagate(minutes_since_epoch(jd, fr), out, rs);
  }
  double minutes_since_epoch(double jd, double fr) const {
    return ((jd - epoch_jd_) + (fr - epoch_fr_)) * 1440.0;
  }

  // An error found at construction (checked with a propagation at epoch), or none.
  sgp4_error init_error() const { return init_error_; }
  bool deep_space() const { return deep_; }
  double epoch_jd() const { return epoch_jd_; }
  double epoch_fr() const { return epoch_fr_; }
  double mean_motion_rad_min() const { return no_unkozai_; }  // un-Kozai'd, rad/min
  double eccentricity() const { return ecco_; }
  double inclination_rad() const { return inclo_; }
  double nodedot() const { return nodedot_; }  // secular node rate, rad/min
  const gravity_constants& constants() const { return k_; }
  double gsto() const { return gsto_; }

  // Deep-space coefficients (lunar-solar periodics and resonance); public for the functions in
  // sgp4_deep.cpp, of no use to callers.
  struct deep_terms {
    // periodics (dscom/dpper)
    double e3, ee2, peo, pgho, pho, pinco, plo, se2, se3, sgh2, sgh3, sgh4, sh2, sh3, si2, si3,
        sl2, sl3, sl4, xgh2, xgh3, xgh4, xh2, xh3, xi2, xi3, xl2, xl3, xl4, zmol, zmos;
    // secular rates and resonance (dsinit/dspace)
    int irez;
    double d2201, d2211, d3210, d3222, d4410, d4422, d5220, d5232, d5421, d5433, dedt, del1,
        del2, del3, didt, dmdt, dnodt, domdt, xfact, xlamo;
  };

 private:
  gravity_constants k_;
  opsmode mode_;
  double epoch_jd_, epoch_fr_;
  // mean elements (radians, rad/min)
  double bstar_, ecco_, argpo_, inclo_, mo_, no_kozai_, nodeo_, no_unkozai_;
  // near-earth coefficients
  bool isimp_{false}, deep_{false};
  double aycof_, con41_, cc1_, cc4_, cc5_, d2_, d3_, d4_, delmo_, eta_, argpdot_, omgcof_, sinmao_,
      t2cof_, t3cof_, t4cof_, t5cof_, x1mth2_, x7thm1_, mdot_, nodedot_, xlcof_, xmcof_, nodecf_;
  double gsto_{0};
  deep_terms ds_{};
  sgp4_error init_error_{sgp4_error::none};
};

// Greenwich mean sidereal time (IAU 1982) in radians [0, 2pi) at a UT1 Julian date.
double gmst82(double jd_ut1);

}  // namespace skyrelay::orbit
