// Shared parts of the browser tests: Debian's Chromium through playwright-core (no browser is
// downloaded), and Python test servers that print "PORT <n>" once listening and stop when their
// standard input closes.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { chromium } from "playwright-core";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const artifacts = path.join(root, "test-artifacts");

// Chromium as root without network: no sandbox (root), and nothing that tries to reach the
// internet in the background (which makes runs slow and flaky). Playwright gives each launch a
// fresh temporary profile and removes it on close.
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                       "--disable-background-networking", "--disable-component-update",
                       "--disable-sync"];

export function launchChromium() {
  return chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_ARGS,
                           timeout: 30000 });
}

/** Closes the browser and the process tree launch() started (bounded: 10 s). */
export async function closeChromium(browser) {
  if (!browser) return;
  let timer;
  await Promise.race([browser.close(), new Promise((r) => { timer = setTimeout(r, 10000); })]);
  clearTimeout(timer);
}

/** Starts `.venv/bin/python <script> <args>`; resolves with { child, port } once it prints its
 * port (killed after 30 s without). */
export async function startPythonServer(script, args = []) {
  const child = spawn(path.join(root, ".venv/bin/python"), [path.join(root, script), ...args],
                      { stdio: ["pipe", "pipe", "inherit"] });
  const killer = setTimeout(() => child.kill("SIGKILL"), 30000);
  let out = "";
  let port = 0;
  for await (const chunk of child.stdout) {
    out += chunk;
    const m = out.match(/PORT (\d+)\n/);
    if (m) { port = Number(m[1]); break; }
  }
  clearTimeout(killer);
  assert.ok(port, `${script} did not start`);
  return { child, port };
}

/** Closes the server's standard input (its signal to stop); SIGKILL after 10 s. */
export async function stopPythonServer(child) {
  if (!child || child.exitCode !== null) return;
  const exited = once(child, "exit");
  child.stdin.end();
  const timer = setTimeout(() => child.kill("SIGKILL"), 10000);
  await exited;
  clearTimeout(timer);
}
