// First contact with the command line: help on a real terminal, usage errors that name the
// word at fault, shell completion, queue-status --nagios and the progress line, with real
// processes (a pty from python3 where a terminal matters).
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FSPOOL, fspool, makeQueue, preparePacket, runSync, tempDir } from './helpers/cli.js';
import { put } from './helpers/queue.js';
import { helpWidth } from '../src/cli/help.js';
import { didYouMean } from '../src/cli/suggest.js';
import { progressLine } from '../src/progress.js';
import { onPty, visibleLines } from './helpers/pty.js';

const SUBCOMMANDS = fspool(['--get-yargs-completions', 'fspool', '']).stdout.toString().trim().split('\n');

/** The examples of a subcommand's help: command lines, each followed by its description. */
function examplesOf(text: string): string[] {
  const at = text.indexOf('\nExamples:\n');
  return at < 0 ? [] : text.slice(at + '\nExamples:\n'.length).split('\n').filter((l) => /^ {2}\S/.test(l));
}

/**
 * The program's help and each subcommand's, in one terminal session `cols` wide: the help
 * texts in the order of ['', ...SUBCOMMANDS], plus what followed the last one. Made once per
 * width for the tests that read them.
 */
const helpSessions = new Map<number, string[]>();
function helpOnPty(cols: number): string[] {
  let texts = helpSessions.get(cols);
  if (!texts) {
    const END = '=== end of help ===';
    const loop = ['', ...SUBCOMMANDS].map((sub) => `${FSPOOL} ${sub} --help && echo '${END}'`).join('; ');
    texts = onPty(cols, ['sh', '-c', loop]).text.split(`${END}\n`);
    helpSessions.set(cols, texts);
  }
  return texts;
}

