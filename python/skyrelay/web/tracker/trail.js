// Satellite trails as the map draws them: pure functions, no DOM (tests/js/tracker_trail.test.mjs
// runs them in Node; dashboard.js draws what they return).

/** A trail restarts when two positions are further apart in time than this many position
 * intervals (a missed tick, a reconnect): the satellite moved further than one segment shows. */
export const MAX_GAP_TICKS = 1.5;

/** The pieces of a trail to draw, each a list of [lon, lat] to join with straight lines.
 * `points` are [lon, lat, tMs] in time order. A step that crosses the antimeridian (|Δlon| >
 * 180) ends one piece at the edge of the map and starts the next at the other edge, both at the
 * latitude where the satellite crossed; a step longer than `maxGapMs` in time is not drawn. */
export function trailPieces(points, maxGapMs = Infinity) {
  const pieces = [];
  let piece = [];
  const flush = () => { if (piece.length > 1) pieces.push(piece); };
  for (let i = 0; i < points.length; i++) {
    const [lon, lat, t] = points[i];
    if (i === 0) { piece = [[lon, lat]]; continue; }
    const [plon, plat, pt] = points[i - 1];
    if (t - pt > maxGapMs) {
      flush();
      piece = [[lon, lat]];
    } else if (Math.abs(lon - plon) > 180) {
      const edge = plon > 0 ? 180 : -180;
      const unwrapped = lon + 2 * edge;          // the next longitude seen past the edge
      const f = (edge - plon) / (unwrapped - plon);
      const crossing = plat + f * (lat - plat);
      piece.push([edge, crossing]);
      flush();
      piece = [[-edge, crossing], [lon, lat]];
    } else {
      piece.push([lon, lat]);
    }
  }
  flush();
  return pieces;
}
