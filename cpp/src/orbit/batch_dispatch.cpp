// sgp4::propagate_batch: fills the kernel's coefficients and calls the kernel built for the
// best instruction set this CPU has.
#include <cmath>
#include <limits>
#include <numbers>

#include "batch.hpp"

namespace skyrelay::orbit {
namespace {

using kernel = void (*)(const batch_coefficients&, const sgp4::deep_terms&, const batch_kind&, const double*,
                        std::size_t, double*, double*, std::int8_t*);

kernel choose() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("bmi2"))
    return &v4::run_batch;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2"))
    return &v3::run_batch;
#endif
  return &generic::run_batch;
}

}  // namespace

void sgp4::propagate_batch(const double* tsince, std::size_t n, double* r, double* v, std::int8_t* err) const {
  if ((init_error_ != sgp4_error::none && init_error_ != sgp4_error::decayed &&
       init_error_ != sgp4_error::mean_eccentricity) ||
      ecco_ >= 0.98) {
    // The scalar path for elements that fail at epoch in the deep-space terms, and for
    // eccentricities so close to 1 that ten Newton steps do not settle Kepler's equation: there
    // the result hangs on the last bit of every sine, and only the same functions reproduce it.
    const double nan = std::numeric_limits<double>::quiet_NaN();
    resonance_state rs;
    for (std::size_t i = 0; i < n; ++i) {
      state_vector sv;
      const sgp4_error e = propagate(tsince[i], sv, &rs);
      for (int c = 0; c < 3; ++c) {
        r[3 * i + c] = e == sgp4_error::none ? sv.r[c] : nan;
        v[3 * i + c] = e == sgp4_error::none ? sv.v[c] : nan;
      }
      err[i] = static_cast<std::int8_t>(e);
    }
    return;
  }
  static const kernel run = choose();
  batch_coefficients k{};
  k.mo = mo_; k.mdot = mdot_; k.argpo = argpo_; k.argpdot = argpdot_; k.nodeo = nodeo_;
  k.nodedot = nodedot_; k.nodecf = nodecf_; k.cc1 = cc1_; k.cc4 = cc4_; k.cc5 = cc5_;
  k.bstar = bstar_; k.t2cof = t2cof_; k.omgcof = omgcof_; k.eta = eta_; k.xmcof = xmcof_;
  k.delmo = delmo_; k.d2 = d2_; k.d3 = d3_; k.d4 = d4_; k.sinmao = sinmao_; k.t3cof = t3cof_;
  k.t4cof = t4cof_; k.t5cof = t5cof_;
  k.a0 = std::pow(k_.xke / no_unkozai_, 2.0 / 3.0);
  k.cbrt0 = std::cbrt(k_.xke / no_unkozai_);
  k.no = no_unkozai_; k.ecco = ecco_; k.inclo = inclo_; k.aycof = aycof_; k.xlcof = xlcof_;
  k.xke = k_.xke; k.j2 = k_.j2; k.j3oj2 = k_.j3oj2;
  k.sinio = std::sin(inclo_); k.cosio = std::cos(inclo_);
  k.radius = k_.radius_km; k.vkmpersec = k_.radius_km * k_.xke / 60.0; k.gsto = gsto_;
  k.afspc = mode_ == opsmode::afspc;
  // Newton on Kepler's equation gains digits quadratically from an error of about e: enough
  // steps for the scalar loop's 1e-12 stop at each eccentricity, plus one; very eccentric orbits
  // get its cap of 10 (with its 0.95 rad clamp).
  k.kepler_steps = ecco_ < 0.002 ? 4 : ecco_ < 0.05 ? 5 : ecco_ < 0.25 ? 7 : 10;
  // Lyddane's low-inclination form can only be needed when the inclination can get near 0.2 rad:
  // the lunar-solar terms move it by hundredths of a radian at most.
  const batch_kind kind{deep_, isimp_, inclo_ < 0.35, ds_.irez};
  run(k, ds_, kind, tsince, n, r, v, err);
}

}  // namespace skyrelay::orbit
