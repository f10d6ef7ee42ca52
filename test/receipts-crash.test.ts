// The outbox under SIGKILL at every step (FSPOOL_CRASH_AT, src/sys/crashPoint.ts;
// spec/receipts.md, "Crash points"): prepare --outbox, outbox-apply and outbox-resend each
// killed at each of their points, then checked before and after the next commands: no
// acknowledged packet comes back, no unacknowledged one is lost, a number consumed always has
// its copy, and a number not consumed has none.
import { randomUUID } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeHeader } from '../src/packet/codec.js';
import { fspool, makeQueue, type Result, tempDir } from './helpers/cli.js';

interface Box {
  dir: string;
  q: string;
  ob: string;
  seq: string;
  wire: string;
}

function box(): Box {
  const dir = tempDir('fspool-rcrash-');
  const wire = join(dir, 'wire');
  mkdirSync(wire);
  return { dir, q: makeQueue(dir), ob: join(dir, 'outbox'), seq: join(dir, 'sender.seq'), wire };
}

function ok(args: string[], input?: string | Buffer): Result {
  const r = fspool(args, { input });
  expect(r.code, `fspool ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r;
}

const crashed = (args: string[], point: string, input?: string | Buffer) => {
  const r = fspool(args, { input, env: { ...process.env, FSPOOL_CRASH_AT: point } });
  expect(r.signal, `fspool ${args.join(' ')} was to die at ${point}: ${r.stderr}`).toBe('SIGKILL');
  return r;
};

const prepareArgs = (b: Box) => ['prepare', '-s', b.seq, '-i', '-', '--outbox', b.ob];
const names = (b: Box, sub: string) => readdirSync(join(b.ob, sub)).sort();
const keptSeqs = (b: Box) => names(b, 'packets').filter((n) => n.endsWith('.fspl')).map((n) => Number(n.slice(0, 20)));
const seqfile = (b: Box) => Number(readFileSync(b.seq, 'utf8').trim());
const status = (b: Box) => JSON.parse(ok(['outbox-status', '--outbox', b.ob, '--json']).stdout.toString());

/** Re-send everything into a fresh directory; the seqs sent. */
function resent(b: Box): number[] {
  const d = join(b.dir, `resend-${randomUUID()}`);
  mkdirSync(d);
  ok(['outbox-resend', '--outbox', b.ob, '--to-dir', d]);
  return readdirSync(d)
    .map((n) => Number(decodeHeader(readFileSync(join(d, n))).header.seq))
    .sort((x, y) => x - y);
}

function deliver(b: Box, packet: Buffer): void {
  const name = `fspl-${randomUUID()}.fspl`;
  writeFileSync(join(b.q, 'jobs', `.${name}.tmp`), packet);
  renameSync(join(b.q, 'jobs', `.${name}.tmp`), join(b.q, 'jobs', name));
}

describe('prepare --outbox killed', () => {
  const cases = [
    // point, seqfile after the crash, whether the copy counts (number consumed)
    ['outbox-copied', 2, false],
    ['outbox-pending', 2, false],
    ['prepare-before-seqfile', 2, false],
    ['prepare-after-seqfile', 3, true],
  ] as const;
  for (const [point, after, consumed] of cases) {
    it(`at ${point}: ${consumed ? 'the number is consumed and the copy kept' : 'the number is not consumed and no copy is left'}`, () => {
      const b = box();
      ok(prepareArgs(b), 'first');
      crashed(prepareArgs(b), point, 'second');
      expect(seqfile(b)).toBe(after);
      if (point === 'outbox-copied') expect(names(b, 'tmp')).toHaveLength(1);
      if (point !== 'outbox-copied') expect(names(b, 'packets').filter((n) => n.endsWith('.pending'))).toHaveLength(1);
      // What the crash left is never re-sent or counted before it is settled.
      expect(status(b).unacked).toBe(1);
      expect(status(b).unfinished).toEqual(point === 'outbox-copied' ? [] : [2]);

      // The next outbox command settles it by the seqfile.
      expect(resent(b)).toEqual(consumed ? [1, 2] : [1]);
      expect(keptSeqs(b)).toEqual(consumed ? [1, 2] : [1]);
      expect(names(b, 'packets').filter((n) => n.endsWith('.pending'))).toEqual([]);

      // The next prepare uses the next number and leaves no temp file: every consumed number
      // has exactly one copy.
      ok(prepareArgs(b), 'third');
      expect(names(b, 'tmp')).toEqual([]);
      expect(keptSeqs(b)).toEqual(Array.from({ length: seqfile(b) - 1 }, (_, i) => i + 1));
      const payloads = names(b, 'packets').map((n) => readFileSync(join(b.ob, 'packets', n)).subarray(-5).toString());
      expect(payloads.at(-1)).toBe('third');
    });
  }
});

describe('prepare --outbox killed, then its seqfile moved on by other means', () => {
  it('the copy it left is neither re-sent nor removed: a person is told what to do either way', () => {
    const b = box();
    ok(prepareArgs(b), 'first');
    crashed(prepareArgs(b), 'outbox-pending', 'second');
    expect(seqfile(b)).toBe(2);
    ok(['prepare-set-next', '-s', b.seq, '10']);
    const d = join(b.dir, 'resend');
    mkdirSync(d);
    const r = ok(['outbox-resend', '--outbox', b.ob, '--to-dir', d]);
    expect(readdirSync(d).map((n) => Number(decodeHeader(readFileSync(join(d, n))).header.seq))).toEqual([1]);
    expect(r.stderr).toMatch(/seq 2 was left by a prepare that did not finish, and the seqfile has since been moved on to 10 by other means: whether it was sent is not known; if it was, rename \S+\.pending to \S+\.fspl .*; if not, remove it/);
    expect(names(b, 'packets').filter((n) => n.endsWith('.pending'))).toHaveLength(1);
  });
});

describe('outbox-apply killed', () => {
  // One sender and receiver for the three points: receipt R1 when seqs 1 and 2 ran, R2 when
  // all three did; each point gets its own copy of the outbox as it was before R1.
  let template: Box;
  let r1: Buffer;
  let r2: Buffer;
  beforeAll(() => {
    template = box();
    const packets = [1, 2, 3].map((i) => ok(prepareArgs(template), `p${i}`).stdout);
    deliver(template, packets[0]!);
    deliver(template, packets[1]!);
    ok(['queue-process', '-q', template.q, 'cat']);
    r1 = ok(['queue-receipt', '-q', template.q]).stdout;
    deliver(template, packets[2]!);
    ok(['queue-process', '-q', template.q, 'cat']);
    r2 = ok(['queue-receipt', '-q', template.q]).stdout;
  }, 120_000);

  for (const point of ['outbox-acked-marked', 'outbox-pruned', 'outbox-recorded']) {
    it(`at ${point}: the acknowledged packets stay acknowledged, the others kept; the next apply finishes`, () => {
      const b: Box = { ...template, ob: join(tempDir('fspool-rcrash-'), 'outbox') };
      cpSync(template.ob, b.ob, { recursive: true });
      crashed(['outbox-apply', '--outbox', b.ob], point, r1);
      expect(names(b, 'acked')).toHaveLength(2);
      // Not resurrected: status and resend see only seq 3.
      expect(status(b)).toMatchObject({ unacked: 1, lowest_seq: 3 });
      expect(resent(b)).toEqual([3]);
      expect(keptSeqs(b)).toEqual([3]);
      ok(['outbox-apply', '--outbox', b.ob], r1);
      expect(status(b)).toMatchObject({ unacked: 1, missing: 1 });
      ok(['outbox-apply', '--outbox', b.ob], r2);
      expect(status(b).unacked).toBe(0);
    });
  }
});

describe('outbox-resend killed', () => {
  it('at outbox-resend-before-rename: a temp file that is not a job name, the outbox untouched; the next resend delivers', () => {
    const b = box();
    ok(prepareArgs(b), 'p1');
    crashed(['outbox-resend', '--outbox', b.ob, '--to-dir', b.wire], 'outbox-resend-before-rename');
    const left = readdirSync(b.wire);
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^\.fspl-[0-9a-f]{32}\.fspl\.tmp$/);
    expect(keptSeqs(b)).toEqual([1]);
    ok(['outbox-resend', '--outbox', b.ob, '--to-dir', b.wire]);
    const jobs = readdirSync(b.wire).filter((n) => /^fspl-.*\.fspl$/.test(n));
    expect(jobs).toHaveLength(1);
    expect(readFileSync(join(b.wire, jobs[0]!))).toEqual(readFileSync(join(b.ob, 'packets', names(b, 'packets')[0]!)));
    expect(existsSync(join(b.ob, 'state.json'))).toBe(false);
  });
});
