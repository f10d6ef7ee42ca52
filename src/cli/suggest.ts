// What a refused command line was probably meant to be. yargs says "Unknown argument: c" or
// "Missing required argument: queuedir" for a typo; this names the word at fault and the
// nearest real subcommand or option, from the same model help is drawn from.
import { closest, distance } from 'fastest-levenshtein';
import type { CommandHelp, OptionHelp, ProgramHelp } from './help.js';
import { SCRIPT } from './help.js';

/** The candidate close enough to `word` to be what was meant, if any. */
export function didYouMean(word: string, candidates: string[]): string | undefined {
  if (candidates.length === 0) return undefined;
  const best = closest(word, candidates);
  return distance(word, best) <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

const isOption = (t: string) => t.length > 1 && t.startsWith('-');
/** A negative number, which yargs reads as an option. */
const NUMBER = /^-\d+(\.\d+)?$/;

/** A word as the shell needs it, for a corrected command line to copy. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The options a token names: `--name[=v]` one, `-abc` each letter. */
function names(t: string): { names: string[]; inline: boolean } {
  if (t.startsWith('--')) {
    const eq = t.indexOf('=');
    return { names: [eq < 0 ? t.slice(2) : t.slice(2, eq)], inline: eq >= 0 };
  }
  return { names: [...t.slice(1)], inline: false };
}

const find = (opts: OptionHelp[], name: string) => opts.find((o) => o.key === name || o.aliases.includes(name));
/** `-q/--queuedir`, or `--queuedir`. */
const both = (o: OptionHelp) => {
  const short = o.aliases.find((a) => a.length === 1);
  return `${short ? `-${short}/` : ''}--${o.key}`;
};
const spell = (name: string) => (name.length === 1 ? `-${name}` : `--${name}`);

/** The subcommand a command line names (the first word that is not -l's value), and where. */
export function subcommandOf(args: string[], p: ProgramHelp): { word: string; index: number } | undefined {
  for (let i = 0; i < args.length; i++) {
    const t = args[i]!;
    if (t === '--') return undefined;
    if (!isOption(t)) return { word: t, index: i };
    const o = names(t);
    const last = find(p.globals, o.names[o.names.length - 1]!);
    if (last && last.type !== 'boolean' && !o.inline) i++;
  }
  return undefined;
}

/** One line saying what is wrong with `args` and how to fix it, or undefined to keep yargs' words. */
export function explainUsage(args: string[], p: ProgramHelp): string | undefined {
  const sub = subcommandOf(args, p);
  if (!sub) return undefined;
  const cmd = p.commands.find((c) => c.name === sub.word);
  if (!cmd) return unknownSubcommand(sub.word, p);
  if (cmd.name === 'help') {
    const of = subcommandOf(args.slice(sub.index + 1), p);
    if (of && !p.commands.some((c) => c.name === of.word)) return unknownSubcommand(of.word, p);
  }
  const end = args.indexOf('--');
  const before = end < 0 ? args : args.slice(0, end);
  return unknownOption(args, before, sub.index, cmd, p.globals) ?? missingOption(before, cmd);
}

export function unknownSubcommand(word: string, p: ProgramHelp): string {
  const guess = didYouMean(word, p.commands.map((c) => c.name));
  return `unknown subcommand '${word}'${guess ? `; did you mean ${guess}?` : `; \`${SCRIPT} --help\` lists them`}`;
}

function unknownOption(args: string[], before: string[], at: number, cmd: CommandHelp, globals: OptionHelp[]): string | undefined {
  const known = [...cmd.options, ...globals];
  let positionals = 0;
  let commandAt: number | undefined;
  for (let i = 0; i < before.length; i++) {
    const t = before[i]!;
    if (i === at) continue;
    if (NUMBER.test(t) && i > at) {
      return `'${t}' is read as an option; to give it as ${cmd.positionals[positionals]?.value ?? 'an argument'}, put it after --: ${[SCRIPT, ...before.filter((_, j) => j !== i), '--', t].map(shellQuote).join(' ')}`;
    }
    if (!isOption(t)) {
      if (i < at) continue;
      // A positional: for queue-process and stdin-process, the first is the command to run.
      if (positionals++ === 0 && cmd.positionals[0]?.key === 'command') commandAt = i;
      else if (positionals > cmd.positionals.length) return extra(args, t, commandAt, cmd);
      continue;
    }
    const o = names(t);
    for (const [k, n] of o.names.entries()) {
      const opt = find(known, n);
      if (!opt) return unknown(args, t, n, commandAt, cmd, known);
      const last = k === o.names.length - 1;
      if (opt.type === 'boolean' && o.inline) return `option ${both(opt)} takes no value (it is a switch): write ${spell(n)} alone`;
      // -n5: the rest of a cluster is the value of an option that takes one
      if (opt.type !== 'boolean' && !t.startsWith('--') && !last) break;
      // its value is the next word, unless that looks like an option (yargs reads it as one)
      if (opt.type !== 'boolean' && last && !o.inline) {
        const next = before[i + 1];
        if (next === undefined || (isOption(next) && !NUMBER.test(next))) return `option ${both(opt)} needs a value (${opt.value ?? 'a value'})`;
        // A negative number is read as an option: said as what it was meant to be.
        if (NUMBER.test(next)) return `'${next}' after ${t} is read as an option, not as its value; to give it as the value, write ${t}=${next}`;
        i++;
      }
    }
  }
  return undefined;
}

/** The command line with `--` after the command to run, as it was probably meant. */
function withDashes(args: string[], commandAt: number): string {
  const rest = args.slice(commandAt + 1);
  const dashes = rest.indexOf('--');
  const fixed = [SCRIPT, ...args.slice(0, commandAt + 1), '--', ...(dashes < 0 ? rest : [...rest.slice(0, dashes), ...rest.slice(dashes + 1)])];
  return fixed.map(shellQuote).join(' ');
}

function extra(args: string[], word: string, commandAt: number | undefined, cmd: CommandHelp): string {
  if (commandAt !== undefined) return `unexpected argument '${word}' after the command ${args[commandAt]}; its arguments go after --: ${withDashes(args, commandAt)}`;
  return `unexpected argument '${word}': ${SCRIPT} ${cmd.name} takes ${cmd.positionals.length === 0 ? 'no arguments' : `only ${cmd.positionals.map((x) => x.value).join(' ')}`}`;
}

function unknown(args: string[], token: string, name: string, commandAt: number | undefined, cmd: CommandHelp, known: OptionHelp[]): string {
  if (commandAt !== undefined) {
    return `'${token}' is not an option of ${SCRIPT} ${cmd.name}; to pass it to ${args[commandAt]}, put the command's options after --: ${withDashes(args, commandAt)}`;
  }
  // A one-letter typo has too many neighbours to guess from.
  const guess = name.length > 1 ? didYouMean(name, known.flatMap((o) => [o.key, ...o.aliases]).filter((s) => s.length > 1)) : undefined;
  const what = `unknown option '${spell(name)}'${token !== spell(name) ? ` (in '${token}')` : ''}`;
  return guess ? `${what}; did you mean --${guess}?` : `${what}; \`${SCRIPT} ${cmd.name} --help\` lists the options`;
}

function missingOption(before: string[], cmd: CommandHelp): string | undefined {
  const given = new Set<string>();
  for (const t of before.filter(isOption)) for (const n of names(t).names) given.add(n);
  for (const o of cmd.options.filter((x) => x.required)) {
    if ([o.key, ...o.aliases].some((n) => given.has(n))) continue;
    return `missing required option ${both(o)} ${o.value}: ${o.describe.charAt(0).toLowerCase()}${o.describe.slice(1)}`;
  }
  return undefined;
}
