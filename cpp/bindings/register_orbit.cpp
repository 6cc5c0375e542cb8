// Bindings for the orbit module: element parsing, SGP4 propagation over numpy arrays, frames,
// look angles and pass search. Everything that loops runs without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "errors.hpp"
#include "skyrelay/orbit/elements.hpp"
#include "skyrelay/orbit/frames.hpp"
#include "skyrelay/orbit/passes.hpp"
#include "skyrelay/orbit/positions_json.hpp"
#include "skyrelay/orbit/sgp4.hpp"

namespace py = pybind11;

namespace skyrelay::bindings {
namespace {

using namespace skyrelay::orbit;
using darray = py::array_t<double, py::array::c_style | py::array::forcecast>;

gravity_model gravity_of(const std::string& name) {
  if (name == "wgs72") return gravity_model::wgs72;
  if (name == "wgs72old") return gravity_model::wgs72old;
  if (name == "wgs84") return gravity_model::wgs84;
  throw py::value_error("gravity must be 'wgs72', 'wgs72old' or 'wgs84', not '" + name + "'");
}

opsmode opsmode_of(const std::string& name) {
  if (name == "i" || name == "improved") return opsmode::improved;
  if (name == "a" || name == "afspc") return opsmode::afspc;
  throw py::value_error("opsmode must be 'i' (improved) or 'a' (afspc), not '" + name + "'");
}

// Runs f(i) for i in [0, n) on up to `threads` threads (0: all cores). `work` is the number of
// elementary steps in all (propagations, say): below about 100,000 a thread costs more to start
// than it saves, so the call stays on the caller's thread. Threads take indices in chunks.
template <class F>
void parallel_for(std::size_t n, unsigned threads, F&& f, std::size_t work = SIZE_MAX) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<std::size_t>({threads, n, std::max<std::size_t>(1, work / 100000)}));
  if (threads <= 1) {
    for (std::size_t i = 0; i < n; ++i) f(i);
    return;
  }
  constexpr std::size_t chunk = 8;
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> pool;
  for (unsigned k = 0; k < threads; ++k)
    pool.emplace_back([&] {
      for (std::size_t i; (i = next.fetch_add(chunk)) < n;)
        for (std::size_t j = i; j < std::min(n, i + chunk); ++j) f(j);
    });
  for (auto& t : pool) t.join();
}

void check_times(const darray& jd, const darray& fr) {
  if (jd.ndim() != 1 || fr.ndim() != 1 || jd.shape(0) != fr.shape(0))
    throw py::value_error("jd and fr must be one-dimensional arrays of the same length");
}

py::dict elements_dict(const elements& e) {
  py::dict d;
  d["name"] = e.name;
  d["satnum"] = e.satnum;
  d["catalog_number"] = e.catalog_number;
  d["classification"] = std::string(1, e.classification);
  d["intl_designator"] = e.intl_designator;
  d["epoch_year"] = e.epoch_year;
  d["epoch_days"] = e.epoch_days;
  d["epoch_jd"] = e.epoch_jd;
  d["epoch_fr"] = e.epoch_fr;
  d["ndot"] = e.ndot;
  d["nddot"] = e.nddot;
  d["bstar"] = e.bstar;
  d["ephemeris_type"] = e.ephemeris_type;
  d["element_number"] = e.element_number;
  d["inclination_deg"] = e.inclination_deg;
  d["raan_deg"] = e.raan_deg;
  d["eccentricity"] = e.eccentricity;
  d["arg_perigee_deg"] = e.arg_perigee_deg;
  d["mean_anomaly_deg"] = e.mean_anomaly_deg;
  d["mean_motion"] = e.mean_motion;
  d["rev_number"] = e.rev_number;
  return d;
}

// A propagator with the elements it came from.
struct py_sgp4 {
  elements el;
  sgp4 prop;
  py_sgp4(const elements& e, const std::string& g, const std::string& m)
      : el(e), prop(e, gravity_of(g), opsmode_of(m)) {}
};

