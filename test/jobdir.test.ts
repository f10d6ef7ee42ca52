// The native directory read of listings (native/fspool_sys.c scanJobDir, src/queue/jobfile.ts
// readJobDir/JobDir) checked against Node's own readdirSync and lstatSync on real directories:
// regular files, FIFOs, symlinks (to files, to FIFOs, dangling), a directory, names outside
// fspl's glob, names with control characters and bytes that are not UTF-8, and entries that
// vanish between the directory's read and their lstat.
import { spawn } from 'node:child_process';
import { lstatSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Keyring } from '../src/codec/keys.js';
import { readJobDir } from '../src/queue/jobfile.js';
import { Queue } from '../src/queue/queue.js';
import { native } from '../src/sys/native.js';
import { fspool, makeQueue, preparePacket, runSync, tempDir } from './helpers/cli.js';

const GLOB = /^fspl-[\s\S]*\.fspl$/;

function mkfifo(path: string): void {
  const r = runSync('mkfifo', [path]);
  expect(r.code, r.stderr).toBe(0);
}

/** What Node says of `dir`: the names of fspl's glob, sorted by their bytes, with lstatSync's answer. */
function nodeView(dir: string) {
  return readdirSync(dir, { encoding: 'buffer' })
    .filter((b) => GLOB.test(b.toString('latin1')))
    .sort(Buffer.compare)
    .map((raw) => ({ raw, st: lstatSync(Buffer.concat([Buffer.from(`${dir}/`), raw])) }));
}