describe('help on a terminal', () => {
  it('lists every subcommand', () => {
    expect(SUBCOMMANDS).toEqual(expect.arrayContaining(['enqueue', 'prepare', 'queue-process', 'queue-status', 'stdin-process', 'completion', 'help']));
    expect(SUBCOMMANDS.length).toBeGreaterThanOrEqual(25);
  });

  it.each([80, 200])('at %i columns: lines fit (at most 120 wide), words are whole, examples too', (cols) => {
    const limit = Math.min(cols, 120);
    let widest = 0;
    // One terminal session for all of them: the program's help, then each subcommand's.
    const texts = helpOnPty(cols);
    expect(texts.length, texts.join('')).toBe(SUBCOMMANDS.length + 2);
    for (const [i, sub] of ['', ...SUBCOMMANDS].entries()) {
      const r = { text: texts[i]! };
      const examples = examplesOf(r.text);
      if (sub && sub !== 'help') expect(examples.length, `${sub} has an example`).toBeGreaterThan(0);
      for (const e of examples) expect(e, `${sub}: an example is a whole command line`).toMatch(/fspool /);
      for (const line of r.text.split('\n')) {
        widest = Math.max(widest, line.length);
        expect(line.length, `${sub}: "${line}"`).toBeLessThanOrEqual(limit);
        // a hint glued to the word before it, as yargs' layout did ("the run[boolean]")
        expect(line, `${sub}: "${line}"`).not.toMatch(/\w\[(boolean|string|number|required|default)/);
      }
    }
    // the width was used: 200 columns give wider lines than 80 can hold
    if (cols === 200) expect(widest).toBeGreaterThan(80);
    else expect(widest).toBeGreaterThan(60);
  });

  it('a long example goes on over lines ending in \\, broken where a shell reads it as one command: pasted, it runs as written', () => {
    const r = onPty(80, [FSPOOL, 'queue-process', '--help']);
    expect(r.text).toContain("\n  fspool queue-process -q q -d 'zstd -dc' --on-error delete sh -- -c \\\n    'tar xf - -C /srv'\n");
    expect(r.text).toContain('\n  fspool queue-process -q q --retries 3 --backoff 60 --on-error quarantine \\\n    ./apply\n      try 4 times, then set the job aside\n');
    expect(r.text).toContain('contrib/systemd/fspool-watch.service');
    // Every subcommand's: each wrapped example, pasted into a shell, is the one-line command.
    const texts = helpOnPty(80);
    let wrapped = 0;
    for (const [i, sub] of ['', ...SUBCOMMANDS].entries()) {
      const at = texts[i]!.indexOf('\nExamples:\n');
      if (at < 0) continue;
      const wide = fspool([...(sub ? [sub] : []), '--help'], { env: { ...process.env, COLUMNS: '400' } }).stdout.toString();
      const whole = examplesOf(wide);
      const pasted = texts[i]!.slice(at).replace(/ \\\n {4}/g, ' ');
      expect(examplesOf(pasted), sub).toEqual(whole);
      // Broken outside quotes and parentheses: the lines parse (bash -n: read, never run).
      for (const m of texts[i]!.slice(at).matchAll(/^ {2}\S.* \\\n(?: {4}.* \\\n)* {4}.*$/gm)) {
        wrapped++;
        const parsed = runSync('bash', ['-n', '-c', m[0]]);
        expect(parsed.code, `${m[0]}\n${parsed.stderr}`).toBe(0);
        // No break inside quotes (there a backslash and newline would be part of the word).
        for (const line of m[0].split('\n')) for (const q of ["'", '"']) expect(line.split(q).length % 2, `${q} in ${line}`).toBe(1);
      }
    }
    expect(wrapped).toBeGreaterThan(5);
  });

  it('descriptions wrap between words: every option description is there with its words whole', () => {
    const r = onPty(80, [FSPOOL, 'queue-process', '--help']);
    const flat = r.text.replace(/\s+/g, ' ');
    expect(flat).toContain('Keep running: process each packet as it lands (inotify, and a rescan every --rescan seconds); SIGTERM ends the run [boolean]');
    expect(flat).toContain('What to do with a job that failed: delete it, leave it (and go on), retry it next run, or quarantine it');
  });

  it('uses the terminal on fd 2 when stdout is a pipe (help piped into a pager)', () => {
    const r = onPty(64, ['sh', '-c', `${FSPOOL} queue-process --help | cat`]);
    expect(r.code).toBe(0);
    const lines = r.text.split('\n');
    const examples = examplesOf(r.text);
    for (const l of lines.filter((x) => !examples.includes(x))) expect(l.length, l).toBeLessThanOrEqual(64);
    expect(Math.max(...lines.filter((x) => !examples.includes(x)).map((l) => l.length))).toBeGreaterThan(50);
  });

  it('COLUMNS, when exported, wins; without a terminal the width is 80', () => {
    const wide = fspool(['queue-process', '--help'], { env: { ...process.env, COLUMNS: '100' } }).stdout.toString();
    const { COLUMNS: _c, ...noColumns } = process.env;
    const plain = fspool(['queue-process', '--help'], { env: noColumns }).stdout.toString();
    const width = (t: string) => Math.max(...t.split('\n').filter((l) => !examplesOf(t).includes(l)).map((l) => l.length));
    expect(width(wide)).toBeGreaterThan(80);
    expect(width(wide)).toBeLessThanOrEqual(100);
    expect(width(plain)).toBeLessThanOrEqual(80);
  });
});

describe('the pieces, as units', () => {
  it('help width: COLUMNS if exported, else fd 1, else fd 2, else 80; between 40 and 120', () => {
    const tty = (w: Record<number, number>) => (fd: number) => w[fd];
    expect(helpWidth({ COLUMNS: '90' }, tty({ 1: 200 }))).toBe(90);
    expect(helpWidth({ COLUMNS: 'wide' }, tty({ 1: 100 }))).toBe(100);
    expect(helpWidth({}, tty({ 2: 70 }))).toBe(70);
    expect(helpWidth({}, tty({ 1: 100, 2: 70 }))).toBe(100);
    expect(helpWidth({}, tty({}))).toBe(80);
    expect(helpWidth({}, tty({ 1: 300 }))).toBe(120);
    expect(helpWidth({ COLUMNS: '20' }, tty({}))).toBe(40);
  });

  it('suggestions: close words only', () => {
    expect(didYouMean('queue-proces', ['queue-process', 'queue-ls'])).toBe('queue-process');
    expect(didYouMean('on-eror', ['on-error', 'order-by'])).toBe('on-error');
    expect(didYouMean('frobnicate', ['queue-process', 'queue-ls'])).toBeUndefined();
  });

  it('progress line: with a total, the share done and the time left', () => {
    const MiB = 1024 * 1024;
    expect(progressLine('job 3 (zfs)', 10 * MiB, undefined, 5)).toBe('job 3 (zfs): 10.0 MiB, 2.0 MiB/s, 5s');
    expect(progressLine('job 3 (zfs)', 10 * MiB, 40 * MiB, 5)).toBe('job 3 (zfs): 10.0 MiB of 40.0 MiB (25%), 2.0 MiB/s, 5s, 15s left');
    expect(progressLine('enqueue seq 9', 1 * MiB, 2000 * MiB, 65)).toBe('enqueue seq 9: 1.0 MiB of 2.0 GiB (0%), 15.8 KiB/s, 1m05s, 36h05m left');
    expect(progressLine('prepare seq 1', 40 * MiB, 40 * MiB, 5)).toBe('prepare seq 1: 40.0 MiB of 40.0 MiB (100%), 8.0 MiB/s, 5s, done');
    // All of it taken 75 s ago, the receiver still at work: the transfer's figures stay.
    expect(progressLine('job 3 (zfs)', 40 * MiB, 40 * MiB, 5, undefined, 75)).toBe('job 3 (zfs): 40.0 MiB of 40.0 MiB (100%), 8.0 MiB/s, 5s, receiver running 1m15s');
    // Fitted to a terminal's width, one column free: the label gives way from its start, then the figures' end.
    const long = 'job 12 (/var/spool/fspool/tank-data/jobs/fspl-0d6f4c9e-5b1a-4c55-9a7e-2f1b3c4d5e6f.fspl)';
    const at80 = progressLine(long, 10 * MiB, 40 * MiB, 5, 80);
    expect([...at80]).toHaveLength(79);
    expect(at80).toBe('…5-9a7e-2f1b3c4d5e6f.fspl): 10.0 MiB of 40.0 MiB (25%), 2.0 MiB/s, 5s, 15s left');
    expect(progressLine('job 3 (zfs)', 10 * MiB, 40 * MiB, 5, 80)).toBe('job 3 (zfs): 10.0 MiB of 40.0 MiB (25%), 2.0 MiB/s, 5s, 15s left');
    expect(progressLine(long, 10 * MiB, 40 * MiB, 5, 60)).toBe('10.0 MiB of 40.0 MiB (25%), 2.0 MiB/s, 5s, 15s left');
    expect(progressLine(long, 10 * MiB, 40 * MiB, 5, 30)).toBe('10.0 MiB of 40.0 MiB (25%), 2');
  });
});

describe('help text', () => {
  const help = (...a: string[]) => {
    const r = fspool([...a, '--help'], { env: { ...process.env, COLUMNS: '120' } });
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.toString();
  };

  it('usage lines name the required options, and positionals that are required without brackets', () => {
    expect(help('queue-info')).toMatch(/^Usage: fspool queue-info -q DIR -j ID \[OPTIONS\]$/m);
    expect(help('queue-process')).toMatch(/^Usage: fspool queue-process -q DIR \[OPTIONS\] COMMAND \[-- PARAMS\.\.\.\]$/m);
    expect(help('queue-set-next')).toMatch(/^Usage: fspool queue-set-next -q DIR \[OPTIONS\] ID$/m);
    expect(help('prepare-set-next')).toMatch(/^Usage: fspool prepare-set-next -s FILE \[OPTIONS\] ID$/m);
    expect(help('enqueue')).toMatch(/^Usage: fspool enqueue -q DIR -s FILE \[OPTIONS\] \[-- PARAMS\.\.\.\]$/m);
    // every subcommand: each [required] option is in its usage line (the help at 120 columns,
    // as the terminal 200 wide shows it)
    const texts = helpOnPty(200);
    expect(texts.length).toBe(SUBCOMMANDS.length + 2);
    for (const [i, sub] of SUBCOMMANDS.entries()) {
      const text = texts[i + 1]!;
      const usage = text.split('\n')[0]!;
      for (const m of text.matchAll(/^ {2}(-\w), --[\w-]+ (\S+) .*\[required\]/gm)) expect(usage, `${sub}: ${m[1]}`).toContain(`${m[1]} ${m[2]}`);
    }
  });

  it('numbers are [number]; prepare and enqueue say what they do; completion has help', () => {
    const flat = (t: string) => t.replace(/\s+/g, ' ');
    expect(flat(help('queue-info'))).toMatch(/-j, --job ID +The ID of the job \[number\] \[required\]/);
    expect(flat(help('queue-process'))).toMatch(/--timeout SECONDS A timeout, in seconds, [^[]*\[number\]/);
    expect(flat(help('queue-process'))).toMatch(/-n, --maxjobs N Maximum number of jobs to process \[number\]/);
    expect(help('prepare').split('\n')[2]).toMatch(/^Prepare a command packet/);
    expect(help('enqueue').split('\n')[2]).toMatch(/^Prepare a command packet and write it into a local queue/);
    const c = fspool(['completion', '--help']);
    expect(c.code).toBe(0);
    expect(c.stdout.toString()).toMatch(/^Usage: fspool completion/);
    expect(c.stdout.toString()).not.toMatch(/_fspool_yargs_completions/);
  });

  it('`fspool help SUBCOMMAND` is `fspool SUBCOMMAND --help`, as in fspl; `fspool help` is the list', () => {
    for (const sub of ['queue-ls', 'prepare', 'completion']) {
      const a = fspool(['help', sub]);
      expect(a.code, a.stderr).toBe(0);
      expect(a.stdout.toString()).toBe(fspool([sub, '--help']).stdout.toString());
    }
    expect(fspool(['help']).stdout.toString()).toBe(fspool(['--help']).stdout.toString());
    expect(fspool(['help']).stdout.toString()).toMatch(/^Subcommands:$/m);
    // help wins over missing required options
    expect(fspool(['queue-info', '-h']).code).toBe(0);
    expect(fspool(['-l', 'warn', 'queue-ls', '--help']).stdout.toString()).toMatch(/^Usage: fspool queue-ls/);
    // after --, -h is the command's
    const q = makeQueue();
    const r = fspool(['queue-process', '-q', q, 'sh', '--', '-h']);
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(0);
  });
});

describe('prepare to a terminal', () => {
  it('writes nothing and takes no number (the packet would be lost, and the receiver wait for it); a file, a pipe or /dev/null are fine', () => {
    const dir = tempDir();
    const seq = join(dir, 'seq');
    const r = onPty(80, [FSPOOL, 'prepare', '-s', seq, '-i', '/dev/null']);
    expect(r.code).toBe(1);
    expect(r.text).toBe('Error: stdout is a terminal, and a packet is binary: send it to a file (> p.fspl) or a pipe (| fspool queue-write -q QUEUE); nothing was written, no number was taken\n');
    expect(existsSync(seq)).toBe(false);
    expect(runSync('sh', ['-c', '"$0" prepare -s "$1" -i /dev/null >/dev/null && "$0" prepare -s "$1" -i /dev/null | cat >/dev/null', FSPOOL, seq]).code).toBe(0);
    expect(readFileSync(seq, 'utf8')).toBe('3\n');
  });
});

describe('the manual page', () => {
  it('shows every example as --help does, double quotes and all', () => {
    const page = join(FSPOOL, '../../dist/fspool.1');
    const roff = readFileSync(page, 'utf8');
    // A double quote on a macro line groups words and is dropped: only \(dq may be there.
    const macros = roff.split('\n').filter((l) => /^\.(B|I|SS) /.test(l));
    expect(macros.filter((l) => l.includes('"'))).toEqual([]);
    const text = runSync('man', ['-l', page], { env: { ...process.env, MANWIDTH: '400', MAN_KEEP_FORMATTING: '' } }).stdout.toString();
    const examples = fspool(['status', '--help'], { env: { ...process.env, COLUMNS: '400' } }).stdout.toString();
    const jq = /fspool status --config \S+ --json \| jq -r '[^']+'/.exec(examples)![0];
    expect(jq).toContain('"healthy"');
    expect(text).toContain(jq);
  });
});

describe('usage errors say what was meant', () => {
  const usage = (args: string[]) => {
    const r = fspool(args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout.length).toBe(0);
    return r.stderr.split('\n')[0]!;
  };

  it('a mistyped subcommand or option gets the nearest real one', () => {
    expect(usage(['queue-proces', '-q', 'q', 'true'])).toBe("error: unknown subcommand 'queue-proces'; did you mean queue-process?");
    expect(usage(['help', 'queue-lss'])).toBe("error: unknown subcommand 'queue-lss'; did you mean queue-ls?");
    expect(usage(['queue-frobnicate'])).toBe("error: unknown subcommand 'queue-frobnicate'; `fspool --help` lists them");
    expect(usage(['queue-process', '--on-eror', 'delete', '-q', 'q', 'true'])).toBe("error: unknown option '--on-eror'; did you mean --on-error?");
    expect(usage(['queue-ls', '--jsno', '-q', 'q'])).toBe("error: unknown option '--jsno'; did you mean --json?");
  });

  it('an unknown option is named as such, not as the required option it misspells', () => {
    expect(usage(['queue-ls', '--queudir', 'q'])).toBe("error: unknown option '--queudir'; did you mean --queuedir?");
    expect(usage(['queue-info', '-q', 'q'])).toBe('error: missing required option -j/--job ID: the ID of the job');
  });

  it("the command's own options go after --, and the error shows the line to run", () => {
    expect(usage(['queue-process', '-q', 'q', 'sh', '-c', 'echo hi'])).toBe(
      "error: '-c' is not an option of fspool queue-process; to pass it to sh, put the command's options after --: fspool queue-process -q q sh -- -c 'echo hi'",
    );
    expect(usage(['stdin-process', 'tar', 'xf', '-'])).toBe("error: unexpected argument 'xf' after the command tar; its arguments go after --: fspool stdin-process tar -- xf -");
    expect(usage(['queue-ls', '-q', 'q', 'extra'])).toBe("error: unexpected argument 'extra': fspool queue-ls takes no arguments");
  });

  it('an option without its value, and a negative number yargs reads as an option, are said as such, with the way to write it', () => {
    expect(usage(['queue-ls', '-q'])).toBe('error: option -q/--queuedir needs a value (DIR)');
    expect(usage(['queue-ls', '--queuedir', '--json'])).toBe('error: option -q/--queuedir needs a value (DIR)');
    expect(usage(['queue-process', '-q', 'q', '--timeout', '-5', 'true'])).toBe("error: '-5' after --timeout is read as an option, not as its value; to give it as the value, write --timeout=-5");
    expect(usage(['queue-set-next', '-q', 'q', '-5'])).toBe("error: '-5' is read as an option; to give it as ID, put it after --: fspool queue-set-next -q q -- -5");
    expect(usage(['queue-ls', '-q', 'q', '--json=yes'])).toBe('error: option --json takes no value (it is a switch): write --json alone');
    // Written so, it reaches the option's own check.
    expect(usage(['queue-process', '-q', 'q', '--timeout=-5', 'true'])).toBe('error: invalid value "-5" for --timeout: expected seconds (a number, 0 or more)');
  });

  it('an empty value (a variable left unset) is refused for every option, before anything is made; empty params stay params', () => {
    const dir = tempDir();
    const r = fspool(['prepare', '-s', join(dir, 'seq'), '-i', '/dev/null', '--outbox', ''], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe('error: --outbox was given an empty value (an unset variable?); give it one');
    expect(readdirSync(dir)).toEqual([]); // no outbox made in the current directory
    expect(usage(['outbox-resend', '--outbox', dir, '--exec', ''])).toBe('error: --exec was given an empty value (an unset variable?); give it one');
    expect(usage(['queue-process', '-q', '', 'true'])).toBe('error: --queuedir was given an empty value (an unset variable?); give it one');
    expect(usage(['queue-process', '-q', dir, '--receipt-exec', '', 'true'])).toBe('error: --receipt-exec was given an empty value (an unset variable?); give it one');
    expect(usage(['queue-process', '-q', dir, '--decrypt-key', 'k', '--decrypt-key', '', 'true'])).toBe('error: --decrypt-key was given an empty value (an unset variable?); give it one');
    const p = fspool(['prepare', '-s', '-', '-i', '/dev/null', '--', 'a', '', 'b']);
    expect(p.code, p.stderr).toBe(0);
  });
});

describe('completion', () => {
  const complete = (...words: string[]) => fspool(['--get-yargs-completions', 'fspool', ...words]).stdout.toString().trim().split('\n');

  it('offers real options only (no --l, --d, --q, --n)', () => {
    const all = complete('queue-process', '--');
    expect(all).toEqual(expect.arrayContaining(['--queuedir', '--on-error', '--decoder', '--maxjobs', '--log-level']));
    for (const w of all) expect(w).toMatch(/^--[\w-]{2,}$/);
    expect(complete('queue-process', '-')).toEqual(expect.arrayContaining(['-q', '-d', '-n', '-l', '--queuedir']));
  });

  it('completes the values of options with a fixed set', () => {
    expect(complete('queue-process', '--on-error', '')).toEqual(['delete', 'leave', 'retry', 'quarantine']);
    expect(complete('queue-process', '--on-error', 'q')).toEqual(['quarantine']);
    expect(complete('queue-process', '--order-by', '')).toEqual(['sequence', 'timestamp']);
    expect(complete('queue-process', '--output-to', '')).toEqual(['passboth', 'saveboth']);
    expect(complete('stdin-process', '--delivery', '')).toEqual(['stream', 'verified']);
    expect(complete('-l', '')).toEqual(['trace', 'debug', 'info', 'warn', 'error']);
    expect(complete('help', 'queue-l')).toEqual(['queue-ls']);
  });

  it('prints the script; a shell named after it is refused, not answered with bash\'s script', () => {
    expect(fspool(['completion']).stdout.toString()).toMatch(/^###-begin-fspool-completions-###/);
    const fish = fspool(['completion', 'fish']);
    expect(fish.code).toBe(2);
    expect(fish.stdout.length).toBe(0);
    expect(fish.stderr.split('\n')[0]).toBe("error: completion takes no arguments ('fish'): it prints a script for bash, or zsh when $SHELL is zsh");
  });
});

describe('queue-status --nagios', () => {
  function nagios(q: string, extra: string[] = []) {
    const r = fspool(['queue-status', '-q', q, '--nagios', ...extra]);
    return { code: r.code, first: r.stdout.toString().split('\n')[0]!, text: r.stdout.toString() };
  }

  it('one summary line first, then the report; OK 0, WARNING 1, CRITICAL 2, UNKNOWN 3', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const ok = nagios(q);
    expect(ok.code).toBe(0);
    expect(ok.first).toBe(`FSPOOL OK - ${q}: next 1, 0 pending | pending=0 stale=0 unreadable=0 quarantine=0`);
    expect(ok.text).toMatch(/^state: +healthy$/m);

    // stalled: a job due and no processor at it for --stalled-after seconds
    put(q, preparePacket(['-s', '-']));
    const stalled = nagios(q, ['--stalled-after', '0']);
    expect(stalled.code).toBe(1);
    expect(stalled.first).toMatch(new RegExp(`^FSPOOL WARNING - ${q}: next 1, 1 pending; job 1 is due since \\S+ and no processor has run it \\| pending=1 `));

    // failing: the due job's last run failed
    expect(fspool(['queue-process', '-q', q, 'false']).code).toBe(1);
    const failing = nagios(q);
    expect(failing.code).toBe(2);
    expect(failing.first).toMatch(new RegExp(`^FSPOOL CRITICAL - ${q}: next 1, 1 pending; job 1 failed at .*\\| pending=1 `));

    // no verdict at all: the queue is not there, or the command line is wrong
    const missing = nagios(join(dir, 'nope'));
    expect(missing.code).toBe(3);
    expect(missing.first).toMatch(/^FSPOOL UNKNOWN - \S*nope is not a queue/);
    const bad = fspool(['queue-status', '-q', q, '--nagios', '--stalled-after', 'soon']);
    expect(bad.code).toBe(3);
    expect(bad.stdout.toString()).toMatch(/^FSPOOL UNKNOWN - invalid value "soon" for --stalled-after/);
    const two = fspool(['queue-status', '-q', q, '--nagios', '--json']);
    expect(two.code).toBe(3);
    expect(two.stdout.toString()).toBe('FSPOOL UNKNOWN - --json and --nagios are different outputs: give one\n');
    const json = fspool(['queue-status', '-q', q, '--json', '--prometheus']);
    expect([json.code, json.stderr.split('\n')[0]]).toEqual([2, 'error: --json and --prometheus are different outputs: give one']);
    // without --nagios, the exit statuses stay fspool's
    expect(fspool(['queue-status', '-q', q]).code).toBe(4);
  });
});

describe('progress on a terminal', () => {
  it("the receiver's stderr never runs into the line; -l warn keeps it; a zero-copy job shows its total", () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    writeFileSync(join(dir, 'big'), Buffer.alloc(3_000_000));
    expect(fspool(['enqueue', '-q', q, '-s', '-', '-i', join(dir, 'big')]).code).toBe(0);
    const receiver = 'for i in $(seq 15); do dd bs=200000 count=1 status=none of=/dev/null; echo receiver-line-$i >&2; sleep 0.1; done';
    const r = onPty(100, [FSPOOL, '-l', 'warn', 'queue-process', '-q', q, 'sh', '--', '-c', receiver]);
    expect(r.code, r.text).toBe(0);
    const lines = visibleLines(r.text);
    // every line the receiver wrote is a line of its own on the terminal
    for (let i = 1; i <= 15; i++) expect(lines, r.text).toContain(`receiver-line-${i}`);
    for (const l of lines.filter((x) => x.includes('receiver-line'))) expect(l).toMatch(/^receiver-line-\d+$/);
    // and the progress line was there, with its total, share and time left
    expect(r.text).toMatch(/job 1 \(sh\): [\d.]+ [KM]iB of 2\.9 MiB \(\d+%\), [\d.]+ [KM]iB\/s, \ds, (\ds left|done)/);
    expect(lines.at(-2)).toMatch(/^job 1 \(sh\): 2\.9 MiB of 2\.9 MiB \(100%\), .*done$/);

    // stdin-process leaves the terminal to its command: its lines, and no progress line
    writeFileSync(join(dir, 'p.fspl'), preparePacket(['-s', '-', '-i', join(dir, 'big')]));
    const s = onPty(100, ['sh', '-c', `${FSPOOL} stdin-process sh -- -c '${receiver}' < ${join(dir, 'p.fspl')}`]);
    expect(s.code, s.text).toBe(0);
    expect(s.text).toBe(Array.from({ length: 15 }, (_, i) => `receiver-line-${i + 1}\n`).join(''));
  });

  it('prepare from a file shows its total; enqueue is labelled enqueue', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'big'), Buffer.alloc(4_000_000));
    // a slow reader of the packet keeps prepare busy for more than the second before the line
    const slowReader = "sh -c 'for i in $(seq 20); do dd bs=200000 count=1 status=none of=/dev/null; sleep 0.1; done; cat > /dev/null'";
    const prep = onPty(100, ['sh', '-c', `${FSPOOL} prepare -s - -i ${join(dir, 'big')} | ${slowReader}`]);
    expect(prep.code, prep.text).toBe(0);
    expect(prep.text).toMatch(/prepare seq 1: [\d.]+ [KM]iB of 3\.8 MiB \(\d+%\), /);

    const q = makeQueue(dir);
    const slowInput = `sh -c 'for i in 1 2 3 4 5 6 7 8; do head -c 300000 /dev/zero; sleep 0.2; done'`;
    const enq = onPty(100, ['sh', '-c', `${slowInput} | ${FSPOOL} -l warn enqueue -q ${q} -s ${join(dir, 'seq')} -i -`]);
    expect(enq.code, enq.text).toBe(0);
    expect(enq.text).toMatch(/enqueue seq 1: [\d.]+ [KM]iB, [\d.]+ [KM]iB\/s, \ds/);
    expect(enq.text).not.toMatch(/prepare seq/);
  });
});

