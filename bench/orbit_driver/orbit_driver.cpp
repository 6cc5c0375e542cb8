// Not a test: the orbit kernels alone on gpredict's catalogue, for before/after comparisons of
// our own code on a shared machine (thread CPU time, and instruction counts under callgrind).
//
//   orbit_driver SATELLITES.DAT LOCATIONS.DAT [sgp4|passes|both] [ROUNDS]
//
// sgp4:   every satellite x 1,440 one-minute steps from 2018-01-22 (bench/run_orbit.py's grid),
//         through sgp4::propagate_batch into buffers allocated once;
// passes: find_passes on one thread, the catalogue x 20 stations (every len/20-th place of
//         locations.dat, mask 5 degrees, as bench/run_orbit.py picks them) x 1 day.
// Prints the least thread CPU time of ROUNDS runs (default 5) and what was computed, so two
// builds can be checked to agree (pass count, summed times and elevations).
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "skyrelay/orbit/elements.hpp"
#include "skyrelay/orbit/frames.hpp"
#include "skyrelay/orbit/passes.hpp"
#include "skyrelay/orbit/sgp4.hpp"

namespace so = skyrelay::orbit;

namespace {

double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

std::string read_all(const char* path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "cannot read %s\n", path);
    std::exit(2);
  }
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// gpredict's satellites.dat: INI sections with NAME=, TLE1= and TLE2= keys.
std::vector<so::elements> load_catalogue(const char* path) {
  std::istringstream in(read_all(path));
  std::vector<so::elements> out;
  std::string line, name, l1, l2;
  auto flush = [&] {
    if (!l1.empty() && !l2.empty()) {
      auto p = so::parse_tle(l1, l2, name);
      if (p.value) out.push_back(*p.value);
    }
    name.clear(); l1.clear(); l2.clear();
  };
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty() && line[0] == '[') flush();
    else if (line.rfind("NAME=", 0) == 0) name = line.substr(5);
    else if (line.rfind("TLE1=", 0) == 0) l1 = line.substr(5);
    else if (line.rfind("TLE2=", 0) == 0) l2 = line.substr(5);
  }
  flush();
  return out;
}

// locations.dat: fields separated by ';', latitude, longitude and altitude (m) in 4, 5 and 6.
std::vector<so::site> load_stations(const char* path, std::size_t count) {
  std::istringstream in(read_all(path));
  std::vector<std::vector<std::string>> places;
  std::string line;
  while (std::getline(in, line)) {
    if (std::count(line.begin(), line.end(), ';') < 6) continue;
    std::vector<std::string> f;
    std::string field;
    std::istringstream ls(line);
    while (std::getline(ls, field, ';')) f.push_back(field);
    places.push_back(f);
  }
  std::vector<so::site> out;
  const std::size_t stride = std::max<std::size_t>(1, places.size() / count);
  for (std::size_t i = 0; i < places.size() && out.size() < count; i += stride) {
    const auto& f = places[i];
    const double alt_m = f.size() > 6 && !f[6].empty() ? std::atof(f[6].c_str()) : 0.0;
    out.push_back(so::make_site(std::atof(f[4].c_str()), std::atof(f[5].c_str()), alt_m / 1000.0, 5.0));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s SATELLITES.DAT LOCATIONS.DAT [sgp4|passes|both] [ROUNDS]\n", argv[0]);
    return 2;
  }
  const std::string what = argc > 3 ? argv[3] : "both";
  const int rounds = argc > 4 ? std::max(1, std::atoi(argv[4])) : 5;
  const auto cat = load_catalogue(argv[1]);
  std::vector<std::unique_ptr<so::sgp4>> props;
  for (const auto& e : cat) props.push_back(std::make_unique<so::sgp4>(e));
  double jd0, fr0;
  so::julian_date(2018, 1, 22, 0, 0, 0.0, jd0, fr0);

  if (what == "sgp4" || what == "both") {
    constexpr std::size_t steps = 1440;
    std::vector<double> r(props.size() * steps * 3), v(r.size()), ts(steps);
    std::vector<std::int8_t> err(props.size() * steps);
    double best = 1e30, sum = 0;
    for (int k = 0; k < rounds; ++k) {
      const double t0 = thread_cpu_s();
      for (std::size_t i = 0; i < props.size(); ++i) {
        const auto& p = *props[i];
        for (std::size_t j = 0; j < steps; ++j) ts[j] = p.minutes_since_epoch(jd0, fr0 + j / 1440.0);
        p.propagate_batch(ts.data(), steps, &r[i * steps * 3], &v[i * steps * 3], &err[i * steps]);
      }
      best = std::min(best, thread_cpu_s() - t0);
    }
    for (double x : r) if (x == x) sum += x;
    std::printf("sgp4: %zu satellites x %zu steps: %.2f ms thread CPU (least of %d), %.1f ns per "
                "propagation; checksum %.9e\n",
                props.size(), steps, best * 1e3, rounds, best * 1e9 / (props.size() * steps), sum);
  }
  if (what == "passes" || what == "both") {
    const auto stations = load_stations(argv[2], 20);
    std::vector<const so::sgp4*> ptrs;
    for (const auto& p : props) ptrs.push_back(p.get());
    const double start = 1516579200.0;  // 2018-01-22T00:00:00Z
    double best = 1e30;
    std::vector<so::pass_window> found;
    for (int k = 0; k < rounds; ++k) {
      const double t0 = thread_cpu_s();
      found = so::find_passes(ptrs, stations, start, start + 86400.0, {0.0, 1});
      best = std::min(best, thread_cpu_s() - t0);
    }
    if (const char* dump = std::getenv("ORBIT_DRIVER_DUMP")) {  // one pass per line, for comparing builds
      if (FILE* f = std::fopen(dump, "w")) {
        for (const auto& p : found)
          std::fprintf(f, "%zu %zu %.6f %.6f %.6f %.7f %.5f %.5f %.5f %d %d\n", p.satellite, p.station, p.aos, p.culmination,
                       p.los, p.max_elevation_deg, p.aos_azimuth_deg, p.culmination_azimuth_deg, p.los_azimuth_deg,
                       p.starts_before, p.ends_after);
        std::fclose(f);
      }
    }
    double st = 0, se = 0;
    for (const auto& p : found) {
      st += (p.aos - start) + (p.los - start) + (p.culmination - start);
      se += p.max_elevation_deg;
    }
    std::printf("passes: %zu satellites x %zu stations x 1 day: %.2f ms thread CPU (least of %d), %.2f us "
                "per satellite-station-day; %zu passes, summed times %.6f s, summed max elevations %.6f deg\n",
                props.size(), stations.size(), best * 1e3, rounds,
                best * 1e6 / static_cast<double>(props.size() * stations.size()), found.size(), st, se);
  }
  return 0;
}