describe('scanJobDir / JobDir', () => {
  it('gives the names of fspl-*.fspl in byte order, each with what lstatSync says of it; opens no FIFO', () => {
    const d = tempDir();
    writeFileSync(join(d, 'fspl-b.fspl'), 'x'.repeat(123));
    writeFileSync(join(d, 'fspl-a.fspl'), '');
    writeFileSync(join(d, 'fspl-.fspl'), 'shortest name of the glob');
    writeFileSync(join(d, 'fspl-new\nline\x1b[31m.fspl'), 'control characters');
    writeFileSync(join(d, 'fspl-\u00e9t\u00e9-\u{1f600}-\uffff.fspl'), 'beyond the BMP, and U+FFFF (UTF-16 and UTF-8 orders differ here)');
    writeFileSync(join(d, 'fspl-\ue000.fspl'), 'U+E000');
    writeFileSync(join(d, 'not-a-job.fspl'), 'outside the glob');
    writeFileSync(join(d, 'fspl-x.fspl.tmp'), 'outside the glob');
    writeFileSync(join(d, 'fspl.fspl'), 'outside the glob');
    mkfifo(join(d, 'fspl-fifo.fspl'));
    mkfifo(join(d, 'fifo'));
    symlinkSync(join(d, 'fifo'), join(d, 'fspl-link-to-fifo.fspl'));
    symlinkSync(join(d, 'fspl-b.fspl'), join(d, 'fspl-link-to-file.fspl'));
    symlinkSync(join(d, 'nowhere'), join(d, 'fspl-dangling.fspl'));
    mkdirSync(join(d, 'fspl-dir.fspl'));

    const expected = nodeView(d);
    const r = native().scanJobDir(d);
    if (typeof r === 'number') throw new Error(`errno ${r}`);
    const dir = readJobDir(d);
    expect(dir.unnamed).toEqual([]);
    expect(dir.length).toBe(expected.length);
    expect(dir.names).toEqual(expected.map((e) => e.raw.toString('utf8')));
    expected.forEach(({ raw, st }, i) => {
      const name = raw.toString('utf8');
      expect(dir.name(i), name).toBe(name);
      expect(dir.vanished(i), name).toBe(false);
      if (st.isFile()) {
        expect(dir.problem(i), name).toBeUndefined();
        // The same doubles Node computes: identities compare equal to those of (f|l)statSync.
        expect(dir.identity(i), name).toEqual({ dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs });
        expect(dir.identityKey(i), name).toBe(`${st.dev} ${st.ino} ${st.size} ${st.mtimeMs} ${st.ctimeMs}`);
      } else {
        expect(dir.identity(i), name).toBeUndefined();
        expect(dir.identityKey(i), name).toBe('');
        const kind = st.isFIFO() ? 'a FIFO' : st.isSymbolicLink() ? 'a symbolic link' : 'a directory';
        expect(dir.problem(i), name).toBe(`${kind}; job files must be regular files: remove it`);
      }
    });
    // The raw arrays: mode as lstat has it (a symlink is a symlink, a FIFO a FIFO).
    const [blob, stats] = r;
    expect(blob.toString('utf8').split('\0').slice(0, -1)).toEqual(dir.names);
    expected.forEach(({ st }, i) => expect(stats[i * 10 + 2]).toBe(st.mode));
  });

  it('a directory large enough to be lstat-ed on several threads: every entry where it belongs, as lstatSync says', () => {
    // Several thousand names, with the kinds of entry spread over the whole sorted range, so
    // that each thread's share (one per 1,024 names, at most one per CPU and four in all) holds
    // files of several sizes, FIFOs, symlinks and directories, and a mistake in which share
    // fills which fields shows.
    const d = tempDir();
    const fifos: string[] = [];
    for (let i = 0; i < 6000; i++) {
      const p = join(d, `fspl-${String(i).padStart(5, '0')}.fspl`);
      if (i % 97 === 0) fifos.push(p);
      else if (i % 89 === 0) symlinkSync(join(d, 'fspl-00001.fspl'), p);
      else if (i % 83 === 0) mkdirSync(p);
      else writeFileSync(p, 'x'.repeat(i % 300));
    }
    const made = runSync('mkfifo', fifos);
    expect(made.code, made.stderr).toBe(0);
    const expected = nodeView(d);
    const dir = readJobDir(d);
    expect(dir.names).toEqual(expected.map((e) => e.raw.toString('utf8')));
    expected.forEach(({ st }, i) => {
      const name = dir.name(i);
      if (st.isFile()) {
        expect(dir.identity(i), name).toEqual({ dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs });
      } else {
        expect(dir.identity(i), name).toBeUndefined();
        expect(dir.problem(i), name).toMatch(/^a (FIFO|symbolic link|directory); /);
      }
    });
    expect(expected.filter((e) => e.st.isFIFO())).toHaveLength(fifos.length);
  });

  it('leaves out names that are not UTF-8 and returns them as bytes; the others keep their stats', () => {
    const d = tempDir();
    const bad = Buffer.concat([Buffer.from('fspl-'), Buffer.from([0xff, 0xfe, 0x41]), Buffer.from('.fspl')]);
    writeFileSync(Buffer.concat([Buffer.from(`${d}/`), bad]), 'bad name');
    writeFileSync(join(d, 'fspl-1.fspl'), 'one');
    writeFileSync(join(d, 'fspl-zz.fspl'), 'two!');
    const dir = readJobDir(d);
    expect(dir.unnamed).toEqual(['fspl-\\xff\\xfeA.fspl']); // its bytes, shown
    expect(dir.names).toEqual(['fspl-1.fspl', 'fspl-zz.fspl']);
    expect(dir.name(1)).toBe('fspl-zz.fspl');
    for (let i = 0; i < dir.length; i++) {
      const st = lstatSync(join(d, dir.name(i)));
      expect(dir.identity(i)).toEqual({ dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs });
    }
  });

  it('an empty directory, and directories that cannot be read: the errno, as lstat would say it', () => {
    const d = tempDir();
    const dir = readJobDir(d);
    expect(dir.length).toBe(0);
    expect(dir.names).toEqual([]);
    expect(native().scanJobDir(join(d, 'missing'))).toBe(2); // ENOENT
    writeFileSync(join(d, 'file'), '');
    expect(native().scanJobDir(join(d, 'file'))).toBe(20); // ENOTDIR
    // A FIFO where the directory should be is refused, not opened (that would wait for a writer).
    mkfifo(join(d, 'fifo'));
    expect(native().scanJobDir(join(d, 'fifo'))).toBe(20);
    expect(() => readJobDir(join(d, 'missing'))).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'scandir' }));
  });

  it('an entry removed between the directory read and its lstat is reported vanished, not as an error', async () => {
    const d = tempDir();
    let caught = 0;
    // Another process removes the files while this one scans, until a scan catches one in
    // between (almost always in the first round; a few rounds allowed for a loaded machine).
    for (let round = 0; round < 10 && caught === 0; round++) {
      for (let i = 0; i < 20000; i++) writeFileSync(join(d, `fspl-${String(i).padStart(6, '0')}.fspl`), '');
      const rm = spawn('find', [d, '-name', 'fspl-*.fspl', '-delete'], { stdio: 'ignore' });
      const exited = new Promise((resolve) => rm.on('exit', resolve));
      try {
        while (rm.exitCode === null) {
          const dir = readJobDir(d);
          for (let i = 0; i < dir.length; i++) {
            if (!dir.vanished(i)) continue;
            caught++;
            expect(dir.problem(i)).toBeUndefined();
            expect(dir.identity(i)).toBeUndefined();
            expect(dir.identityKey(i)).toBe('');
            expect(() => lstatSync(join(d, dir.name(i)))).toThrow(expect.objectContaining({ code: 'ENOENT' }));
          }
          await new Promise((resolve) => setImmediate(resolve));
        }
      } finally {
        await exited;
      }
      expect(readJobDir(d).length).toBe(0);
    }
    expect(caught).toBeGreaterThan(0);
  }, 300_000);

  it('the header cache finds every name, whatever its bytes: names beyond the BMP sort where SQLite puts them', () => {
    const q = makeQueue();
    const seq = tempDir();
    // Names whose UTF-16 order differs from their byte order (SQLite's and the directory
    // read's): a surrogate pair against U+E000..U+FFFF; and control characters.
    const names = ['fspl-\u{1f600}.fspl', 'fspl-\uffff.fspl', 'fspl-\ue000.fspl', 'fspl-a.fspl', 'fspl-\u00e9.fspl', 'fspl-\n\x1b.fspl', 'fspl-\u{10ffff}z.fspl'];
    for (const n of names) writeFileSync(join(q, 'jobs', n), preparePacket(['-s', join(seq, 'S'), '-i', '-'], n));
    const first = fspool(['-l', 'debug', 'queue-ls', '-q', q]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain(`header cache: 0 hit(s), ${names.length} file(s) to read`);
    const second = fspool(['-l', 'debug', 'queue-ls', '-q', q]);
    expect(second.stderr).toContain(`header cache: ${names.length} hit(s), 0 file(s) to read`);
    expect(second.stdout.toString()).toBe(first.stdout.toString());
    // Control characters are shown escaped, never raw.
    expect(second.stdout.toString()).not.toContain('\x1b');
    expect(second.stdout.toString().trimEnd().split('\n')).toHaveLength(names.length + 1);
  });
});

