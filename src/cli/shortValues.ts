// fspl's parser (clap) reads a short option's value written against it: `-qDIR`, `-s./seq`,
// `-lwarn`, `-d'gzip -dc'`. yargs reads such a word as a group of one-letter flags. So, before
// either parser sees the command line, such a word is spelled `-q=DIR` when its letter names
// an option that takes a value, for the subcommand being given. Flags (`-h`, `-V`), the
// `-x=VALUE` spelling (which yargs reads as fspl does), and everything after `--` are left alone.
import { Declared, type OptionDef, type Subcommand } from './options.js';

/** A short option with something written against it, before `--`. */
const ATTACHED = /^-[^-=]./;

export function splitShortValues(args: string[], commands: readonly Subcommand<any>[], globals: Record<string, OptionDef>): string[] {
  const end = args.indexOf('--');
  const mine = end < 0 ? args : args.slice(0, end);
  if (!mine.some((w) => ATTACHED.test(w))) return args;

  // Whether each option takes a value, by its short and long names: the global options until
  // the subcommand is read, then its own as well.
  const takes = new Map<string, boolean>();
  const know = (key: string, o: OptionDef) => {
    const value = o.type !== 'boolean';
    takes.set(`--${key}`, value);
    for (const a of [o.alias ?? []].flat()) takes.set(a.length === 1 ? `-${a}` : `--${a}`, value);
  };
  for (const [k, o] of Object.entries(globals)) know(k, o);

  const out: string[] = [];
  let command = false;
  for (let i = 0; i < mine.length; i++) {
    const w = mine[i]!;
    if (w.startsWith('-') && w.length > 1) {
      const name = w.startsWith('--') ? w.split('=')[0]! : w.slice(0, 2);
      const value = takes.get(name) === true;
      if (value && ATTACHED.test(w) && w[2] !== '=') {
        // As `-x=VALUE`, which both parsers read as the option's value even when VALUE starts
        // with `-` (as two words, `-x -weird` would be two options).
        out.push(`${name}=${w.slice(2)}`);
        continue;
      }
      out.push(w);
      // Its value, as a word of its own: never split, never the subcommand.
      const next = mine[i + 1];
      if (value && !w.includes('=') && next !== undefined && !next.startsWith('-')) out.push(mine[++i]!);
      continue;
    }
    if (!command) {
      const c = commands.find((s) => String(s.command).split(' ')[0] === w);
      if (c) {
        command = true;
        for (const [k, o] of Declared.of(c).options) know(k, o);
      }
    }
    out.push(w);
  }
  return end < 0 ? out : [...out, ...args.slice(end)];
}
