// libFuzzer target: TLE text and OMM JSON parsing, then propagation of whatever parsed, on the
// scalar and the batch paths (the propagator must return error codes, never crash or trip
// UBSan, for any elements a parser accepts).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "skyrelay/orbit/elements.hpp"
#include "skyrelay/orbit/frames.hpp"
#include "skyrelay/orbit/sgp4.hpp"

using namespace skyrelay::orbit;

namespace {
void exercise(const elements& e) {
  for (auto mode : {opsmode::improved, opsmode::afspc}) {
    sgp4 p(e, gravity_model::wgs72, mode);
    resonance_state rs;
    for (double t : {0.0, 90.0, -1440.0, 10080.0}) {
      state_vector sv;
      if (p.propagate(t, sv, &rs) == sgp4_error::none) {
        state_vector ecef;
        teme_to_ecef(sv, gmst82(e.epoch_jd + e.epoch_fr), ecef);
        (void)ecef_to_geodetic(ecef.r);
      }
    }
    // The vectorised path over the same times (it must not crash where the scalar one errs).
    const double ts[] = {0.0, 90.0, -1440.0, 10080.0, 1e5};
    double r[15], v[15];
    std::int8_t err[5];
    p.propagate_batch(ts, 5, r, v, err);
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto file = parse_tle_text(text);
  for (std::size_t i = 0; i < file.sets.size() && i < 4; ++i) exercise(file.sets[i]);
  auto omm = parse_omm(text);
  if (omm.value) exercise(*omm.value);
  return 0;
}