py::tuple propagate_many(const std::vector<std::shared_ptr<py_sgp4>>& sats, const darray& jd,
                         const darray& fr, unsigned threads) {
  check_times(jd, fr);
  const std::size_t n = sats.size(), m = static_cast<std::size_t>(jd.shape(0));
  py::array_t<double> r({n, m, std::size_t{3}}), v({n, m, std::size_t{3}});
  py::array_t<std::int8_t> err({n, m});
  const double* pj = jd.data();
  const double* pf = fr.data();
  double* pr = r.mutable_data();
  double* pv = v.mutable_data();
  std::int8_t* pe = err.mutable_data();
  std::vector<const sgp4*> props;
  for (const auto& s : sats) props.push_back(&s->prop);
  {
    py::gil_scoped_release nogil;
    parallel_for(
        n, threads,
        [&](std::size_t i) {
          const sgp4& p = *props[i];
          std::vector<double> tsince(m);
          for (std::size_t j = 0; j < m; ++j) tsince[j] = p.minutes_since_epoch(pj[j], pf[j]);
          p.propagate_batch(tsince.data(), m, pr + i * m * 3, pv + i * m * 3, pe + i * m);
        },
        n * m);
  }
  return py::make_tuple(r, v, err);
}

// TEME positions (..., 3) at times (the leading shape's last axis) to geodetic arrays.
py::tuple teme_to_geodetic(const darray& r, const darray& jd, const darray& fr, double dut1) {
  check_times(jd, fr);
  if (r.ndim() < 2 || r.shape(r.ndim() - 1) != 3 || r.shape(r.ndim() - 2) != jd.shape(0))
    throw py::value_error("positions must have shape (..., len(times), 3)");
  const std::size_t m = static_cast<std::size_t>(jd.shape(0));
  const std::size_t total = static_cast<std::size_t>(r.size() / 3);
  std::vector<py::ssize_t> shape(r.shape(), r.shape() + r.ndim() - 1);
  py::array_t<double> lat(shape), lon(shape), alt(shape);
  const double* pr = r.data();
  const double* pj = jd.data();
  const double* pf = fr.data();
  double *pa = lat.mutable_data(), *po = lon.mutable_data(), *ph = alt.mutable_data();
  {
    py::gil_scoped_release nogil;
    std::vector<double> theta(m);
    for (std::size_t j = 0; j < m; ++j) theta[j] = gmst82(ut1_jd(pj[j], pf[j], dut1));
    for (std::size_t i = 0; i < total; ++i) {
      state_vector teme{{pr[3 * i], pr[3 * i + 1], pr[3 * i + 2]}, {0, 0, 0}}, ecef;
      teme_to_ecef(teme, theta[i % m], ecef);
      const geodetic g = ecef_to_geodetic(ecef.r);
      pa[i] = g.latitude_rad * 180.0 / M_PI;
      po[i] = g.longitude_rad * 180.0 / M_PI;
      ph[i] = g.altitude_km;
    }
  }
  return py::make_tuple(lat, lon, alt);
}

py::tuple teme_to_ecef_arrays(const darray& r, const darray& v, const darray& jd, const darray& fr, double dut1) {
  check_times(jd, fr);
  if (r.ndim() != 2 || r.shape(1) != 3 || r.shape(0) != jd.shape(0) || v.ndim() != 2 || v.shape(0) != r.shape(0) ||
      v.shape(1) != 3)
    throw py::value_error("positions and velocities must have shape (len(times), 3)");
  const std::size_t m = static_cast<std::size_t>(jd.shape(0));
  py::array_t<double> ro({m, std::size_t{3}}), vo({m, std::size_t{3}});
  const double *pr = r.data(), *pv = v.data(), *pj = jd.data(), *pf = fr.data();
  double *qr = ro.mutable_data(), *qv = vo.mutable_data();
  {
    py::gil_scoped_release nogil;
    for (std::size_t j = 0; j < m; ++j) {
      state_vector teme{{pr[3 * j], pr[3 * j + 1], pr[3 * j + 2]}, {pv[3 * j], pv[3 * j + 1], pv[3 * j + 2]}}, ecef;
      teme_to_ecef(teme, gmst82(ut1_jd(pj[j], pf[j], dut1)), ecef);
      for (int c = 0; c < 3; ++c) {
        qr[3 * j + c] = ecef.r[c];
        qv[3 * j + c] = ecef.v[c];
      }
    }
  }
  return py::make_tuple(ro, vo);
}

