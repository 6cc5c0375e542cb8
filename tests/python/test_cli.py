"""The ``skyrelay`` command as a user meets it: ``--format`` for the orbit commands, the one
station syntax, data alone on stdout (warnings on stderr), and one-line errors with exit codes
and no tracebacks for user errors (the app's own failures show the app's frames only)."""

from __future__ import annotations

import csv
import io
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from skyrelay import orbit

ISS = ("ISS (ZARYA)",
       "1 25544U 98067A   18020.52986111  .00002182  00000-0  40768-4 0  9990",
       "2 25544  51.6418  48.3856 0003381 340.5367 101.7005 15.54253740 96203")
START = "2018-01-21T00:00:00Z"


def cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skyrelay.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


@pytest.fixture
def tle(tmp_path: Path) -> Path:
    # A good set and a broken one: the broken one must warn on stderr, never land in the data.
    path = tmp_path / "mixed.tle"
    path.write_text("\n".join(ISS) + "\nBROKEN\n1 99999U bad line\n2 99999 bad line\n")
    return path


def expected_passes(*stations: orbit.GroundStation) -> list[orbit.Pass]:
    sat = orbit.Satellite.from_tle(*ISS[1:], ISS[0])
    return orbit.passes([sat], list(stations), START, hours=24, min_elevation=None)


