// Internal: the interface between the propagator and the batch kernels in sgp4_batch.cpp,
// which is compiled once per instruction set into namespaces v4 (AVX-512), v3 (AVX2 + FMA) and
// generic; batch_dispatch.cpp chooses by what the CPU supports.
#pragma once

#include <cstddef>
#include <cstdint>

#include "skyrelay/orbit/sgp4.hpp"

namespace skyrelay::orbit {

// What the kernels read, copied out of the propagator once per call.
struct batch_coefficients {
  double mo, mdot, argpo, argpdot, nodeo, nodedot, nodecf, cc1, cc4, cc5, bstar, t2cof;
  double omgcof, eta, xmcof, delmo, d2, d3, d4, sinmao, t3cof, t4cof, t5cof;
  double a0, cbrt0, no, ecco, inclo, aycof, xlcof, xke, j2, j3oj2, sinio, cosio;
  double radius, vkmpersec, gsto;
  int kepler_steps;
  bool afspc;
};

struct batch_kind {
  bool deep, simple, low_inclination;
  int irez;
};

#define SKYRELAY_DECLARE_BATCH(ns)                                                                 \
  namespace ns {                                                                                   \
  void run_batch(const batch_coefficients& k, const sgp4::deep_terms& ds, const batch_kind& kind, \
                 const double* tsince, std::size_t n, double* r, double* v, std::int8_t* err);     \
  }
SKYRELAY_DECLARE_BATCH(generic)
#if defined(__x86_64__)
SKYRELAY_DECLARE_BATCH(v3)
SKYRELAY_DECLARE_BATCH(v4)
#endif
#undef SKYRELAY_DECLARE_BATCH

}  // namespace skyrelay::orbit
