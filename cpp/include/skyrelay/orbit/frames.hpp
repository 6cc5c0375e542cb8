// Frames and ground geometry: TEME to earth-fixed (GMST rotation, no polar motion), WGS-84
// geodetic coordinates, and topocentric look angles from a ground station.
//
// Times are UTC Julian dates in two parts; UT1 is taken as UTC plus `dut1` seconds (0 unless
// the caller knows better: |UT1-UTC| < 0.9 s moves a ground track by up to 0.42 km).
#pragma once

#include "skyrelay/orbit/sgp4.hpp"

namespace skyrelay::orbit {

inline constexpr double wgs84_a_km = 6378.137;
inline constexpr double wgs84_f = 1.0 / 298.257223563;
inline constexpr double earth_rotation_rad_s = 7.292115146706979e-5;

struct geodetic {
  double latitude_rad{0};   // geodetic (normal to the ellipsoid)
  double longitude_rad{0};  // east positive, (-pi, pi]
  double altitude_km{0};    // above the ellipsoid
};

// TEME position and velocity to the earth-fixed frame (PEF, which is ITRF without polar
// motion): a rotation by GMST about z, and the frame's rotation taken off the velocity.
void teme_to_ecef(const state_vector& teme, double gmst, state_vector& ecef);

geodetic ecef_to_geodetic(const double r[3]);
void geodetic_to_ecef(const geodetic& g, double r[3]);

// A ground station with what look-angle computations reuse.
struct site {
  geodetic where;
  double ecef[3];
  double sin_lat, cos_lat, sin_lon, cos_lon;
  double min_elevation_rad{0};
};
site make_site(double latitude_deg, double longitude_deg, double altitude_km,
               double min_elevation_deg = 0.0);

struct look_angles {
  double azimuth_rad;        // from north through east, [0, 2pi)
  double elevation_rad;
  double range_km;
  double range_rate_km_s;    // positive when receding
  double elevation_rate_rad_s;
};

// Look angles of an earth-fixed state from a site.
look_angles look_from(const site& s, const state_vector& ecef);

// UT1 Julian date as one double (for GMST): the whole part plus the fraction and dut1.
inline double ut1_jd(double jd, double fr, double dut1_s) { return jd + (fr + dut1_s / 86400.0); }

}  // namespace skyrelay::orbit
