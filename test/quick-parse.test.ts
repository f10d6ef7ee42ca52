// The quick parser (src/cli/quickParse.ts) against yargs, in-process: for command lines built
// from every subcommand's own options, whatever the quick parser accepts must be exactly what
// yargs gives the command's handler, and whatever yargs refuses the quick parser must leave to
// it. FSPOOL_PROP_SEED replays a failure fast-check reports.
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { COMMANDS, program, quickParsed, RUN_GLOBALS } from '../src/cli/main.js';
import { Declared, type Subcommand } from '../src/cli/options.js';
import { LONG } from './helpers/queue.js';

const seed = process.env.FSPOOL_PROP_SEED ? Number(process.env.FSPOOL_PROP_SEED) : undefined;

/** The commands yargs runs, with handlers that keep what they are given instead of running. */
function capturing(): { commands: Subcommand<any>[]; got: () => unknown } {
  let argv: unknown;
  const commands = (COMMANDS as Subcommand<any>[]).map((c) =>
    typeof c.handler === 'function' ? { ...c, handler: (a: unknown) => void (argv = a) } : c,
  );
  return { commands, got: () => argv };
}

/** yargs' verdict: the handler's argv, or that it refused. */
async function byYargs(args: string[]): Promise<{ argv: Record<string, unknown> } | { refused: string }> {
  const { commands, got } = capturing();
  // yargs prints the version for --version (and runs no command): not into the test's output.
  const quiet = vi.spyOn(console, 'log').mockImplementation(() => {});
  try {
    const cli = await program(args, commands);
    await cli.exitProcess(false).parseAsync();
  } catch (e) {
    return { refused: (e as Error).message };
  } finally {
    quiet.mockRestore();
  }
  const argv = got() as Record<string, unknown> | undefined;
  return argv ? { argv } : { refused: 'no handler ran' };
}

/** Keys yargs sets to undefined are absent to a handler. */
const defined = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

async function agree(args: string[]): Promise<boolean> {
  const quick = quickParsed(args);
  const ref = await byYargs(args);
  if (quick === undefined) return false;
  expect('argv' in ref ? undefined : ref.refused, `yargs refused ${JSON.stringify(args)}`).toBeUndefined();
  expect(defined(quick.argv), JSON.stringify(args)).toStrictEqual(defined((ref as { argv: Record<string, unknown> }).argv));
  return true;
}

const runnable = (COMMANDS as Subcommand<any>[]).filter((c) => typeof c.handler === 'function');
const nameOf = (c: Subcommand<any>) => String(c.command).split(' ')[0]!;

const VALUES = ['x', '/tmp/q', '-', '', '0', '5', '1.5', '-5', '18446744073709551616', 'retry', 'RETRY', 'debug', 'a b', 'a=b', '=', '-q', '--', 'queue-ls', 'true', 'false'];

type Def = { alias?: string | readonly string[]; type?: string; choices?: readonly string[]; helpType?: string; demandOption?: unknown };

/** A value the option takes: one of its words in any case, a number, or a path. */
function fitting(o: Def): fc.Arbitrary<string> {
  if (o.choices) return fc.constantFrom(...o.choices, ...o.choices.map((c) => c.toUpperCase()));
  if (o.helpType === 'number') return fc.constantFrom('0', '5', '3600', '18446744073709551615');
  return fc.constantFrom('x', '/tmp/q', '-', 'a=b', 'a b', 'queue-ls');
}

/** An option, spelled any of the ways yargs reads it, with a value that fits it or `wild` one. */
function optionWords([k, o]: [string, Def], wild: boolean): fc.Arbitrary<string[]> {
  const aliases = [o.alias ?? []].flat();
  const spellings = [`--${k}`, ...aliases.map((a) => (a.length === 1 ? `-${a}` : `--${a}`))];
  const value = wild ? fc.oneof(fitting(o), fc.constantFrom(...VALUES)) : fitting(o);
  // 0: alone, 1: --name=value, 2: -xVALUE, 3: two words.
  const how = wild ? fc.nat(3) : o.type === 'boolean' ? fc.constant(0) : fc.constantFrom(1, 3);
  return fc.tuple(fc.constantFrom(...spellings), value, how).map(([s, v, h]): string[] =>
    h === 0 ? [s] : h === 1 ? [`${s}=${v}`] : h === 2 && s.length === 2 && wild ? [`${s}${v}`] : [s, v],
  );
}

/**
 * Command lines of a subcommand: `wild` ones mix in values and spellings yargs refuses or reads
 * in its own ways; the others give every required option and values that fit.
 */