describe('progress before the command starts', () => {
  it('--require-signature in stream mode: the verifying first pass draws its own line', () => {
    const dir = tempDir();
    const home = join(dir, 'gnupg');
    mkdirSync(home, { mode: 0o700 });
    const gpg = (args: string[]) => runSync('gpg', ['--homedir', home, '--batch', '--quiet', ...args]).stdout.toString();
    gpg(['--passphrase', '', '--quick-gen-key', 'sender@test', 'future-default', 'default', 'never']);
    writeFileSync(join(dir, 'sender.pub'), gpg(['--armor', '--export', 'sender@test']));
    writeFileSync(join(dir, 'sender.key'), gpg(['--armor', '--pinentry-mode', 'loopback', '--passphrase', '', '--export-secret-keys', 'sender@test']));
    writeFileSync(join(dir, 'big'), Buffer.alloc(2_000_000, 1));
    const q = makeQueue(dir);
    put(q, preparePacket(['-s', '-', '-i', join(dir, 'big'), '--sign-with', join(dir, 'sender.key')]));
    // a decoder that passes the packet on slowly keeps each pass busy for more than a second
    const slow = join(dir, 'slow');
    const script = ['#!/usr/bin/env python3', 'import sys, time', 'while True:', '    b = sys.stdin.buffer.read(200000)', '    if not b: break', '    sys.stdout.buffer.write(b)', '    sys.stdout.buffer.flush()', '    time.sleep(0.15)'];
    writeFileSync(slow, `${script.join('\n')}\n`, { mode: 0o755 });
    const r = onPty(100, [FSPOOL, 'queue-process', '-q', q, '-d', slow, '--require-signature', join(dir, 'sender.pub'), 'sh', '--', '-c', 'wc -c >&2']);
    expect(r.code, r.text).toBe(0);
    expect(r.text).toMatch(/verify seq 1 \(first of two passes\): [\d.]+ [KM]iB, /);
    expect(r.text).toMatch(/job 1 \(sh\): [\d.]+ [KM]iB, /);
    expect(visibleLines(r.text)).toContain('2000000');
  });
});

