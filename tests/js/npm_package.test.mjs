// The npm package of skyrelay.js (clients/js/): packed with `npm pack`, installed from the
// tarball into a project outside the repository with the network off, imported by name from
// Node (ESM and require), connected to a real server (tests/js/json_server.py), and
// type-checked with tsc. The package's files must be the bytes the server serves, and its
// version the Python package's.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { promisify } from "node:util";
import { once } from "node:events";
import { fileURLToPath, pathToFileURL } from "node:url";
import { mkdtemp, readFile, writeFile, rm, readdir } from "node:fs/promises";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const pkgDir = path.join(root, "clients/js");
const python = path.join(root, ".venv/bin/python");
const npm = "npm";
const quiet = ["--no-audit", "--no-fund", "--loglevel=error"];

let tmp;        // outside the repository: os.tmpdir()
let project;    // the consumer project the tarball is installed into
let tarball;
let server;     // { child, port }

/** Starts tests/js/json_server.py; resolves once it prints its port. Stopped by closing stdin. */
async function startServer() {
  const child = spawn(python, [path.join(root, "tests/js/json_server.py")],
                      { stdio: ["pipe", "pipe", "inherit"] });
  const timer = setTimeout(() => child.kill("SIGKILL"), 20000);
  let out = "";
  for await (const chunk of child.stdout) {
    out += chunk;
    const m = out.match(/PORT (\d+)\n/);
    if (m) { clearTimeout(timer); return { child, port: Number(m[1]) }; }
  }
  clearTimeout(timer);
  throw new Error(`the server did not start: ${out}`);
}

async function stopServer() {
  if (!server) return;
  const exited = once(server.child, "exit");
  server.child.stdin.end();
  const timer = setTimeout(() => server.child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}

/** Runs node in the consumer project (so "skyrelay" resolves from its node_modules). */
function node(args, env = {}) {
  return run(process.execPath, args, { cwd: project, timeout: 20000, env: { ...process.env, ...env } });
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "skyrelay-npm-"));
  assert.ok(!tmp.startsWith(root + path.sep), "the consumer project must be outside the repository");
  const { stdout } = await run(npm, ["pack", "--json", "--pack-destination", tmp, ...quiet],
                               { cwd: pkgDir, timeout: 60000 });
  // npm prints the lifecycle scripts' output before the JSON report.
  const report = JSON.parse(stdout.slice(stdout.indexOf("[")));
  tarball = path.join(tmp, report[0].filename);
  project = path.join(tmp, "consumer");
  await run("mkdir", [project]);
  await writeFile(path.join(project, "package.json"),
                  JSON.stringify({ name: "consumer", private: true, type: "module" }));
  // --offline: a package with no dependencies installs from its tarball alone.
  await run(npm, ["install", "--offline", ...quiet, tarball], { cwd: project, timeout: 60000 });
  server = await startServer();
});