function commandLines(c: Subcommand<any>, wild: boolean): fc.Arbitrary<string[]> {
  const opts = [...Declared.of(c).options, ...Object.entries(RUN_GLOBALS)] as Array<[string, Def]>;
  const word = fc.constantFrom(...(wild ? VALUES : ['cat', 'x', '7'])).map((v) => [v]);
  const tail = fc.option(fc.array(fc.constantFrom(...VALUES), { maxLength: 3 }), { nil: undefined });
  const line = (lead: string[][], rest: string[][], t: string[] | undefined) => [...lead.flat(), nameOf(c), ...rest.flat(), ...(t ? ['--', ...t] : [])];
  if (wild) {
    const option = fc.constantFrom(...opts).chain((d) => optionWords(d, true));
    const odd = fc.constantFrom('--nope', '-Z', '-qs', '--no-quiet', '-V', '--version', '--help', '-h', '--quiet=true').map((w) => [w]);
    const part = fc.oneof({ weight: 6, arbitrary: option }, { weight: 2, arbitrary: word }, { weight: 1, arbitrary: odd });
    return fc.tuple(fc.array(option, { maxLength: 2 }), fc.array(part, { maxLength: 6 }), tail).map(([lead, rest, t]) => line(lead, rest, t));
  }
  // Each option once, every required one; global ones before or after the subcommand; at most
  // as many words as the subcommand has positionals, among the options.
  const required = opts.filter(([, o]) => o.demandOption);
  const optional = opts.filter(([, o]) => !o.demandOption);
  const positionals = String(c.command).split(' ').length - 1;
  return fc
    .tuple(
      fc.subarray(optional),
      fc.array(fc.boolean(), { minLength: opts.length, maxLength: opts.length }),
      fc.array(word, { maxLength: positionals }),
      tail,
    )
    .chain(([chosen, early, words, t]) => {
      const all = [...required, ...chosen];
      return fc.tuple(fc.tuple(...all.map((d) => optionWords(d, false))), fc.shuffledSubarray(words, { minLength: words.length })).map(([spelled, ws]) => {
        const lead = spelled.filter((_, n) => all[n]![0] in RUN_GLOBALS && early[n]);
        const rest = [...spelled.filter((_, n) => !(all[n]![0] in RUN_GLOBALS && early[n])), ...ws];
        return line(lead, rest, t);
      });
    });
}

describe('quick parser against yargs', () => {
  it('parses the usual command lines, each as yargs does', async () => {
    const usual = [
      ['prepare', '-s', '-', '-i', '/dev/null'],
      ['-l', 'debug', '--quiet', 'queue-ls', '-q', 'q'],
      ['prepare', '-s', 'seq', '--zstd', '-i', '-'],
      ['prepare', '-s', 'seq', '-i', '-', '--zstd=3', '--', 'restore', '-x'],
      ['prepare', '--seqfile', 'seq', '--encrypt-to', 'a.asc', '--encrypt-to', 'b.asc', '--wait-lock', '5'],
      ['enqueue', '-q', '/var/q', '-s', 'seq', '-i', '-'],
      ['queue-write', '-q', 'q'],
      ['queue-process', '-q', 'q', 'cat', '--timeout', '10', '--on-error', 'Retry'],
      ['queue-process', '-q', 'q', '--', 'sh', '-c', 'echo hi'],
      ['queue-process', '-l', 'debug', '-q', 'q', '--quiet', '--decrypt-key', 'k1', '--decrypt-key', 'k2', 'cat'],
      ['queue-ls', '-q', 'q', '--json'],
      ['queue-info', '-q', 'q', '-j', '18446744073709551615'],
      ['queue-set-next', '-q', 'q', '12'],
      ['queue-set-next', '-q', 'q', '--', '12'],
      ['queue-status', '-q', 'q', '--nagios', '--stalled-after', '600'],
      ['stdin-process', '--', 'cat'],
      ['gen-uuid'],
      ['show-license'],
    ];
    for (const args of usual) expect(await agree(args), JSON.stringify(args)).toBe(true);
  });

  it('leaves to yargs what yargs refuses, down to the spellings that look alike', async () => {
    // `-q=` is not `-q=x` without its value: yargs reads it as the flags q and =.
    for (const args of [['queue-history', '-q='], ['queue-ls', '-q', 'q', '--nope'], ['queue-ls', '-q'], ['-V'], ['queue-info', '-q', 'q', '-j', 'x']]) {
      expect(quickParsed(args), JSON.stringify(args)).toBeUndefined();
      expect(await byYargs(args), JSON.stringify(args)).toHaveProperty('refused');
    }
  });

  for (const wild of [false, true]) {
    it(`accepts only what yargs accepts, and as yargs reads it: ${wild ? 'wild' : 'plausible'} command lines`, async () => {
      let accepted = 0;
      let total = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...runnable).chain((c) => commandLines(c, wild)),
          async (args) => {
            total++;
            if (await agree(args)) accepted++;
          },
        ),
        { numRuns: LONG ? 4000 : 400, ...(seed !== undefined ? { seed } : {}) },
      );
      // A parser that accepted nothing would pass the property above and save nothing: most
      // plausible command lines must be read here (~87% are). Wild ones are mostly refused, on
      // purpose; ~3% are read, and those must be read at all.
      if (wild) expect(accepted).toBeGreaterThan(0);
      else expect(accepted / total).toBeGreaterThan(0.5);
      // The long mode's 4,000 lines take ~50 s on two busy cores: more than the default minute leaves.
    }, LONG ? 300_000 : 60_000);
  }
});
