// The tracker page's trail geometry (python/skyrelay/web/tracker/trail.js) in Node: a step
// across the antimeridian is split at the map's edges, at the latitude where the satellite
// crossed; a step longer than the allowed gap is not drawn; everything else is drawn as given.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_GAP_TICKS, trailPieces } from "../../python/skyrelay/web/tracker/trail.js";

test("a trail that crosses +180 eastwards ends at +180 and goes on from -180", () => {
  // 179 -> -179 is 2 degrees east; the crossing at 180 is halfway, latitude 10.5.
  const pieces = trailPieces([[178, 10, 0], [179, 10, 1000], [-179, 11, 2000], [-178, 12, 3000]], 1500);
  assert.deepEqual(pieces, [[[178, 10], [179, 10], [180, 10.5]], [[-180, 10.5], [-179, 11], [-178, 12]]]);
  for (const piece of pieces) {
    for (let i = 1; i < piece.length; i++) assert.ok(Math.abs(piece[i][0] - piece[i - 1][0]) <= 180);
  }
});

test("a westward crossing ends at -180 and goes on from +180, at the interpolated latitude", () => {
  const pieces = trailPieces([[-179.5, -40, 0], [179.5, -42, 1000]], 1500);
  assert.deepEqual(pieces, [[[-179.5, -40], [-180, -41]], [[180, -41], [179.5, -42]]]);
});

test("a gap longer than allowed starts a new piece; a lone point draws nothing", () => {
  const pieces = trailPieces([[0, 0, 0], [1, 0, 1000], [2, 0, 5000], [3, 0, 6000], [50, 0, 20000]], 1500);
  assert.deepEqual(pieces, [[[0, 0], [1, 0]], [[2, 0], [3, 0]]]);
  assert.deepEqual(trailPieces([[5, 5, 0]], 1500), []);
  assert.deepEqual(trailPieces([], 1500), []);
  assert.equal(MAX_GAP_TICKS, 1.5);
});
