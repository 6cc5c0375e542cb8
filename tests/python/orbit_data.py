"""Test data for the orbit tests: the Vallado verification set from the installed sgp4 package
and the gpredict catalogue unpacked by `make gpredict-data`."""

from __future__ import annotations

import configparser
import importlib.resources
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GPREDICT = Path(os.environ.get(
    "SKYRELAY_GPREDICT_DATA",
    ROOT / "build/gpredict/usr/share/gpredict/data/satdata/satellites.dat"))


def verification_files() -> tuple[str, str]:
    """SGP4-VER.TLE and tcppver.out as shipped inside the sgp4 wheel."""
    base = importlib.resources.files("sgp4")
    return (base / "SGP4-VER.TLE").read_text(), (base / "tcppver.out").read_text()


def gpredict_catalogue() -> list[tuple[str, str, str]]:
    """(name, line1, line2) for each of gpredict's satellites."""
    if not GPREDICT.exists():
        raise FileNotFoundError(f"{GPREDICT} is missing: run `make gpredict-data`")
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment]
    parser.read(GPREDICT)
    return [(parser[s]["NAME"], parser[s]["TLE1"], parser[s]["TLE2"]) for s in parser.sections()]
