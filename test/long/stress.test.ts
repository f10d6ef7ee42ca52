// Concurrency stress, short (the long run: `node bench/soak.mjs --stress 60`). 4
// writers queue-write pre-prepared raw packets out of order; 2 processor loops run
// queue-process -n 1..8 on the same queue, each alternating fspool and fspl; a reader loop
// runs queue-ls and queue-status. One processor at a time, nothing lost or duplicated, and
// readers never block the processor (bench/lib/stress.mjs).
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs module of the bench harness, without types
import { runStress } from '../../bench/lib/stress.mjs';

describe('concurrency stress (short)', () => {
  it('4 writers, fspool and fspl processing in turn, readers looping: one processor at a time, each seq once and in order, readers never wait', async () => {
    const f = await runStress({ seconds: 8 });
    const why = `seed ${f.seed}: ${f.problems.join('\n')}`;
    expect(f.problems, why).toEqual([]);
    expect(f.ok).toBe(true);
    expect(f.packets).toBeGreaterThan(30);
    expect(f.jobs).toBe(f.packets);
    expect(f.overlaps).toBe(0);
    expect(f.lost + f.duplicated + f.outOfOrder + f.hangs).toBe(0);
    // Both tools took turns on the lock and both ran jobs.
    expect(f.jobsByTool.fspool, JSON.stringify(f.jobsByTool)).toBeGreaterThan(0);
    expect(f.jobsByTool.fspl, JSON.stringify(f.jobsByTool)).toBeGreaterThan(0);
    // Readers answered while jobs ran. (That they never wait for a running job is shown without
    // timing in test/state-db.test.ts: a receiver waits for a reader to answer.)
    expect(f.readerMsDuringJobs.n).toBeGreaterThan(0);
    expect(f.leftoverProcesses).toBe(0);
    expect(f.lockFreeAtEnd).toBe(true);
  }, 90_000);
});
