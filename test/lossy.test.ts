// The lossy-transport harness (bench/lib/lossy.mjs, spec/receipts.md): packets and receipts
// through a transport that drops 25%, duplicates 10% and reorders everything, in both
// directions, cycled prepare --outbox, queue-process --receipt-to-dir, outbox-apply,
// outbox-resend. Every job runs exactly once and in order, and the outbox ends empty. One seed
// here, five in the long mode (FSPOOL_LONG=1, as CI runs it); `npm run soak -- --lossy` runs
// 1,000 packets over many (spec/reliability.md).
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs module shared with bench/soak.mjs
import { runLossy } from '../bench/lib/lossy.mjs';
import { LONG } from './helpers/queue.js';

interface Result {
  ok: boolean;
  problems: string[];
  figures: Record<string, number>;
  dir: string;
}

describe('lossy transport, both ways', () => {
  for (const seed of LONG ? [11, 12, 13, 14, 15] : [11]) {
    it(`seed ${seed}: 8 packets; every job runs once, in order; the outbox ends empty`, () => {
      const r = runLossy({ count: 8, seed, perRound: 4, maxRounds: 80 }) as Result;
      console.log(`lossy seed ${seed}: ${JSON.stringify(r.figures)}`);
      expect(r.problems, `kept in ${r.dir}`).toEqual([]);
      expect(r.ok).toBe(true);
      // The transport did its worst: something was lost on the way.
      expect(r.figures.packetsLost! + r.figures.receiptsLost!).toBeGreaterThan(0);
    }, 240_000);
  }
});
