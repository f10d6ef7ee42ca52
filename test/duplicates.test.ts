// Copies of one packet (src/queue/queue.ts identical/identicalAsync): several files claiming
// the due seq are one job only if they hold the same bytes. Compared on real files, sparse ones
// included: a hole is zeros, whichever copy has it, and holes every copy has are not read (a
// forger's sparse terabytes cost it no disk, and must not cost the processor hours).
import { closeSync, ftruncateSync, linkSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { identical, identicalAsync } from '../src/queue/queue.js';
import { FSPOOL, fspool, makeQueue, plainPacket, runSync, tempDir } from './helpers/cli.js';
import { jobFiles, nextseq } from './helpers/queue.js';

const TiB = 2 ** 40;
const MiB = 2 ** 20;

/** A file of `size` bytes holding `writes` (offset, bytes) and holes elsewhere. */
function sparse(path: string, size: number, writes: Array<[number, Buffer]>): string {
  const fd = openSync(path, 'w');
  try {
    for (const [at, b] of writes) writeSync(fd, b, 0, b.length, at);
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
  return path;
}

describe('copies of a packet', () => {
  const dir = tempDir();
  const file = (name: string, size: number, writes: Array<[number, Buffer]>) => sparse(join(dir, name), size, writes);
  const data: Array<[number, Buffer]> = [
    [0, Buffer.from('head')],
    [5 * MiB + 3, Buffer.from('middle')],
    [TiB - 10, Buffer.from('tail')],
  ];

  it('sparse terabytes alike are the same; one byte after a long hole, or data where the other has a hole, is a difference', () => {
    const a = file('a', TiB, data);
    expect(identical([a, file('b', TiB, data)])).toBe(true);
    expect(identical([a, file('c', TiB, [...data, [TiB / 2, Buffer.from('x')]])])).toBe(false);
    expect(identical([a, file('d', TiB, [...data.slice(0, 2), [TiB - 10, Buffer.from('tall')]])])).toBe(false);
    expect(identical([a, file('e', TiB - 1, data.slice(0, 2))])).toBe(false);
    linkSync(a, join(dir, 'a-link'));
    expect(identical([a, join(dir, 'a-link')])).toBe(true);
  });

  it('a hole in one copy and zeros written in the other are the same bytes', () => {
    const holes = file('holes', 8 * MiB, [[7 * MiB, Buffer.from('end')]]);
    const zeros = file('zeros', 8 * MiB, [
      [0, Buffer.alloc(7 * MiB)],
      [7 * MiB, Buffer.from('end')],
    ]);
    expect(identical([holes, zeros])).toBe(true);
    expect(identical([zeros, holes])).toBe(true);
    expect(identical([holes, file('zeros-but-one', 8 * MiB, [[0, Buffer.alloc(7 * MiB)], [3 * MiB, Buffer.from('x')], [7 * MiB, Buffer.from('end')]])])).toBe(false);
  });

  it('identicalAsync gives the event loop turns and stops when told, with no verdict', async () => {
    // Data at every MiB: nothing to skip, so the comparison takes turns.
    const writes: Array<[number, Buffer]> = [];
    for (let at = 0; at < 256 * MiB; at += MiB) writes.push([at, Buffer.from('x')]);
    const a = file('many-a', 256 * MiB, writes);
    const b = file('many-b', 256 * MiB, writes);
    let asked = 0;
    expect(await identicalAsync([a, b], () => asked++ > 1)).toBeUndefined();
    expect(asked).toBe(3);
    expect(await identicalAsync([a, b], () => false)).toBe(true);
  });

  it('two identical sparse terabyte copies of the due packet: one job, run once', () => {
    const d = tempDir();
    const q = makeQueue(d);
    const a = join(q, 'jobs', 'fspl-a.fspl');
    sparse(a, TiB, [[0, plainPacket(1, Buffer.from('one'))]]);
    expect(runSync('cp', ['--sparse=always', a, join(q, 'jobs', 'fspl-b.fspl')]).code).toBe(0);
    const out = join(d, 'out');
    // The receiver takes the payload's start and exits 0 (a success that took part of it).
    const r = fspool(['queue-process', '-q', q, 'sh', '--', '-c', 'head -c 3 >> "$0"', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/seq 1 arrived 2 times with identical content .*; running it once/);
    expect(readFileSync(out, 'latin1')).toBe('one');
    expect(nextseq(q)).toBe('2');
    expect(jobFiles(q)).toEqual([]);
  });

  it('many copies, distinct files and hard links: compared a batch at a time, so a different last copy is still found', () => {
    const d = tempDir();
    const copies = Array.from({ length: 100 }, (_, i) => join(d, `copy-${i}`));
    for (const c of copies) writeFileSync(c, 'the same packet');
    for (let i = 0; i < 50; i++) linkSync(copies[0]!, join(d, `link-${i}`));
    const links = Array.from({ length: 50 }, (_, i) => join(d, `link-${i}`));
    expect(identical([...links, ...copies])).toBe(true);
    writeFileSync(join(d, 'last'), 'the same packeT');
    expect(identical([...copies, ...links, join(d, 'last')])).toBe(false);
    writeFileSync(join(d, 'longer'), 'the same packet!');
    expect(identical([...copies, join(d, 'longer')])).toBe(false);
  });

  it('thousands of copies of the due packet (hard links cost whoever may write jobs/ nothing), more than the processor may open files: one job, run once, every copy removed, a few named', () => {
    const d = tempDir();
    const q = makeQueue(d);
    const first = join(q, 'jobs', 'fspl-a.fspl');
    const bytes = plainPacket(1, Buffer.from('one'));
    writeFileSync(first, bytes);
    for (let i = 0; i < 3000; i++) linkSync(first, join(q, 'jobs', `fspl-link-${i}.fspl`));
    for (let i = 0; i < 100; i++) writeFileSync(join(q, 'jobs', `fspl-copy-${i}.fspl`), bytes);
    const out = join(d, 'out');
    const r = runSync('prlimit', ['--nofile=64', FSPOOL, 'queue-process', '-q', q, 'sh', '--', '-c', 'cat >> "$0"', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/seq 1 arrived 3101 times with identical content \([^,]+, [^,]+, [^,]+ and 3098 more\); running it once/);
    expect(readFileSync(out, 'latin1')).toBe('one');
    expect(nextseq(q)).toBe('2');
    expect(jobFiles(q)).toEqual([]);
  });
});