py::tuple look_angles_arrays(const darray& r, const darray& v, const darray& jd, const darray& fr, double lat,
                             double lon, double alt, double dut1) {
  const py::tuple converted = teme_to_ecef_arrays(r, v, jd, fr, dut1);
  const auto re = converted[0].cast<darray>();
  const auto ve = converted[1].cast<darray>();
  const std::size_t m = static_cast<std::size_t>(jd.shape(0));
  py::array_t<double> az(m), el(m), range(m), rate(m);
  const double *pr = re.data(), *pv = ve.data();
  double *qa = az.mutable_data(), *qe = el.mutable_data(), *qr = range.mutable_data(), *qd = rate.mutable_data();
  const site s = make_site(lat, lon, alt);
  {
    py::gil_scoped_release nogil;
    for (std::size_t j = 0; j < m; ++j) {
      state_vector ecef{{pr[3 * j], pr[3 * j + 1], pr[3 * j + 2]}, {pv[3 * j], pv[3 * j + 1], pv[3 * j + 2]}};
      const look_angles la = look_from(s, ecef);
      qa[j] = la.azimuth_rad * 180.0 / M_PI;
      qe[j] = la.elevation_rad * 180.0 / M_PI;
      qr[j] = la.range_km;
      qd[j] = la.range_rate_km_s;
    }
  }
  return py::make_tuple(az, el, range, rate);
}

using station_spec = std::tuple<double, double, double, double>;  // lat, lon, alt km, mask deg

// The pass search without the GIL.
std::vector<pass_window> search(const std::vector<std::shared_ptr<py_sgp4>>& sats,
                                const std::vector<station_spec>& stations, double start, double end,
                                double dut1, unsigned threads) {
  std::vector<const sgp4*> props;
  for (const auto& s : sats) props.push_back(&s->prop);
  std::vector<site> sites;
  for (const auto& [lat, lon, alt, mask] : stations) sites.push_back(make_site(lat, lon, alt, mask));
  py::gil_scoped_release nogil;
  return find_passes(props, sites, start, end, {dut1, threads});
}

// The same, unordered, with the order (find_passes_unordered).
std::vector<pass_window> search_unordered(const std::vector<std::shared_ptr<py_sgp4>>& sats,
                                          const std::vector<station_spec>& stations, double start, double end,
                                          double dut1, unsigned threads, std::vector<std::uint32_t>& order) {
  std::vector<const sgp4*> props;
  for (const auto& s : sats) props.push_back(&s->prop);
  std::vector<site> sites;
  for (const auto& [lat, lon, alt, mask] : stations) sites.push_back(make_site(lat, lon, alt, mask));
  py::gil_scoped_release nogil;
  return find_passes_unordered(props, sites, start, end, {dut1, threads}, order);
}

py::list passes(const std::vector<std::shared_ptr<py_sgp4>>& sats, const std::vector<station_spec>& stations,
                double start, double end, double dut1, unsigned threads) {
  const std::vector<pass_window> found = search(sats, stations, start, end, dut1, threads);
  py::list out;
  for (const auto& p : found)
    out.append(py::make_tuple(p.satellite, p.station, p.aos, p.culmination, p.los, p.max_elevation_deg,
                              p.aos_azimuth_deg, p.culmination_azimuth_deg, p.los_azimuth_deg,
                              p.culmination_range_km, p.duration_s, p.quality, p.starts_before, p.ends_after));
  return out;
}

