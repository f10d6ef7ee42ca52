// Start-up: how bin/fspool loads the bundle (bench/README.md, "Cold start").
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { native } from '../src/sys/native.js';
import { FSPOOL, makeQueue, plainPacket, runSync, tempDir } from './helpers/cli.js';
import { put } from './helpers/queue.js';

describe('mapFile', () => {
  it("gives a file's bytes, mapped, as a latin1 string or an ArrayBuffer; nothing for an empty file or a directory", () => {
    const d = tempDir();
    const bytes = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 256));
    writeFileSync(join(d, 'f'), bytes);
    const text = native().mapFile(join(d, 'f'), true);
    expect(text).toBe(bytes.toString('latin1'));
    const buf = native().mapFile(join(d, 'f'), false) as ArrayBuffer;
    expect(Buffer.from(buf).equals(bytes)).toBe(true);
    // Its pages are private: a write changes the buffer, never the file.
    new Uint8Array(buf)[0] = 0xff;
    expect(readFileSync(join(d, 'f'))[0]).toBe(0);
    expect(() => native().mapFile(`${join(d, 'f')}\0x`, true)).toThrow(TypeError);
    expect(() => native().mapFile(join(d, 'x'.repeat(5000)), true)).toThrow(TypeError);
    writeFileSync(join(d, 'empty'), '');
    mkdirSync(join(d, 'dir'));
    for (const latin1 of [true, false]) {
      expect(native().mapFile(join(d, 'empty'), latin1)).toBeUndefined();
      expect(native().mapFile(join(d, 'dir'), latin1)).toBeUndefined();
      expect(() => native().mapFile(join(d, 'missing'), latin1)).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'open' }));
    }
  });
});

describe('bin/fspool', () => {
  /** The files under dist/ that `args` opened, each as 'mapped' or 'read' (strace). */
  function howLoaded(args: string[]): Map<string, string> {
    const trace = join(tempDir(), 'trace');
    const r = runSync('strace', ['-qq', '-e', 'trace=openat,mmap,read,pread64', '-o', trace, FSPOOL, ...args]);
    expect(r.code, r.stderr).toBe(0);
    const open = new Map<string, string>();
    const how = new Map<string, string>();
    for (const line of readFileSync(trace, 'utf8').split('\n')) {
      const o = /^openat\(AT_FDCWD, "([^"]*\/dist\/[^"]*)".* = (\d+)$/.exec(line);
      if (o) open.set(o[2]!, o[1]!.slice(o[1]!.indexOf('/dist/') + 1));
      const m = /^mmap\([^,]+, \d+, [^,]+, [^,]+, (\d+), 0\)/.exec(line);
      if (m && open.has(m[1]!)) how.set(open.get(m[1]!)!, 'mapped');
      const rd = /^p?read(?:64)?\((\d+),/.exec(line);
      if (rd && open.has(rd[1]!) && !how.has(open.get(rd[1]!)!)) how.set(open.get(rd[1]!)!, 'read');
    }
    return how;
  }

  it('maps the bundle and the code cache for its command rather than reading them into fresh memory', () => {
    const q = makeQueue();
    put(q, plainPacket(1, Buffer.from('x')));
    const cache = (s: string) => `dist/fspool.cjs.${s}${process.arch}.cache`;
    expect(howLoaded(['queue-process', '-q', q, 'true'])).toEqual(new Map([[cache('process.'), 'mapped'], ['dist/fspool.cjs', 'mapped']]));
    expect(howLoaded(['prepare', '-s', '-', '-i', '/dev/null'])).toEqual(new Map([[cache(''), 'mapped'], ['dist/fspool.cjs', 'mapped']]));
  });
});