describe('what a scan reads is what its listing found', () => {
  it('a file opened through a jobs/ swapped for a symlink after the listing (another inode) is taken as vanished, not read as the job', async () => {
    const d = tempDir();
    const q = makeQueue(d);
    const elsewhere = join(d, 'elsewhere');
    mkdirSync(elsewhere);
    for (const [dir, payload] of [[join(q, 'jobs'), 'queued'], [elsewhere, 'not this queue\'s']] as const) {
      writeFileSync(join(d, 'seq'), '1\n');
      writeFileSync(join(dir, 'fspl-x.fspl'), preparePacket(['-s', join(d, 'seq'), '-i', '-'], payload));
    }
    const queue = new Queue(q);
    const ctx = { keys: new Keyring({ defaults: false }) };
    const listed = queue.jobDir();
    renameSync(join(q, 'jobs'), join(q, 'jobs.real'));
    symlinkSync(elsewhere, join(q, 'jobs'));
    for (const decoder of [undefined, 'cat']) {
      const read = await queue.readHeaders({ ...ctx, decoder }, listed, [0]);
      expect(read.map((j) => [j.name, j.vanished, j.header]), decoder ?? 'plain').toEqual([['fspl-x.fspl', true, undefined]]);
    }
    // Put back: the same file as listed is read.
    rmSync(join(q, 'jobs'));
    renameSync(join(q, 'jobs.real'), join(q, 'jobs'));
    const [job] = await queue.readHeaders(ctx, listed, [0]);
    expect(job!.header?.seq).toBe(1n);
  });
});