// The same passes as columns (numpy arrays), for many satellites and stations at once. With
// times_ns the AOS, culmination and LOS columns are datetime64[ns] (the seconds times 1e9, rounded
// half to even as numpy's round does), which is what pass_table wants: converting them in Python
// cost three temporaries per column.
py::dict pass_columns(const std::vector<std::shared_ptr<py_sgp4>>& sats, const std::vector<station_spec>& stations,
                      double start, double end, double dut1, unsigned threads, bool times_ns) {
  // The windows are read in AOS order through `order` (independent loads, prefetched a few
  // ahead), not put in order first.
  std::vector<std::uint32_t> order;
  const std::vector<pass_window> found = search_unordered(sats, stations, start, end, dut1, threads, order);
  const std::size_t n = found.size();
  py::array_t<std::int64_t> sat(n), sta(n);
  // Nanoseconds as int64, viewed as datetime64[ns] once written (below).
  auto time_column = [&]() -> py::array {
    if (times_ns) return py::array_t<std::int64_t>(n);
    return py::array_t<double>(n);
  };
  py::array aos = time_column(), tca = time_column(), los = time_column();
  py::array_t<double> el(n), aaz(n), taz(n), laz(n), rng(n), dur(n), q(n);
  py::array_t<bool> before(n), after(n);
  auto* p_sat = sat.mutable_data();
  auto* p_sta = sta.mutable_data();
  double* cols[] = {el.mutable_data(), aaz.mutable_data(), taz.mutable_data(), laz.mutable_data(),
                    rng.mutable_data(), dur.mutable_data(), q.mutable_data()};
  void* times[] = {aos.mutable_data(), tca.mutable_data(), los.mutable_data()};
  bool* p_before = before.mutable_data();
  bool* p_after = after.mutable_data();
  for (std::size_t i = 0; i < n; ++i) {
    if (i + 8 < n) {
      const char* ahead = reinterpret_cast<const char*>(&found[order[i + 8]]);
      __builtin_prefetch(ahead);
      __builtin_prefetch(ahead + sizeof(pass_window) - 1);
    }
    const auto& p = found[order[i]];
    p_sat[i] = static_cast<std::int64_t>(p.satellite);
    p_sta[i] = static_cast<std::int64_t>(p.station);
    const double seconds[] = {p.aos, p.culmination, p.los};
    for (int c = 0; c < 3; ++c) {
      if (times_ns)
        static_cast<std::int64_t*>(times[c])[i] = static_cast<std::int64_t>(std::nearbyint(seconds[c] * 1e9));
      else
        static_cast<double*>(times[c])[i] = seconds[c];
    }
    const double values[] = {p.max_elevation_deg, p.aos_azimuth_deg, p.culmination_azimuth_deg, p.los_azimuth_deg,
                             p.culmination_range_km, p.duration_s, p.quality};
    for (int c = 0; c < 7; ++c) cols[c][i] = values[c];
    p_before[i] = p.starts_before;
    p_after[i] = p.ends_after;
  }
  if (times_ns)
    for (py::array* c : {&aos, &tca, &los}) *c = c->attr("view")("datetime64[ns]");
  py::dict d;
  d["satellite"] = sat;
  d["ground_station"] = sta;
  d["aos"] = aos;
  d["culmination"] = tca;
  d["los"] = los;
  d["max_elevation"] = el;
  d["aos_azimuth"] = aaz;
  d["culmination_azimuth"] = taz;
  d["los_azimuth"] = laz;
  d["culmination_range_km"] = rng;
  d["duration_s"] = dur;
  d["quality"] = q;
  d["starts_before"] = before;
  d["ends_after"] = after;
  return d;
}

// Element sets from TLE lines, TLE files and OMM JSON, and sidereal time.
void def_parsers(py::module_& o) {
  o.def("parse_tle",
        [](const std::string& l1, const std::string& l2, const std::string& name) {
          auto r = parse_tle(l1, l2, name);
          const bool line1_ok = r.checksum_ok[0], line2_ok = r.checksum_ok[1];
          return py::make_tuple(elements_dict(value_or_raise(std::move(r))), line1_ok, line2_ok);
        },
        py::arg("line1"), py::arg("line2"), py::arg("name") = "");
  o.def("parse_tle_text",
        [](const std::string& text) {
          tle_file f;
          {
            py::gil_scoped_release nogil;
            f = parse_tle_text(text);
          }
          py::list sets;
          for (const auto& e : f.sets) sets.append(elements_dict(e));
          return py::make_tuple(sets, f.errors, f.checksum_warnings);
        },
        py::arg("text"));
  o.def("load_tle_text",
        [](const std::string& text, const std::string& gravity, const std::string& mode) {
          tle_file f;
          {
            py::gil_scoped_release nogil;
            f = parse_tle_text(text);
          }
          std::vector<std::shared_ptr<py_sgp4>> sats;
          for (const auto& e : f.sets) sats.push_back(std::make_shared<py_sgp4>(e, gravity, mode));
          return py::make_tuple(sats, f.errors, f.checksum_warnings);
        },
        py::arg("text"), py::arg("gravity") = "wgs72", py::arg("opsmode") = "i");
  o.def("parse_omm",
        [](const std::string& json) {
          return elements_dict(value_or_raise(parse_omm(json)));
        },
        py::arg("json"));
  o.def("gmst82", [](const darray& jd) {
    auto out = py::array_t<double>(jd.request().shape);
    const double* p = jd.data();
    double* q = out.mutable_data();
    for (py::ssize_t i = 0; i < jd.size(); ++i) q[i] = gmst82(p[i]);
    return out;
  });
}

