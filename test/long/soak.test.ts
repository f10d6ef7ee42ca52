// The short soak (FSPOOL_LONG=1, as CI runs it). bench/soak.mjs --short sends 150 packets (raw, zstd,
// zstd+OpenPGP) through prepare | queue-write while a processor runs in passes (--on-error
// retry and --retries/--backoff), with receivers that fail, exit early, read slowly, ignore
// stdin, hang past --timeout and leave children behind, every behaviour at least twice. The
// full run is `npm run soak` (10,000 packets); spec/reliability.md has its figures.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

describe('soak (short)', () => {
  it('150 packets through misbehaving receivers: no hang, no loss, nothing out of order, every failure journaled with its cause, no process left', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'bench/soak.mjs'), '--short', '--json'], { timeout: 280_000, maxBuffer: 1 << 26 });
    const out = r.stdout.toString().trim().split('\n');
    const fig = JSON.parse(out[out.length - 1]!);
    const why = `seed ${fig.seed}: ${fig.problems.join('\n')}\n${r.stderr.toString().slice(-2000)}`;
    expect(fig.problems, why).toEqual([]);
    expect(fig.ok, why).toBe(true);
    expect(r.status, why).toBe(0);
    expect(fig.packets).toBe(150);
    expect(fig.hangs).toBe(0);
    expect(fig.lost).toBe(0);
    expect(fig.duplicates).toBe(0);
    expect(fig.outOfOrder).toBe(0);
    expect(fig.payloadMismatch).toBe(0);
    expect(fig.journalMismatch + fig.journalMissing + fig.journalExtra + fig.spuriousDecodeFailures).toBe(0);
    expect(fig.leftoverProcesses).toBe(0);
    expect(fig.lockFreeAtEnd).toBe(true);
    // Every behaviour was exercised, and every encoding.
    for (const b of ['fail', 'early', 'slow', 'ignore', 'hang', 'stubborn', 'child']) expect(fig.planned[b], b).toBeGreaterThanOrEqual(2);
    for (const e of ['raw', 'zstd', 'pgp']) expect(fig.encodings[e], e).toBeGreaterThan(0);
    expect(fig.outcomes.success).toBe(150);
    expect(fig.outcomes.timeout).toBeGreaterThanOrEqual(4);
    expect(fig.keptChildren).toBeGreaterThanOrEqual(2);
  }, 300_000);
});
