// enqueue, progress lines and shell completion, with real processes.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compress } from 'zstd-napi';
import { encodeHeader } from '../src/packet/codec.js';
import { fspl, fspool, FSPOOL, makeQueue, runSync, tempDir } from './helpers/cli.js';
import { allInJobs, nextseqText } from './helpers/queue.js';

describe('enqueue', () => {
  it('prepares and queues in one process; the packets run in order, with params and payload', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const seq = join(dir, 'seq');
    for (const [i, body] of ['one', 'two', 'three'].entries()) {
      const r = fspool(['enqueue', '-q', q, '-s', seq, '-i', '-', '--', `p${i + 1}`], { input: body });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.length).toBe(0);
    }
    expect(readFileSync(seq, 'latin1')).toBe('4\n');
    const names = allInJobs(q);
    expect(names).toHaveLength(3);
    expect(names.every((n) => /^fspl-[0-9a-f-]{36}\.fspl$/.test(n))).toBe(true);
    const out = fspool(['queue-process', '-q', q, '--allow-job-params', 'sh', '--', '-c', 'echo "$FSPL_SEQ $(cat) $1"', 'x']);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout.toString()).toBe('1 one p1\n2 two p2\n3 three p3\n');
  });

  it('writes packets fspl reads, compressed too', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    expect(fspool(['enqueue', '-q', q, '-s', join(dir, 's'), '-i', '-'], { input: 'plain' }).code).toBe(0);
    const r = fspl(['queue-process', '-q', q, 'cat']);
    expect(r.stdout.toString()).toBe('plain');
    expect(fspool(['enqueue', '-q', q, '-s', join(dir, 's'), '-i', '-', '--zstd'], { input: 'squeezed' }).code).toBe(0);
    expect(fspool(['queue-process', '-q', q, 'cat']).stdout.toString()).toBe('squeezed');
  });

  it('consumes no number and leaves no file when the input is missing or the queue is not one', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const seq = join(dir, 'seq');
    writeFileSync(seq, '7\n');
    const missing = fspool(['enqueue', '-q', q, '-s', seq, '-i', join(dir, 'nope')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(`Error: input ${join(dir, 'nope')}: no such file or directory (ENOENT); check the path given to -i; nothing was written\n`);
    const notQueue = fspool(['enqueue', '-q', join(dir, 'noq'), '-s', seq]);
    expect(notQueue.code).toBe(1);
    expect(notQueue.stderr).toMatch(/is not a queue/);
    expect(readFileSync(seq, 'latin1')).toBe('7\n');
    expect(allInJobs(q)).toEqual([]);
  });

  it('a full disk leaves the number unconsumed and no temp file (the seqfile on /dev/full)', () => {
    // The seqfile cannot be replaced on /dev/full: prepare fails after the packet is durable,
    // and enqueue must then discard the packet rather than publish it without its number.
    const dir = tempDir();
    const q = makeQueue(dir);
    const r = fspool(['enqueue', '-q', q, '-s', '/dev/full/seq', '-i', '-'], { input: 'x' });
    expect(r.code).toBe(1);
    expect(allInJobs(q)).toEqual([]);
  });
});