def test_passes_csv_is_data_only_and_matches_the_api(tle):
    out = cli("passes", "--tle", str(tle), "--station", "Copenhagen=55.68,12.57,10,10",
              "--start", START, "--hours", "24", "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert "warning" in out.stderr and "warning" not in out.stdout
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    want = expected_passes(orbit.GroundStation("Copenhagen", 55.68, 12.57, 0.01, 10))
    assert len(rows) == len(want) >= 3
    for row, p in zip(rows, want):
        assert row["satellite"] == "ISS (ZARYA)" and row["ground_station"] == "Copenhagen"
        assert row["aos"] == p.aos.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert float(row["max_elevation"]) == pytest.approx(p.max_elevation)
        assert row["starts_before"] in ("true", "false")


def test_passes_json_with_two_stations_in_the_one_syntax(tle):
    # One unnamed station with the command's mask, one named with its own.
    out = cli("passes", "--tle", str(tle), "--station", "55.68,12.57", "--station",
              "Madrid=40.42,-3.70,650,20", "--min-elevation", "5", "--start", START,
              "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [s["name"] for s in doc["stations"]] == ["55.6800,12.5700", "Madrid"]
    assert [s["min_elevation"] for s in doc["stations"]] == [5.0, 20.0]
    assert doc["start"] == "2018-01-21T00:00:00.000Z"
    want = expected_passes(orbit.GroundStation("55.6800,12.5700", 55.68, 12.57, 0.0, 5.0),
                           orbit.GroundStation("Madrid", 40.42, -3.70, 0.65, 20.0))
    assert [(r["ground_station"], r["max_elevation"]) for r in doc["rows"]] == \
        [(p.ground_station, pytest.approx(p.max_elevation)) for p in want]
    assert {r["ground_station"] for r in doc["rows"]} == {"55.6800,12.5700", "Madrid"}


def test_propagate_json_and_csv_match_the_api(tle):
    out = cli("propagate", "--tle", str(tle), "--start", START, "--minutes", "30", "--step", "10",
              "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["frame"] == "TEME" and len(doc["rows"]) == 4
    sat = orbit.Satellite.from_tle(*ISS[1:])
    sub = sat.subpoint("2018-01-21T00:20")
    row = doc["rows"][2]
    assert row["time"] == "2018-01-21T00:20:00.000Z" and row["error"] == 0
    assert row["latitude"] == pytest.approx(float(sub.latitude[0]), abs=1e-6)
    out = cli("propagate", "--tle", str(tle), "--start", START, "--minutes", "30", "--step", "10",
              "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["time"] for r in rows][-1] == "2018-01-21T00:30:00.000Z"
    assert float(rows[2]["x_km"]) == pytest.approx(row["x_km"])


@pytest.mark.parametrize("args, message", [
    (("passes", "--station", "Kiruna", "--start", START), "[NAME=]LAT,LON"),
    (("passes", "--station", "=1,2", "--start", START), "[NAME=]LAT,LON"),
    (("passes", "--station", "1,2,3,4,5", "--start", START), "[NAME=]LAT,LON"),
    (("passes", "--station", "1,nan", "--start", START), "finite"),
    (("passes", "--station", "1,2,0,95", "--start", START), "min_elevation"),
    (("passes", "--station", "1,2", "--min-elevation", "95"), "--min-elevation"),
    (("passes", "--station", "1,2", "--satellite", "HUBBLE"), "--satellite"),
])
def test_user_errors_are_one_line_exit_2(tle, args, message):
    res = cli(args[0], "--tle", str(tle), *args[1:])
    assert res.returncode == 2, res
    lines = [l for l in res.stderr.splitlines() if "warning" not in l]
    assert len(lines) == 1 and lines[0].startswith(f"skyrelay {args[0]}: error: "), res.stderr
    assert message in lines[0] and "Traceback" not in res.stderr
    assert res.stdout == ""


def test_a_bad_format_is_refused_by_the_parser(tle):
    res = cli("propagate", "--tle", str(tle), "--format", "xml")
    assert res.returncode == 2 and "invalid choice: 'xml'" in res.stderr


def test_demo_on_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = cli("demo", "--port", str(port), "--positions-every", "1", timeout=120)
    assert res.returncode == 2, res
    assert res.stderr.strip() == f"skyrelay demo: error: port {port} on 127.0.0.1 is in use"


def test_an_app_that_raises_shows_its_own_frames_and_exits_1(tmp_path):
    (tmp_path / "broken_app.py").write_text(textwrap.dedent("""\
        import skyrelay

        def load_settings():
            raise RuntimeError("SETTINGS_URL is not set")

        server = skyrelay.Server(port=0)
        load_settings()
        """))
    res = cli("run", "broken_app:server", cwd=tmp_path, timeout=60)
    assert res.returncode == 1, res
    err = res.stderr
    assert err.startswith("skyrelay run: error: importing 'broken_app' raised RuntimeError:\n")
    assert "broken_app.py\", line 7" in err and "in load_settings" in err
    assert err.rstrip().endswith("RuntimeError: SETTINGS_URL is not set")
    assert "importlib" not in err and "_run_cli" not in err and "skyrelay/cli.py" not in err


def test_a_missing_optional_dependency_names_the_extra(tle):
    # numpy hidden: the orbit commands say which extra to install instead of a traceback.
    code = textwrap.dedent(f"""\
        import sys
        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name == "numpy" or name.startswith("numpy."):
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        sys.meta_path.insert(0, Hide())
        from skyrelay.cli import main
        sys.exit(main(["propagate", "--tle", {str(tle)!r}]))
        """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res
    assert res.stderr.strip() == ("skyrelay propagate: error: this command needs numpy: "
                                  "pip install 'skyrelay[orbit]'")


def test_the_serving_line_names_only_the_routes_that_are_on(tmp_path):
    (tmp_path / "quiet_app.py").write_text(textwrap.dedent("""\
        import skyrelay
        server = skyrelay.Server(port=0, json_protocol=False, metrics_path=None)
        """))
    proc = subprocess.Popen([sys.executable, "-m", "skyrelay.cli", "run", "quiet_app:server",
                             "--port", "0"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert line.startswith("skyrelay serving on http://127.0.0.1:"), line
    assert "Socket.IO at /socket.io/" in line and "health at /health" in line
    assert "WebSocket at" not in line and "metrics" not in line and "no reloading" in line
    assert proc.returncode == 0
