#!/usr/bin/env node
// `npm test`: the test programs (scripts/test-deps.mjs), the build, then the type check and the
// vitest suite side by side. The suite leaves a core idle now and then (tests that wait on a
// timer, a pause, a slow receiver), and the type check, at the lowest priority, takes those
// moments instead of ten seconds of its own before the suite starts. Its report is printed
// after the suite's, and either failing fails the run. Arguments go to vitest.
import { spawn, spawnSync } from 'node:child_process';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';

process.chdir(fileURLToPath(new URL('..', import.meta.url)));
const bin = (name) => `node_modules/.bin/${name}`;

const step = (cmd, args) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
step(process.execPath, ['scripts/test-deps.mjs']);
step(process.execPath, ['scripts/build.mjs']);

const tsc = spawn(bin('tsc'), ['--noEmit'], { stdio: ['ignore', 'pipe', 'pipe'] });
try {
  setPriority(tsc.pid, 19);
} catch {
  /* only slower to finish */
}
let report = '';
tsc.stdout.on('data', (d) => (report += d));
tsc.stderr.on('data', (d) => (report += d));
const typecheck = new Promise((resolve) => tsc.on('close', (code) => resolve(code)));

const vitest = spawn(bin('vitest'), ['run', ...process.argv.slice(2)], { stdio: 'inherit' });
const tests = await new Promise((resolve) => vitest.on('close', (code, signal) => resolve(signal ? 1 : code)));

const typed = await typecheck;
if (typed !== 0) process.stderr.write(`${report}\nnpm test: the type check (tsc --noEmit) failed\n`);
process.exit(tests !== 0 ? tests : typed !== 0 ? 1 : 0);
