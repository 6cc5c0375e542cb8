"""Builds python/skyrelay/web/tracker/land.json, the tracker page's land outlines, from the
Natural Earth 1:110m land polygons as the npm package world-atlas (2.x) distributes them.

    npm pack world-atlas@2 && tar xzf world-atlas-2.*.tgz
    python3 tools/land_outline.py package/land-110m.json > python/skyrelay/web/tracker/land.json

Natural Earth is in the public domain. Output: {"source": ..., "rings": [[lon, lat, lon, lat, ...],
...]} with coordinates rounded to 0.01 degree, about 40 KB.
"""

from __future__ import annotations

import json
import sys


def decode(topology: dict) -> list[list[float]]:
    sx, sy = topology["transform"]["scale"]
    tx, ty = topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:  # delta-encoded, quantised
            x += dx
            y += dy
            points.append((round(x * sx + tx, 2), round(y * sy + ty, 2)))
        arcs.append(points)

    def ring(indices: list[int]) -> list[float]:
        out: list[tuple[float, float]] = []
        for i in indices:
            pts = arcs[i] if i >= 0 else arcs[~i][::-1]
            out.extend(pts if not out else pts[1:])  # arcs share their end points
        return [c for p in out for c in p]

    rings = []
    for geometry in topology["objects"]["land"]["geometries"]:
        polygons = geometry["arcs"] if geometry["type"] == "MultiPolygon" else [geometry["arcs"]]
        for polygon in polygons:
            rings.extend(ring(r) for r in polygon)
    return rings


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        topology = json.load(f)
    rings = decode(topology)
    json.dump({"source": "Natural Earth 1:110m land (public domain), via world-atlas 2", "rings": rings},
              sys.stdout, separators=(",", ":"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