describe('progress', () => {
  // `script` gives the command a terminal; its output is the terminal's.
  const onTerminal = (cmd: string) => runSync('script', ['-qec', cmd, '/dev/null'], { timeoutMs: 30_000 });
  const slowInput = `sh -c 'for i in 1 2 3 4 5 6 7 8 9 10; do head -c 500000 /dev/zero; sleep 0.2; done'`;
  /**
   * A queue whose one job carries `size` zero bytes, processed on a terminal by `receiver` (a
   * function of the queue's folder, where it may put a script): the terminal's text, and each
   * line drawn (every redraw begins with \r and ESC [K: what follows is the line as shown).
   */
  function jobOnTerminal(size: number, receiver: (dir: string) => string, before = ''): { text: string; drawn: string[] } {
    const dir = tempDir();
    const q = makeQueue(dir);
    writeFileSync(join(dir, 'payload'), Buffer.alloc(size));
    expect(fspool(['enqueue', '-q', q, '-s', '-', '-i', join(dir, 'payload')]).code).toBe(0);
    const text = onTerminal(`${before}${FSPOOL} queue-process -q ${q} ${receiver(dir)}`).stdout.toString();
    return { text, drawn: text.split('\r\x1b[K').slice(1).map((l) => l.replace(/\r?\n[\s\S]*$/, '')) };
  }

  it('draws bytes, rate and time on a terminal for a transfer longer than a second', () => {
    const dir = tempDir();
    const r = onTerminal(`${slowInput} | ${FSPOOL} prepare -s - -i - > ${join(dir, 'p')}`);
    const text = r.stdout.toString();
    expect(text).toMatch(/prepare seq 1: [\d.]+ MiB, [\d.]+ [KM]iB\/s, \ds/);
    // stdout (the packet) got none of it
    const packet = readFileSync(join(dir, 'p'));
    expect(packet.length).toBe(85 + 5_000_000);
    expect(packet.includes(Buffer.from('MiB/s'))).toBe(false);
  });

  it('is silent with --quiet, and when stderr is not a terminal', () => {
    const dir = tempDir();
    expect(onTerminal(`${slowInput} | ${FSPOOL} prepare -s - -i - --quiet > ${join(dir, 'p')}`).stdout.toString()).toBe('');
    const piped = runSync('sh', ['-c', `${slowInput} | ${FSPOOL} prepare -s - -i - > ${join(dir, 'p2')}`]);
    expect(piped.stderr).toBe('');
  });

  it('follows the receiver through a zero-copy job', () => {
    const { text } = jobOnTerminal(3_000_000, () => `sh -- -c 'for i in $(seq 15); do dd bs=200000 count=1 status=none of=/dev/null; sleep 0.1; done'`);
    expect(text).toMatch(/job 1 \(sh\): [\d.]+ [KM]iB of 2\.9 MiB/);
  });

  it('says when the payload is all delivered and the receiver still runs, the transfer figures kept', () => {
    const { drawn } = jobOnTerminal(3_000_000, () => `sh -- -c 'for i in $(seq 8); do dd bs=400000 count=1 status=none of=/dev/null; sleep 0.2; done; sleep 2'`);
    const waiting = drawn.filter((l) => l.includes('receiver running'));
    expect(waiting.length, drawn.join('\n')).toBeGreaterThan(0);
    // The elapsed time and rate are the transfer's, frozen; only the receiver's time moves.
    const figures = new Set(waiting.map((l) => l.replace(/, receiver running \d+s$/, '')));
    expect(figures.size, waiting.join('\n')).toBe(1);
    expect([...figures][0]).toMatch(/^job 1 \(sh\): 2\.9 MiB of 2\.9 MiB \(100%\), [\d.]+ [KM]iB\/s, \ds$/);
    expect(drawn.at(-1)).toMatch(/\(100%\), [\d.]+ [KM]iB\/s, \ds, done$/);
  });

  it('an empty payload: the time keeps counting while the receiver works', () => {
    const { drawn } = jobOnTerminal(0, () => `sh -- -c 'sleep 2.3'`);
    expect(drawn.some((l) => /: 0 B, 0 B\/s, 2s$/.test(l)), drawn.join('\n')).toBe(true);
    expect(drawn.some((l) => l.includes('receiver running')), drawn.join('\n')).toBe(false);
  });

  it('fits an 80-column terminal: a long label gives way, no line wraps', () => {
    const receiver = (dir: string) => {
      const recv = join(dir, 'a-receiver-with-a-name-long-enough-to-push-the-progress-line-past-eighty-columns');
      writeFileSync(recv, '#!/bin/sh\nfor i in $(seq 15); do dd bs=200000 count=1 status=none of=/dev/null; sleep 0.1; done\n', { mode: 0o755 });
      return recv;
    };
    const { drawn } = jobOnTerminal(3_000_000, receiver, 'stty cols 80; unset COLUMNS; ');
    expect(drawn.length).toBeGreaterThan(0);
    for (const l of drawn) {
      expect([...l].length, l).toBeLessThanOrEqual(79);
      // (Once the payload is all taken, the figures are longer, and less of the label is left.)
      expect(l).toMatch(/^….*columns\): [\d.]+ [KM]iB of 2\.9 MiB \(\d+%\)/);
    }
  });
});

