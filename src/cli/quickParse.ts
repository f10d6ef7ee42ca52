// The command lines fspool runs most (from scripts, cron, the transports' hooks) are plain: a
// subcommand, then `--long VALUE`, `--long=VALUE`, `-x VALUE` (`-xVALUE` is split first:
// src/cli/shortValues.ts), flags, its positionals and `--`.
// Loading yargs, setting it up and parsing with it is 10-20 ms of CPU at every start
// (bench/README.md, "Cold start"), a sixth to a third of Node's own start. Such a command line
// is parsed here, from the same definitions yargs is given; anything else (help, completion, a
// mistake to explain, a spelling yargs allows but this does not read: `--no-x`, grouped
// flags) goes to yargs, which remains the one that says what is wrong with it.
//
// The rule this keeps: whatever is parsed here is parsed exactly as yargs parses it, or not at
// all. test/quick-parse.test.ts checks it on generated command lines, against yargs itself.
import type { ArgumentsCamelCase } from 'yargs';
import { Declared, emptyValue, type OptionDef, type PositionalDef, type Subcommand } from './options.js';

export interface QuickParse {
  command: Subcommand<Record<string, unknown>>;
  argv: ArgumentsCamelCase<Record<string, unknown>>;
}

/** A word that is an option, not a value: `-x`, `--x`; `-` alone is stdin's name, a value. */
const optionLike = (w: string): boolean => w.length > 1 && w.startsWith('-');

/**
 * `args` parsed as yargs would parse them (fspool's parser configuration, src/cli/main.ts), or
 * undefined when yargs must: anything yargs would refuse, or that this does not read.
 */
export function quickParse(args: string[], commands: readonly Subcommand<any>[], globals: Record<string, OptionDef>): QuickParse | undefined {
  // The options known so far: the global ones until the subcommand is read (they may come
  // before it: `-l debug queue-ls`), then its own as well.
  const options = new Map<string, OptionDef>();
  const long = new Map<string, string>();
  const short = new Map<string, string>();
  const know = (k: string, o: OptionDef) => {
    options.set(k, o);
    long.set(k, k);
    for (const a of [o.alias ?? []].flat()) (a.length === 1 ? short : long).set(a, k);
  };
  for (const [k, o] of Object.entries(globals)) know(k, o);
  let command: Subcommand<any> | undefined;
  let name = '';
  let slots: string[] = [];
  let positionals = new Map<string, PositionalDef>();

  const given = new Map<string, string[]>();
  const words: string[] = [];
  const end = args.indexOf('--');
  const mine = end < 0 ? args : args.slice(0, end);
  for (let i = 0; i < mine.length; i++) {
    const w = mine[i]!;
    if (!optionLike(w)) {
      if (w === '-') return undefined;
      if (command !== undefined) {
        words.push(w);
        continue;
      }
      // The first word that is not an option's value: the subcommand.
      command = commands.find((c) => String(c.command).split(' ')[0] === w);
      if (command === undefined || typeof command.handler !== 'function') return undefined;
      name = w;
      // Positionals, in order: only optional ones (`[id]`), as every subcommand has them.
      slots = String(command.command).split(' ').slice(1);
      if (!slots.every((slot) => /^\[[a-z]+\]$/.test(slot))) return undefined;
      const declared = Declared.of(command);
      positionals = new Map(declared.positionals);
      for (const [k, o] of declared.options) know(k, o);
      continue;
    }
    const eq = w.indexOf('=');
    const spelled = w.startsWith('--') ? w.slice(2, eq < 0 ? undefined : eq) : w.slice(1);
    // `-x=VALUE` is read as yargs reads it only with a VALUE: `-x=` it takes for flags x and =.
    const key = w.startsWith('--') ? long.get(spelled) : (eq === 2 && w.length > 3) || (eq < 0 && spelled.length === 1) ? short.get(spelled[0]!) : undefined;
    if (key === undefined) return undefined;
    const o = options.get(key)!;
    let value: string;
    if (o.type === 'boolean') {
      if (eq >= 0) return undefined;
      value = 'true';
    } else if (eq >= 0) {
      value = w.slice(eq + 1);
    } else {
      const next = mine[i + 1];
      // yargs takes no word starting with `-` as the value of an option with `nargs`, `-` included.
      if (next === undefined || optionLike(next) || (o.nargs !== undefined && next.startsWith('-'))) {
        // An option whose value may be left out (`--zstd`) has the empty string.
        if (o.requiresArg || o.nargs !== undefined) return undefined;
        value = '';
      } else {
        value = next;
        i++;
      }
    }
    const seen = given.get(key);
    // yargs refuses no repeated flag; a repeated option with a value becomes an array, which
    // fspool refuses (src/cli/main.ts) unless the option is repeatable.
    if (seen && !o.array && o.type !== 'boolean') return undefined;
    given.set(key, [...(seen ?? []), value]);
  }
  if (command === undefined || words.length > slots.length) return undefined;

  const argv: QuickParse['argv'] = { _: [name], $0: 'fspool' };
  // As yargs does: `--` only when something follows it.
  if (end >= 0 && end < args.length - 1) argv['--'] = args.slice(end + 1);
  try {
    for (const [k, o] of options) {
      const values = given.get(k);
      let v: unknown;
      if (values === undefined) {
        if (o.demandOption) return undefined;
        if (o.default === undefined) continue;
        v = o.default;
      } else {
        v = o.type === 'boolean' ? true : o.array ? values : values[0];
      }
      if (o.coerce) v = o.coerce(v);
      if (o.choices && !(o.choices as unknown[]).includes(v)) return undefined;
      if (emptyValue(v)) return undefined;
      argv[k] = v;
    }
    for (const [n, word] of words.entries()) {
      const key = slots[n]!.slice(1, -1);
      const p = positionals.get(key);
      const v = p?.coerce ? p.coerce(word) : word;
      if (p?.choices && !(p.choices as unknown[]).includes(v)) return undefined;
      argv[key] = v;
    }
  } catch {
    // A value its coerce function refuses: yargs says so, in its way.
    return undefined;
  }
  return { command: command as QuickParse['command'], argv };
}
