import { readFileSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// `npm test` runs test/*.test.ts, which must take at most five minutes on two cores.
// FSPOOL_LONG=1 also runs test/long/: soaks, stress and the npm package (whose `npm pack`
// cross-compiles), and the other files take their larger samples and payloads (test/helpers/
// queue.ts, LONG). CI runs both (.ci/run).
const long = process.env.FSPOOL_LONG === '1';

export default defineConfig({
  // What the build puts in the bundle (scripts/build.mjs), for the tests that load src/cli/main.ts.
  define: {
    FSPOOL_VERSION: JSON.stringify(JSON.parse(readFileSync('package.json', 'utf8')).version),
    FSPOOL_LICENSE: JSON.stringify(readFileSync('LICENSE', 'utf8')),
  },
  test: {
    include: long ? ['test/*.test.ts', 'test/long/*.test.ts'] : ['test/*.test.ts'],
    pool: 'forks',
    // Every Node process started with NODE_EXTRA_CA_CERTS set reads and parses that file before
    // running anything (~40 ms here, a third of fspool's start); the suite starts thousands of
    // fspool processes, and fspool opens no TLS connection: empty, it is not read.
    env: { NODE_EXTRA_CA_CERTS: '' },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // On two cores the default run is fastest with three files at a time: the third fills the
    // time the other two spend waiting (sleeping receivers, watch pauses, signals, a Prometheus
    // scrape); a fourth costs more CPU than it fills (README, "Development"). The long mode,
    // which CI runs, keeps two: its soaks and stress runs are the most timing-sensitive, and it
    // has no time limit to keep.
    maxWorkers: long ? 2 : 3,
  },
});
