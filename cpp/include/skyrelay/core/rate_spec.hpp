// A rate limit's setting: a token bucket's rate and size. A plain value of the configuration
// (config.hpp); the buckets themselves are in limits/.
#pragma once

namespace skyrelay {

struct rate_spec {
  double rate{0};   // tokens per second; 0: unlimited
  double burst{0};  // bucket size
};

}  // namespace skyrelay