after(async () => {
  await stopServer();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

test("package.json's version is the Python package's skyrelay.__version__", async () => {
  const pkg = JSON.parse(await readFile(path.join(pkgDir, "package.json"), "utf8"));
  const { stdout } = await run(python, ["-c", "import skyrelay; print(skyrelay.__version__)"]);
  assert.equal(pkg.version, stdout.trim(),
               "bump clients/js/package.json's version with the Python package's");
  assert.equal(pkg.name, "skyrelay");
  assert.equal(pkg.repository.directory, "clients/js");
  // Once pyproject.toml names the repository ([project.urls]), npm must name the same one.
  const pyproject = await readFile(path.join(root, "pyproject.toml"), "utf8");
  const declared = pyproject.match(/^(?:Repository|Source|Source Code)\s*=\s*"([^"]+)"/mi);
  if (declared) {
    const bare = (url) => url.replace(/^git\+/, "").replace(/\.git$/, "").replace(/\/$/, "");
    assert.equal(bare(pkg.repository.url), bare(declared[1]));
  }
});

test("the tarball holds the client, its types, the readme and nothing else", async () => {
  const { stdout } = await run("tar", ["tzf", tarball]);
  const expected = ["package/README.md", "package/package.json", "package/skyrelay.d.ts",
                    "package/skyrelay.js"];
  if (existsSync(path.join(root, "LICENSE"))) expected.push("package/LICENSE");
  assert.deepEqual(stdout.trim().split("\n").sort(), expected.sort());
  // postpack took the copies out again: the package folder holds no second source.
  const left = await readdir(pkgDir);
  assert.ok(!left.includes("skyrelay.js") && !left.includes("skyrelay.d.ts"), left.join(", "));
});

test("the installed files are the bytes the server serves at /skyrelay.js and /skyrelay.d.ts", async () => {
  const installed = path.join(project, "node_modules/skyrelay");
  for (const name of ["skyrelay.js", "skyrelay.d.ts"]) {
    const res = await fetch(`http://127.0.0.1:${server.port}/${name}`);
    assert.equal(res.status, 200, name);
    const served = Buffer.from(await res.arrayBuffer());
    const packed = await readFile(path.join(installed, name));
    assert.ok(served.equals(packed), `${name}: the package and the server differ`);
    assert.ok(packed.equals(await readFile(path.join(root, "python/skyrelay/web", name))),
              `${name}: the installed server is stale (run make install)`);
  }
});

test("imported by name from Node, it connects to a real server and receives an event", async () => {
  // Node 20 has no global WebSocket: the app passes one, here the repository's ws package.
  const ws = pathToFileURL(path.join(root, "node_modules/ws/wrapper.mjs")).href;
  await writeFile(path.join(project, "main.mjs"), `
    import { SkyRelay, connect, SkyRelayError, STATES } from "skyrelay";
    import Default from "skyrelay";
    const WebSocket = globalThis.WebSocket ?? (await import(process.env.WS_MODULE)).default;
    const relay = connect(process.argv[2], { WebSocket });
    const connected = new Promise((resolve) => relay.once("connected", resolve));
    const event = new Promise((resolve) => relay.subscribe("npm-topic", (data, meta) => resolve({ data, meta })));
    await connected;
    // json_server.py's "publish" handler publishes to the topic, as an app's code would.
    await relay.request("publish", { topic: "npm-topic", event: "tick", start: 41 });
    const got = await event;
    let refused = null;
    try { await relay.request("refuse"); } catch (e) { refused = e instanceof SkyRelayError && e.code; }
    relay.close();
    console.log(JSON.stringify({ got, refused, sameClass: Default === SkyRelay,
                                 isRelay: relay instanceof SkyRelay, states: STATES.length }));
  `);
  const { stdout } = await node(["main.mjs", `ws://127.0.0.1:${server.port}/ws`], { WS_MODULE: ws });
  const result = JSON.parse(stdout.trim());
  assert.deepEqual(result.got.data, { n: 41 });
  assert.equal(result.got.meta.event, "tick");
  assert.equal(result.got.meta.topic, "npm-topic");
  assert.equal(result.got.meta.seq, 1);
  assert.equal(result.refused, "not_allowed");
  assert.ok(result.sameClass && result.isRelay);
  assert.equal(result.states, 6);
});

test("require() gets the same module where Node can require ES modules", async (t) => {
  const [major, minor] = process.versions.node.split(".").map(Number);
  // require(esm) is on by default from Node 20.19 and 22.12.
  if (major < 20 || (major === 20 && minor < 19) || (major === 22 && minor < 12)) {
    t.skip(`Node ${process.versions.node} cannot require an ES module`);
    return;
  }
  const { stdout } = await node(["--no-warnings", "-e", `
    const m = require("skyrelay");
    console.log(JSON.stringify([typeof m.SkyRelay, m.default === m.SkyRelay, typeof m.connect,
                                require("skyrelay/package.json").version]));
  `]);
  const pkg = JSON.parse(await readFile(path.join(pkgDir, "package.json"), "utf8"));
  assert.deepEqual(JSON.parse(stdout), ["function", true, "function", pkg.version]);
});

test("the types check a TypeScript app with tsc --noEmit, and catch its mistakes", async () => {
  const tsc = path.join(root, "node_modules/typescript/bin/tsc");
  await writeFile(path.join(project, "tsconfig.json"), JSON.stringify({
    compilerOptions: { strict: true, noEmit: true, target: "es2022", module: "nodenext",
                       moduleResolution: "nodenext", lib: ["es2022", "dom"], types: [],
                       skipLibCheck: false },
    files: ["app.ts"],
  }));
  const app = `
    import { SkyRelay, SkyRelayError, connect, type State, type Subscription, type EventMeta } from "skyrelay";
    interface Pass { station: string; aos: string }
    const relay: SkyRelay = connect("wss://push.example.com/ws", {
      token: async () => "t", backoff: { base: 50, max: 400, jitter: 0 }, reconnectAttempts: 3 });
    const state: State = relay.state;
    relay.on("state", (now: State, previous: State) => console.log(now, previous, state));
    relay.on("reset", ({ topic, reason }) => console.log(topic, reason));
    relay.on<Pass>("pass", (data: Pass, meta: EventMeta) => console.log(data.station, meta.seq));
    const sub: Promise<Subscription> = relay.subscribe<Pass>("ISS", (p) => console.log(p.aos));
    const answer: Promise<number> = relay.request<number>("add", [1, 2], { timeout: 500 });
    answer.catch((e: unknown) => { if (e instanceof SkyRelayError) console.log(e.code); });
    const off: () => void = relay.onAny((event, data, meta) => console.log(event, data, meta.topic));
    off(); void sub; new SkyRelay("/ws", { autoConnect: false }).open().close(1000, "bye");
  `;
  await writeFile(path.join(project, "app.ts"), app);
  await run(process.execPath, [tsc, "-p", project], { cwd: project, timeout: 120000 });

  // The same app with two mistakes: the types are real, not `any`.
  await writeFile(path.join(project, "app.ts"), app +
    `relay.subscribe(42);\nconst wrong: "open" = relay.state;\n`);
  const failed = await run(process.execPath, [tsc, "-p", project], { cwd: project, timeout: 120000 })
    .then(() => null, (e) => e.stdout);
  assert.ok(failed, "tsc accepted a subscribe(number) and a bad state");
  assert.match(failed, /app\.ts\(\d+,\d+\): error TS2345/);   // argument of the wrong type
  assert.match(failed, /app\.ts\(\d+,\d+\): error TS2322/);   // State is not "open"
});
