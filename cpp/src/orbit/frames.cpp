#include "skyrelay/orbit/frames.hpp"

#include <cmath>
#include <numbers>

namespace skyrelay::orbit {
namespace {
constexpr double deg = std::numbers::pi / 180.0;
constexpr double e2 = wgs84_f * (2.0 - wgs84_f);  // first eccentricity squared
}  // namespace

void teme_to_ecef(const state_vector& teme, double gmst, state_vector& ecef) {
  const double c = std::cos(gmst), s = std::sin(gmst);
  ecef.r[0] = c * teme.r[0] + s * teme.r[1];
  ecef.r[1] = -s * teme.r[0] + c * teme.r[1];
  ecef.r[2] = teme.r[2];
  // v_ecef = R v_teme - omega x r_ecef
  ecef.v[0] = c * teme.v[0] + s * teme.v[1] + earth_rotation_rad_s * ecef.r[1];
  ecef.v[1] = -s * teme.v[0] + c * teme.v[1] - earth_rotation_rad_s * ecef.r[0];
  ecef.v[2] = teme.v[2];
}

geodetic ecef_to_geodetic(const double r[3]) {
  geodetic g;
  const double x = r[0], y = r[1], z = r[2];
  const double p = std::hypot(x, y);
  g.longitude_rad = std::atan2(y, x);
  // Fixed-point iteration on the latitude; from a start that assumes zero altitude it
  // converges to 1e-15 rad within a few rounds for any point outside the earth's core.
  double lat = std::atan2(z, p * (1.0 - e2));
  for (int i = 0; i < 10; ++i) {
    const double sl = std::sin(lat);
    const double n = wgs84_a_km / std::sqrt(1.0 - e2 * sl * sl);
    const double next = std::atan2(z + e2 * n * sl, p);
    if (std::fabs(next - lat) < 1e-15) { lat = next; break; }
    lat = next;
  }
  const double sl = std::sin(lat), cl = std::cos(lat);
  // Altitude along the normal; stable at the poles (no division by cos(lat)).
  g.latitude_rad = lat;
  g.altitude_km = p * cl + z * sl - wgs84_a_km * std::sqrt(1.0 - e2 * sl * sl);
  return g;
}

void geodetic_to_ecef(const geodetic& g, double r[3]) {
  const double sl = std::sin(g.latitude_rad), cl = std::cos(g.latitude_rad);
  const double n = wgs84_a_km / std::sqrt(1.0 - e2 * sl * sl);
  r[0] = (n + g.altitude_km) * cl * std::cos(g.longitude_rad);
  r[1] = (n + g.altitude_km) * cl * std::sin(g.longitude_rad);
  r[2] = (n * (1.0 - e2) + g.altitude_km) * sl;
}

site make_site(double latitude_deg, double longitude_deg, double altitude_km, double min_elevation_deg) {
  site s;
  s.where = {latitude_deg * deg, longitude_deg * deg, altitude_km};
  geodetic_to_ecef(s.where, s.ecef);
  s.sin_lat = std::sin(s.where.latitude_rad);
  s.cos_lat = std::cos(s.where.latitude_rad);
  s.sin_lon = std::sin(s.where.longitude_rad);
  s.cos_lon = std::cos(s.where.longitude_rad);
  s.min_elevation_rad = min_elevation_deg * deg;
  return s;
}

look_angles look_from(const site& s, const state_vector& ecef) {
  const double dx = ecef.r[0] - s.ecef[0], dy = ecef.r[1] - s.ecef[1], dz = ecef.r[2] - s.ecef[2];
  // East, north, up.
  const double e = -s.sin_lon * dx + s.cos_lon * dy;
  const double n = -s.sin_lat * s.cos_lon * dx - s.sin_lat * s.sin_lon * dy + s.cos_lat * dz;
  const double u = s.cos_lat * s.cos_lon * dx + s.cos_lat * s.sin_lon * dy + s.sin_lat * dz;
  const double ve = -s.sin_lon * ecef.v[0] + s.cos_lon * ecef.v[1];
  const double vn = -s.sin_lat * s.cos_lon * ecef.v[0] - s.sin_lat * s.sin_lon * ecef.v[1] + s.cos_lat * ecef.v[2];
  const double vu = s.cos_lat * s.cos_lon * ecef.v[0] + s.cos_lat * s.sin_lon * ecef.v[1] + s.sin_lat * ecef.v[2];
  const double h = std::hypot(e, n);
  const double rho = std::sqrt(h * h + u * u);
  look_angles out;
  out.azimuth_rad = std::atan2(e, n);
  if (out.azimuth_rad < 0) out.azimuth_rad += 2.0 * std::numbers::pi;
  out.elevation_rad = std::atan2(u, h);
  out.range_km = rho;
  out.range_rate_km_s = (e * ve + n * vn + u * vu) / rho;
  out.elevation_rate_rad_s = h > 0 ? (vu * rho - u * out.range_rate_km_s) / (rho * h) : 0.0;
  return out;
}

}  // namespace skyrelay::orbit