// The propagator of one satellite.
void def_sgp4(py::module_& o) {
  py::class_<py_sgp4, std::shared_ptr<py_sgp4>>(o, "Sgp4")
      .def(py::init([](const std::string& l1, const std::string& l2, const std::string& name,
                       const std::string& gravity, const std::string& mode) {
             return std::make_shared<py_sgp4>(value_or_raise(parse_tle(l1, l2, name)), gravity,
                                              mode);
           }),
           py::arg("line1"), py::arg("line2"), py::arg("name") = "", py::arg("gravity") = "wgs72",
           py::arg("opsmode") = "i")
      .def_static("from_omm",
                  [](const std::string& json, const std::string& gravity, const std::string& mode) {
                    return std::make_shared<py_sgp4>(value_or_raise(parse_omm(json)), gravity,
                                                     mode);
                  },
                  py::arg("json"), py::arg("gravity") = "wgs72", py::arg("opsmode") = "i")
      .def_property_readonly("elements", [](const py_sgp4& s) { return elements_dict(s.el); })
      .def_property_readonly("init_error", [](const py_sgp4& s) { return static_cast<int>(s.prop.init_error()); })
      .def_property_readonly("deep_space", [](const py_sgp4& s) { return s.prop.deep_space(); })
      .def_property_readonly("mean_motion_rad_min", [](const py_sgp4& s) { return s.prop.mean_motion_rad_min(); })
      .def("propagate_tsince",
           [](const py_sgp4& s, double t) {
             state_vector sv;
             const int e = static_cast<int>(s.prop.propagate(t, sv));
             return py::make_tuple(e, py::make_tuple(sv.r[0], sv.r[1], sv.r[2]),
                                   py::make_tuple(sv.v[0], sv.v[1], sv.v[2]));
           },
           py::arg("tsince"))
      .def("propagate",
           [](const std::shared_ptr<py_sgp4>& s, const darray& jd, const darray& fr) {
             auto t = propagate_many({s}, jd, fr, 1);
             auto r = t[0].cast<py::array_t<double>>();
             auto v = t[1].cast<py::array_t<double>>();
             auto e = t[2].cast<py::array_t<std::int8_t>>();
             const py::ssize_t m = jd.shape(0);
             return py::make_tuple(r.reshape({m, py::ssize_t{3}}), v.reshape({m, py::ssize_t{3}}), e.reshape({m}));
           },
           py::arg("jd"), py::arg("fr"));
}

// Array functions over many satellites and times.
void def_arrays(py::module_& o) {
  o.def("propagate_many", &propagate_many, py::arg("satellites"), py::arg("jd"), py::arg("fr"),
        py::arg("threads") = 0);
  o.def("teme_to_geodetic", &teme_to_geodetic, py::arg("r"), py::arg("jd"), py::arg("fr"), py::arg("dut1") = 0.0);
  o.def("teme_to_ecef", &teme_to_ecef_arrays, py::arg("r"), py::arg("v"), py::arg("jd"), py::arg("fr"),
        py::arg("dut1") = 0.0);
  o.def("look_angles", &look_angles_arrays, py::arg("r"), py::arg("v"), py::arg("jd"), py::arg("fr"),
        py::arg("latitude"), py::arg("longitude"), py::arg("altitude_km"), py::arg("dut1") = 0.0);
  o.def("find_passes", &passes, py::arg("satellites"), py::arg("stations"), py::arg("start"), py::arg("end"),
        py::arg("dut1") = 0.0, py::arg("threads") = 0);
  o.def("find_pass_columns", &pass_columns, py::arg("satellites"), py::arg("stations"), py::arg("start"),
        py::arg("end"), py::arg("dut1") = 0.0, py::arg("threads") = 0, py::arg("times_ns") = false);
  o.def("describe_error", [](int code) { return std::string(describe(static_cast<sgp4_error>(code))); });
  // The tracker's satellite_positions message (docs/tracker.md), written without the GIL.
  py::class_<positions_encoder>(o, "PositionsEncoder")
      .def(py::init<std::vector<std::string>>(), py::arg("heads"))
      .def("__len__", &positions_encoder::size)
      .def("encode", [](const positions_encoder& enc, const darray& lat, const darray& lon, const darray& alt,
                        const std::string& timestamp_json) {
        const std::size_t n = enc.size();
        for (const darray* a : {&lat, &lon, &alt})
          if (a->ndim() != 1 || static_cast<std::size_t>(a->shape(0)) != n)
            throw py::value_error("latitude, longitude and altitude must be 1-d with one value per satellite");
        std::string text;
        {
          py::gil_scoped_release nogil;
          text = enc.encode(lat.data(), lon.data(), alt.data(), n, timestamp_json);
        }
        return py::bytes(text);
      }, py::arg("latitude"), py::arg("longitude"), py::arg("altitude_km"), py::arg("timestamp_json"));
}

}  // namespace

void register_orbit(py::module_& m) {
  auto o = m.def_submodule("orbit", "SGP4/SDP4, frames and pass prediction");
  def_parsers(o);
  def_sgp4(o);
  def_arrays(o);
}

}  // namespace skyrelay::bindings