describe('errors say what they are about', () => {
  it('-i DIR, a seqfile in a missing directory, a gzip file given as a packet, -q a file or a missing directory', () => {
    const dir = tempDir();
    const i = fspool(['prepare', '-s', '-', '-i', dir]);
    expect(i.code).toBe(1);
    expect(i.stdout.length).toBe(0); // nothing was written before the refusal
    expect(i.stderr).toBe(`Error: input ${dir} is a directory; -i takes a file, or - for stdin (tar cf - DIR | fspool prepare -i - ...); nothing was written\n`);
    const s = fspool(['prepare', '-s', '/no/such/dir/seq']);
    expect(s.code).toBe(1);
    expect(s.stderr).toBe('Error: sequence file /no/such/dir/seq: directory /no/such/dir does not exist; create it first (mkdir -p /no/such/dir)\n');

    const q = makeQueue(dir);
    const gz = runSync('gzip', ['-c'], { input: preparePacket(['-s', '-']) }).stdout;
    writeFileSync(join(q, 'jobs', 'fspl-gz.fspl'), gz);
    const ls = fspool(['queue-ls', '-q', q]);
    expect(ls.stderr).toMatch(/fspl-gz\.fspl: not a filespooler packet but gzip data: decode it with -d 'gzip -dc'/);
    expect(fspool(['queue-ls', '-q', q, '-d', 'gzip -dc']).stdout.toString()).toMatch(/fspl-gz\.fspl/);
    const zst = runSync('zstd', ['-q', '-c'], { input: 'not a packet at all' }).stdout;
    expect(fspool(['stdin-info'], { input: zst }).stderr).toBe('Error: not a filespooler packet after zstd (bad magic: the zstd data holds something else)\n');

    // -q: a file, a directory that is not there, a directory that is not a queue
    const file = join(dir, 'afile');
    writeFileSync(file, '');
    expect(fspool(['queue-ls', '-q', file]).stderr).toBe(`Error: ${file} is a file, not a queue directory; give -q the queue's directory\n`);
    expect(fspool(['queue-ls', '-q', join(dir, 'none')]).stderr).toBe(`Error: ${join(dir, 'none')} is not a queue (no such directory); create one with queue-init\n`);
    expect(fspool(['queue-ls', '-q', dir]).stderr).toBe(`Error: ${dir} is not a queue (no jobs/ directory); create one with queue-init\n`);
  });

  it('a receiver command that cannot be run stops queue-process before any job, on an empty queue too; the job stays', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const env = { ...process.env, PATH: '/usr/bin:/bin' };
    const seq = join(dir, 'seq');
    const notFound = fspool(['queue-process', '-q', q, 'fspool-no-such-receiver'], { env });
    expect(notFound.code).toBe(1);
    expect(notFound.stderr).toBe('Error: cannot run command: fspool-no-such-receiver: not found in PATH (/usr/bin:/bin); give its full path, or set PATH; nothing was run\n');
    put(q, preparePacket(['-s', seq, '-i', '-'], 'kept'));
    const notFile = fspool(['queue-process', '-q', q, dir], { env });
    expect(notFile.code).toBe(1);
    expect(notFile.stderr).toBe(`Error: cannot run command: ${dir}: is a directory; give the path of an executable file; nothing was run\n`);
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'receive'), '#!/bin/sh\ncat\n', { mode: 0o644 });
    const notExec = fspool(['queue-process', '-q', q, 'receive'], { env: { ...env, PATH: `${bin}:/usr/bin:/bin` } });
    expect(notExec.stderr).toBe(`Error: cannot run command: receive: ${join(bin, 'receive')} is not executable: permission denied (EACCES); make it executable, or give another's full path; nothing was run\n`);
    // An empty PATH entry is the current directory, as for execvpe.
    chmodSync(join(bin, 'receive'), 0o755);
    const here = fspool(['queue-process', '-q', q, 'receive'], { env: { ...env, PATH: ':/usr/bin:/bin' }, cwd: bin });
    expect(here.code, here.stderr).toBe(0);
    expect(here.stdout.toString()).toBe('kept');
    put(q, preparePacket(['-s', seq, '-i', '-'], 'kept too'));
    // Found the way execvpe finds it: here, only through PATH.
    const found = fspool(['queue-process', '-q', q, 'cat'], { env });
    expect(found.code, found.stderr).toBe(0);
    expect(found.stdout.toString()).toBe('kept too');
  });

  it('queue-init where the parent is missing: the fix, and nothing made', () => {
    const dir = tempDir();
    const q = join(dir, 'spool', 'q');
    const r = fspool(['queue-init', '-q', q]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`Error: cannot create queue ${q}: directory ${join(dir, 'spool')} does not exist; create it first (mkdir -p ${join(dir, 'spool')})\n`);
    expect(existsSync(join(dir, 'spool'))).toBe(false);
  });

  it('a key or passphrase file that cannot be read stops the command at once, though no packet needs it yet; a pipe is taken', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const missing = join(dir, 'recv.key');
    for (const args of [['queue-process', '-q', q, '--decrypt-key', missing, 'cat'], ['queue-ls', '-q', q, '--decrypt-key', missing], ['queue-status', '-q', q, '--decrypt-key', missing]]) {
      const r = fspool(args);
      expect(r.code, args[0]).toBe(1);
      expect(r.stderr, args[0]).toBe(`Error: --decrypt-key ${missing}: no such file or directory (ENOENT); check the path; nothing was done\n`);
    }
    const dirAsKey = fspool(['queue-process', '-q', q, '--require-signature', dir, 'cat']);
    expect(dirAsKey.stderr).toBe(`Error: --require-signature ${dir}: is a directory; give a file; nothing was done\n`);
    expect(existsSync(join(q, 'fspool')), 'nothing made in the queue').toBe(false);
    // A passphrase through a pipe (a shell's <(...)), as gpg takes one: looked at, not read, so
    // that it is still whole when the packet needs it.
    const pass = join(dir, 'pass');
    writeFileSync(pass, 'secret\n');
    put(q, preparePacket(['-s', '-', '-i', '-', '--passphrase-file', pass], 'sealed'));
    const piped = runSync('bash', ['-c', 'exec "$0" queue-process -q "$1" --passphrase-file <(echo secret) cat', FSPOOL, q]);
    expect(piped.code, piped.stderr).toBe(0);
    expect(piped.stdout.toString()).toBe('sealed');
  });

  it('a packet for another key: its key ID, and the keys that were tried', () => {
    const dir = tempDir();
    const home = join(dir, 'gnupg');
    mkdirSync(home, { mode: 0o700 });
    const gpg = (args: string[]) => {
      const r = runSync('gpg', ['--homedir', home, '--batch', '--quiet', ...args]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.toString();
    };
    const ids: Record<string, string[]> = {};
    for (const n of ['alice', 'bob', 'carol']) {
      gpg(['--passphrase', '', '--quick-gen-key', `${n}@test`, 'future-default', 'default', 'never']);
      writeFileSync(join(dir, `${n}.pub`), gpg(['--armor', '--export', `${n}@test`]));
      // 0600, as a secret key file should be (one others may read draws a WARN of its own).
      writeFileSync(join(dir, `${n}.key`), gpg(['--armor', '--pinentry-mode', 'loopback', '--passphrase', '', '--export-secret-keys', `${n}@test`]), { mode: 0o600 });
      // the key IDs of the primary key and its encryption subkey, as gpg --with-colons gives them
      ids[n] = gpg(['--with-colons', '--list-keys', `${n}@test`]).split('\n').filter((l) => /^(pub|sub):/.test(l)).map((l) => l.split(':')[4]!);
    }
    const [alicePrimary, aliceSub] = ids.alice!;
    const toAlice = preparePacket(['-s', '-', '--encrypt-to', join(dir, 'alice.pub')]);
    const one = fspool(['stdin-info', '--decrypt-key', join(dir, 'bob.key')], { input: toAlice });
    expect(one.code).toBe(1);
    expect(one.stderr).toBe(
      `Error: cannot decrypt OpenPGP packet: it is encrypted to key ${aliceSub}, and the secret key given (${ids.bob!.join('/')}) cannot decrypt it: give the secret key of ${aliceSub} with --decrypt-key FILE\n`,
    );
    expect(alicePrimary).not.toBe(aliceSub);
    // two recipients (gpg, armored: openpgp.js reads it), two keys tried
    const both = runSync('gpg', ['--homedir', home, '--batch', '--trust-model', 'always', '--armor', '-e', '-r', 'alice@test', '-r', 'bob@test'], { input: preparePacket(['-s', '-']) }).stdout;
    const two = fspool(['stdin-info', '--decrypt-key', join(dir, 'carol.key')], { input: both });
    expect(two.code).toBe(1);
    expect(two.stderr).toMatch(new RegExp(`^Error: cannot decrypt OpenPGP packet: it is encrypted to keys (${aliceSub}, ${ids.bob![1]}|${ids.bob![1]}, ${aliceSub}), and the secret key given \\(${ids.carol!.join('/')}\\) cannot decrypt it: give the secret key of one of them with --decrypt-key FILE\n$`));
  });

  it('stdin-process --spool-dir: decodes there, and refuses a place without room for the packet', () => {
    const dir = tempDir();
    const pw = join(dir, 'pw');
    writeFileSync(pw, 'secret\n');
    const packet = preparePacket(['-s', '-', '-i', '-', '--passphrase-file', pw], Buffer.alloc(200_000, 7));
    const file = join(dir, 'p.fspl');
    writeFileSync(file, packet);
    const spool = join(dir, 'spool');
    mkdirSync(spool);
    const ok = runSync(FSPOOL, ['stdin-process', '--passphrase-file', pw, '--delivery', 'verified', '--spool-dir', spool, 'wc', '--', '-c'], { stdinFile: file });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.toString().trim()).toBe('200000');
    // /dev/shm-like places are not needed: a tmpfs of 64 KiB is too small, but mounting needs
    // root; /proc has no free blocks at all, and statfs says so.
    const full = runSync(FSPOOL, ['stdin-process', '--passphrase-file', pw, '--delivery', 'verified', '--spool-dir', '/proc/self', 'wc'], { stdinFile: file });
    expect(full.code).toBe(1);
    expect(full.stderr).toMatch(/^Error: not enough free space in \/proc\/self to decode the payload before running the command: 0 bytes free, at least \d+ needed; --spool-dir DIR decodes it elsewhere; the command was not started$/m);
  });
});