describe('completion', () => {
  it('prints a bash script by default and a zsh one for zsh users, naming the subcommands', () => {
    const bash = fspool(['completion'], { env: { ...process.env, SHELL: '/bin/bash' } });
    expect(bash.code).toBe(0);
    expect(bash.stdout.toString()).toMatch(/complete -o bashdefault -o default -F _fspool_yargs_completions fspool/);
    const zsh = fspool(['completion'], { env: { ...process.env, SHELL: '/usr/bin/zsh' } });
    expect(zsh.stdout.toString()).toMatch(/^#compdef fspool/m);
    const words = fspool(['--get-yargs-completions', 'fspool', '']).stdout.toString().split('\n');
    expect(words).toEqual(expect.arrayContaining(['queue-process', 'enqueue', 'stdin-info']));
  });
});

describe('scanning many encoded packets', () => {
  // Regression: a scan that stopped reading an encoded file closed its fd while a read was
  // still queued in the thread pool; the next file opened under that number lost its first
  // bytes to the stale read and was reported as empty, and processing stopped at a false gap.
  it('lists and processes every zstd packet of a large queue, every time', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const n = 200;
    // The packets are made here (what `prepare --zstd` makes: a header, zstd with a checksum):
    // a process per packet would add nothing to what this tests, the scan.
    for (let i = 0; i < n; i++) {
      const header = encodeHeader({ seq: BigInt(i + 1), ctimeSecs: 1_700_000_000n, ctimeNanos: i, cmd: { kind: 'Command', params: [], env: [] } });
      writeFileSync(join(q, 'jobs', `fspl-${String(i).padStart(4, '0')}.fspl`), compress(header, { checksumFlag: true }));
    }
    for (let round = 0; round < 3; round++) {
      const ls = fspool(['queue-ls', '-q', q]);
      expect(ls.stderr).toBe('');
      expect(ls.stdout.toString().trim().split('\n')).toHaveLength(n + 1);
      runSync('rm', ['-rf', join(q, 'fspool')]); // no header cache: read every file again
    }
    const r = fspool(['-l', 'warn', 'queue-process', '-q', q, 'true']);
    expect(r.code, r.stderr).toBe(0);
    expect(nextseqText(q)).toBe(`${n + 1}\n`);
  }, 120_000);
});

it("the receiver inherits fspool's own environment byte for byte, non-UTF-8 values included", () => {
  const dir = tempDir();
  const out = join(dir, 'seen');
  // sh builds the variable from raw bytes; Node's process.env would have turned them into U+FFFD.
  const r = runSync('sh', ['-c', `WEIRD="$(printf 'a\\376b')" ; export WEIRD; printf x | "$0" prepare -s - -i - | "$0" stdin-process sh -- -c 'printf %s "$WEIRD" > "$0"' "$1"`, FSPOOL, out]);
  expect(r.code, r.stderr).toBe(0);
  expect(readFileSync(out)).toEqual(Buffer.from([0x61, 0xfe, 0x62]));
});

describe('start-up', () => {
  it('loads no built-in module the command does not use (streams, zlib, net, tty, crypto, child_process)', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    // Which of Node's own modules the command loads beyond what Node loads for any script.
    const preload = join(dir, 'loaded.cjs');
    const out = join(dir, 'loaded');
    writeFileSync(preload, `const base = new Set(process.moduleLoadList);
process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(out)}, process.moduleLoadList.filter((m) => !base.has(m)).join('\\n')));`);
    const heavy = /^NativeModule (zlib|net|tty|crypto|child_process)$/;
    const streams = /^NativeModule (stream|internal\/streams\/)/;
    // queue-ls writes its listing through process.stdout, a stream.
    for (const [args, allowStreams] of [[['prepare', '-s', '-'], false], [['queue-process', '-q', q, 'true'], false], [['queue-ls', '-q', q], true]] as const) {
      const r = runSync(FSPOOL, [...args], { env: { ...process.env, NODE_OPTIONS: `-r ${preload}` } });
      expect(r.code, r.stderr).toBe(0);
      const loaded = readFileSync(out, 'utf8').split('\n');
      expect(loaded.filter((m) => heavy.test(m) || (!allowStreams && streams.test(m))), args.join(' ')).toEqual([]);
    }
  });
});
