"""Orbit benchmark, side by side in one run on gpredict's 979-satellite catalogue:

* propagations per second: skyrelay.orbit.SatelliteArray against python-sgp4's SatrecArray
  (its C++ extension), one thread and all cores, catalogue x 1,440 one-minute steps;
* pass search time per satellite-station-day: skyrelay.orbit.pass_table (and passes) on the
  whole catalogue against Skyfield's EarthSatellite.find_events on every 20th satellite, 20
  stations from gpredict's locations.dat (mask 5 degrees), one day.

Each number is the median of --rounds runs. Accuracy is checked in the same run (largest
position difference from python-sgp4; pass count agreement with Skyfield). With --clock cpu the
one-thread figures, of both sides, are the calling thread's CPU time instead of elapsed time:
on a shared machine, where other work takes the core away now and then, that is the steadier
measure (the all-cores figures stay elapsed time).

    make gpredict-data && .venv/bin/python bench/run_orbit.py

The one-thread ratios are taken in --pair-rounds rounds (5 by default): each times ours
(median of --rounds), theirs (SatrecArray: median of --rounds; Skyfield: its whole sample once),
then ours again, and gives theirs over the mean of the two of ours around it; the ratio
reported is the median of the rounds' ratios. This machine's speed swings by up to a quarter over seconds (the
host's, not the load average's), so a ratio is only as good as the closeness in time of its
two sides: until 2026-12-07 Skyfield was timed once, after every skyrelay figure, and single
runs on an idle machine gave 746x to 1,239x for one build.

--baseline DIR (a copy of another build's site-packages/skyrelay, in DIR/skyrelay) times that
build's one-thread pass_table too, in a child process with DIR first on its path, right after
ours in the same run and by the same clock, and reports both against the same Skyfield figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

import harness

sys.path.insert(0, str(harness.ROOT / "tests/python"))

from orbit_data import GPREDICT, gpredict_catalogue  # noqa: E402

from skyrelay import orbit  # noqa: E402


def median_time(fn, rounds: int, clock=time.perf_counter) -> float:
    fn()  # warm-up: first-call costs (imports, page faults of a first allocation) are not measured
    times = []
    for _ in range(rounds):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times)


def pick_stations(count: int) -> list:
    """Every len/N-th place of gpredict's locations.dat (airports on every continent), mask 5 degrees."""
    places = [line.split(";") for line in (GPREDICT.parents[1] / "locations.dat").read_text(
        encoding="utf-8", errors="replace").splitlines() if line.count(";") >= 6]
    picks = places[:: max(1, len(places) // count)][:count]
    return [orbit.GroundStation(p[2].strip() or p[3], float(p[4]), float(p[5]), float(p[6] or 0) / 1000.0, 5.0)
            for p in picks]


PASS_START, PASS_HOURS = "2018-01-22T00:00:00Z", 24


def table_only(args, one) -> int:
    """The child of --baseline: this build's one-thread pass_table, microseconds per satellite-station-day."""
    ours = orbit.SatelliteArray(orbit.Satellite.from_tle(l1, l2, n) for n, l1, l2 in gpredict_catalogue())
    stations = pick_stations(args.stations)
    t = median_time(lambda: orbit.pass_table(ours, stations, PASS_START, hours=PASS_HOURS, threads=1), args.rounds, one)
    print(json.dumps({"us": t / (len(ours) * len(stations)) * 1e6, "module": orbit.__file__}))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1440, help="one-minute steps per satellite")
    ap.add_argument("--pass-sample", type=int, default=20, help="every Nth satellite for Skyfield")
    ap.add_argument("--pair-rounds", type=int, default=5,
                    help="rounds of ours, theirs, ours for each one-thread ratio (see above)")
    ap.add_argument("--stations", type=int, default=20, help="ground stations from gpredict's locations.dat")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="one-thread figures by elapsed time or by the thread's CPU time")
    ap.add_argument("--baseline", help="DIR holding another build's skyrelay package (see above)")
    ap.add_argument("--table-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    one = time.thread_time if args.clock == "cpu" else time.perf_counter
    if args.table_only:
        return table_only(args, one)

    from sgp4.api import SatrecArray, Satrec, accelerated
    from skyfield.api import EarthSatellite, load, wgs84

    cat = gpredict_catalogue()
    ours = orbit.SatelliteArray(orbit.Satellite.from_tle(l1, l2, n) for n, l1, l2 in cat)
    theirs = SatrecArray([Satrec.twoline2rv(l1, l2) for _, l1, l2 in cat])
    times = np.datetime64("2018-01-22") + np.arange(args.steps) * np.timedelta64(1, "m")
    jd, fr = orbit.julian_dates(times)
    n_props = len(cat) * args.steps
    cores = os.cpu_count() or 1

    results: dict = {"satellites": len(cat), "steps": args.steps, "cores": cores, "clock": args.clock,
                     "load_average": os.getloadavg(),
                     "python_sgp4_accelerated": bool(accelerated), "machine": platform.processor()}
    prop_ratios, prop_ours, prop_theirs = [], [], []
    for _ in range(max(1, args.pair_rounds)):
        before = median_time(lambda: ours.propagate((jd, fr), threads=1), args.rounds, one)
        t = median_time(lambda: theirs.sgp4(jd, fr), args.rounds, one)
        mine = (before + median_time(lambda: ours.propagate((jd, fr), threads=1), args.rounds, one)) / 2
        prop_ours.append(mine)
        prop_theirs.append(t)
        prop_ratios.append(t / mine)
    t_ours_1, t_theirs = statistics.median(prop_ours), statistics.median(prop_theirs)
    t_ours_n = median_time(lambda: ours.propagate((jd, fr), threads=cores), args.rounds)
    r1 = ours.propagate((jd, fr)).position
    e2, r2, _ = theirs.sgp4(jd, fr)
    ok = ~np.isnan(r1).any(axis=2) & (e2 == 0)
    results["propagation"] = {
        "skyrelay_1_thread_per_s": n_props / t_ours_1,
        "skyrelay_all_cores_per_s": n_props / t_ours_n,
        "python_sgp4_satrecarray_per_s": n_props / t_theirs,
        "ratio_1_thread": statistics.median(prop_ratios),
        "ratio_1_thread_rounds": prop_ratios,
        "ratio_all_cores": t_theirs / t_ours_n,
        "max_position_difference_km": float(np.abs(r1[ok] - r2[ok]).max()),
    }

    stations = pick_stations(args.stations)
    sample = cat[:: args.pass_sample]
    start, hours = PASS_START, PASS_HOURS
    pairs_all = len(cat) * len(stations)
    baseline_us = None
    if args.baseline:
        child = subprocess.run(
            [sys.executable, __file__, "--table-only", "--rounds", str(args.rounds), "--stations", str(args.stations),
             "--clock", args.clock], env={**os.environ, "PYTHONPATH": os.path.abspath(args.baseline)},
            capture_output=True, text=True, check=True, timeout=600)
        reply = json.loads(child.stdout.strip().splitlines()[-1])
        assert reply["module"].startswith(os.path.abspath(args.baseline)), reply
        baseline_us = reply["us"]
    t_table_n = median_time(lambda: orbit.pass_table(ours, stations, start, hours=hours, threads=cores), args.rounds)
    t_list_1 = median_time(lambda: orbit.passes(ours, stations, start, hours=hours, threads=1), max(1, args.rounds - 2),
                           one)
    sample_sats = [orbit.Satellite.from_tle(l1, l2, n) for n, l1, l2 in sample]
    found = orbit.passes(sample_sats, stations, start, hours=hours, threads=1)

    ts = load.timescale(builtin=True, delta_t=69.184)
    t0, t1 = ts.utc(2018, 1, 22), ts.utc(2018, 1, 23)
    sky = [EarthSatellite(l1, l2, n, ts) for n, l1, l2 in sample]
    tops = [wgs84.latlon(s.latitude, s.longitude, s.altitude_km * 1000) for s in stations]

    def skyfield_all():
        count = 0
        for es in sky:
            for st, topo in zip(stations, tops):
                _, events = es.find_events(topo, t0, t1, altitude_degrees=st.min_elevation)
                count += int((events == 0).sum())
        return count

    pairs_sample = len(sample) * len(stations)
    sky_rises = skyfield_all()  # (and Skyfield's warm-up)
    ours_rises = sum(not p.starts_before for p in found)

    def table_1() -> float:
        return median_time(lambda: orbit.pass_table(ours, stations, start, hours=hours, threads=1), args.rounds,
                           one)

    round_ratios, round_tables, round_skys = [], [], []
    for _ in range(max(1, args.pair_rounds)):
        before = table_1()
        t = one()
        skyfield_all()
        t_sky = one() - t
        table = (before + table_1()) / 2
        round_tables.append(table)
        round_skys.append(t_sky)
        round_ratios.append((t_sky / pairs_sample) / (table / pairs_all))
    t_table_1 = statistics.median(round_tables)
    sky_per = statistics.median(round_skys) / pairs_sample
    results["passes"] = {
        "stations": len(stations),
        "skyfield_satellites_sampled": len(sample),
        "skyrelay_table_1_thread_us_per_sat_station_day": t_table_1 / pairs_all * 1e6,
        "skyrelay_table_all_cores_us_per_sat_station_day": t_table_n / pairs_all * 1e6,
        "skyrelay_records_1_thread_us_per_sat_station_day": t_list_1 / pairs_all * 1e6,
        "skyfield_ms_per_sat_station_day": sky_per * 1e3,
        "ratio_table_1_thread": statistics.median(round_ratios),
        "ratio_table_1_thread_rounds": round_ratios,
        "ratio_table_all_cores": sky_per / (t_table_n / pairs_all),
        "ratio_records_1_thread": sky_per / (t_list_1 / pairs_all),
        "rises_skyrelay": ours_rises,
        "rises_skyfield": sky_rises,
    }
    if baseline_us is not None:
        results["passes"]["baseline_dir"] = os.path.abspath(args.baseline)
        results["passes"]["baseline_table_1_thread_us_per_sat_station_day"] = baseline_us
        results["passes"]["baseline_ratio_table_1_thread"] = sky_per / (baseline_us * 1e-6)
    harness.save("orbit", results)
    p, q = results["propagation"], results["passes"]
    print(f"clock for one-thread figures: {args.clock}; load average before {results['load_average'][0]:.2f}, "
          f"after {os.getloadavg()[0]:.2f}")
    print(f"propagation, {len(cat)} satellites x {args.steps} steps (medians of {args.rounds}):")
    print(f"  skyrelay   1 thread {p['skyrelay_1_thread_per_s'] / 1e6:6.2f} M/s   {cores} threads "
          f"{p['skyrelay_all_cores_per_s'] / 1e6:6.2f} M/s")
    print(f"  python-sgp4 SatrecArray {p['python_sgp4_satrecarray_per_s'] / 1e6:6.2f} M/s "
          f"(accelerated={accelerated})")
    print(f"  ratio 1 thread {p['ratio_1_thread']:.2f}x, the median of "
          f"{', '.join(f'{r:.1f}' for r in prop_ratios)}; all cores {p['ratio_all_cores']:.2f}x; "
          f"largest position difference {p['max_position_difference_km']:.1e} km")
    print(f"pass search, {len(cat)} satellites x {len(stations)} stations x 1 day (Skyfield on every "
          f"{args.pass_sample}th satellite):")
    print(f"  skyrelay pass_table 1 thread {q['skyrelay_table_1_thread_us_per_sat_station_day']:.1f} us, "
          f"{cores} threads {q['skyrelay_table_all_cores_us_per_sat_station_day']:.1f} us; passes() records "
          f"1 thread {q['skyrelay_records_1_thread_us_per_sat_station_day']:.1f} us per sat-station-day")
    print(f"  Skyfield find_events {q['skyfield_ms_per_sat_station_day']:.2f} ms per sat-station-day")
    print(f"  ratio 1 thread {q['ratio_table_1_thread']:.0f}x, the median of "
          f"{', '.join(f'{r:.0f}' for r in round_ratios)} (records {q['ratio_records_1_thread']:.0f}x), "
          f"all cores {q['ratio_table_all_cores']:.0f}x; rises found on the sample: skyrelay {ours_rises}, "
          f"Skyfield {sky_rises}")
    if baseline_us is not None:
        print(f"  baseline ({args.baseline}) pass_table 1 thread {baseline_us:.1f} us per sat-station-day: "
              f"ratio {q['baseline_ratio_table_1_thread']:.0f}x; this build is "
              f"{baseline_us / q['skyrelay_table_1_thread_us_per_sat_station_day']:.2f}x the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
