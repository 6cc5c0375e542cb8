// Puts the client into the package folder for `npm pack` (prepack) and takes it out again
// (postpack). The one source of skyrelay.js and skyrelay.d.ts is python/skyrelay/web/, the files
// the server serves at client_js_path; npm leaves symbolic links out of a tarball, so they are
// copied byte for byte instead, and only for the length of a pack.
import { copyFileSync, existsSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const root = path.resolve(pkg, "../..");
const sources = {
  "skyrelay.js": path.join(root, "python/skyrelay/web/skyrelay.js"),
  "skyrelay.d.ts": path.join(root, "python/skyrelay/web/skyrelay.d.ts"),
  // The repository's licence, when it has one (npm adds any LICENSE file to a package).
  LICENSE: path.join(root, "LICENSE"),
};

const action = process.argv[2];
for (const [name, source] of Object.entries(sources)) {
  const target = path.join(pkg, name);
  if (action === "copy") {
    if (existsSync(source)) copyFileSync(source, target);
    else if (name !== "LICENSE") throw new Error(`${source} is missing`);
  } else if (action === "clean") {
    rmSync(target, { force: true });
  } else {
    throw new Error(`usage: client-files.mjs copy|clean (got ${action})`);
  }
}
