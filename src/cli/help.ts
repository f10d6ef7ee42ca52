// Help text, from the definitions yargs parses with: each subcommand's builder is run on a
// recorder that keeps what it declares (options, positionals, examples), and the text is laid
// out here. yargs' own layout cannot use the terminal's width without process.stdout (which
// fspool never creates, spec/processing.md), breaks examples where a shell would not read them
// as one command, and shows neither value names nor required options in usage lines.
//
// The same model (helpModel) is what a man page is generated from.
import wrapAnsi from 'wrap-ansi';
import { native } from '../sys/native.js';
import { Declared, type OptionDef, type PositionalDef, type Subcommand } from './options.js';

export interface OptionHelp {
  key: string;
  /** Other spellings, without dashes: 'q' for --queuedir. */
  aliases: string[];
  describe: string;
  /** The value's name (DIR, FILE); undefined for a flag. */
  value: string | undefined;
  type: 'boolean' | 'string' | 'number';
  repeatable: boolean;
  required: boolean;
  choices: readonly string[] | undefined;
  default: string | undefined;
}

export interface Example {
  command: string;
  describe: string;
}

export interface CommandHelp {
  name: string;
  describe: string;
  /** One line: `fspool queue-info -q DIR -j ID [OPTIONS]`. */
  usage: string;
  positionals: OptionHelp[];
  options: OptionHelp[];
  examples: Example[];
}

export interface ProgramHelp {
  name: string;
  usage: string;
  describe: string;
  commands: CommandHelp[];
  globals: OptionHelp[];
  epilog: string;
}

export const SCRIPT = 'fspool';

function optionHelp(key: string, o: OptionDef | PositionalDef, positional: boolean): OptionHelp {
  const alias = o.alias === undefined ? [] : Array.isArray(o.alias) ? o.alias : [o.alias];
  const type = 'helpType' in o && o.helpType === 'number' ? 'number' : o.type === 'boolean' ? 'boolean' : o.type === 'number' ? 'number' : 'string';
  const required = positional ? (o as PositionalDef).required === true : (o as OptionDef).demandOption !== undefined && (o as OptionDef).demandOption !== false;
  return {
    key,
    aliases: alias,
    describe: String(o.describe ?? o.description ?? o.desc ?? ''),
    value: type === 'boolean' ? undefined : (o.value ?? key.toUpperCase()),
    type,
    repeatable: 'array' in o && o.array === true,
    required,
    choices: o.choices as readonly string[] | undefined,
    default: o.default === undefined || o.default === false ? undefined : String(o.default),
  };
}

/** `-q DIR`, or `--seqfile FILE` for an option without a short spelling. */
function spelling(o: OptionHelp): string {
  const short = o.aliases.find((a) => a.length === 1);
  const name = short ? `-${short}` : `--${o.key}`;
  return o.value ? `${name} ${o.value}` : name;
}

/** What help reads of a subcommand. */
export type HelpSource = Pick<Subcommand<any>, 'command' | 'describe' | 'builder' | 'params'>;

export function commandHelp(mod: HelpSource): CommandHelp {
  const r = Declared.of(mod);
  const command = Array.isArray(mod.command) ? mod.command[0]! : String(mod.command);
  const name = command.split(' ')[0]!;
  // Required options first: they are the ones every use needs.
  const options = r.options.map(([k, o]) => optionHelp(k, o, false)).sort((a, b) => Number(b.required) - Number(a.required));
  const positionals = r.positionals.map(([k, o]) => optionHelp(k, o, true));
  const usage = [
    `${SCRIPT} ${name}`,
    ...options.filter((o) => o.required).map(spelling),
    '[OPTIONS]',
    ...positionals.map((p) => (p.required ? p.value! : `[${p.value}]`)),
    ...(mod.params ? [`[-- ${mod.params}]`] : []),
  ].join(' ');
  return { name, describe: typeof mod.describe === 'string' ? mod.describe : '', usage, positionals, options, examples: r.examples.map((e) => ({ command: e.command.replace(/\$0/g, SCRIPT), describe: e.describe })) };
}

export function programHelp(p: { describe: string; epilog: string; commands: HelpSource[]; globals: Record<string, OptionDef> }): ProgramHelp {
  return {
    name: SCRIPT,
    usage: `${SCRIPT} [-l LEVEL] SUBCOMMAND [OPTIONS]`,
    describe: p.describe,
    commands: p.commands.map(commandHelp),
    globals: Object.entries(p.globals).map(([k, o]) => optionHelp(k, o, false)),
    epilog: p.epilog,
  };
}

// ---------------------------------------------------------------------------------------------
// Layout

/** Wider than this, lines are hard to read; narrower, nothing fits. */
const MAX_WIDTH = 120;
const MIN_WIDTH = 40;
const DEFAULT_WIDTH = 80;

/**
 * The width to lay help out in: COLUMNS when it is exported, else the terminal's on fd 1 or
 * fd 2 (help piped into a pager still fits the terminal), else 80; capped.
 */
export function helpWidth(env: NodeJS.ProcessEnv, winsize: (fd: number) => number | undefined = (fd) => native().winsize(fd)): number {
  const fromEnv = Number(env.COLUMNS);
  const cols = Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : (winsize(1) ?? winsize(2) ?? DEFAULT_WIDTH);
  return Math.max(MIN_WIDTH, Math.min(MAX_WIDTH, cols));
}

const wrap = (text: string, width: number, indent: number): string[] =>
  wrapAnsi(text, Math.max(width - indent, 10), { hard: true, trim: true })
    .split('\n')
    .map((l) => ' '.repeat(indent) + l);

export function hints(o: OptionHelp): string {
  const h = [`[${o.type}]`];
  if (o.repeatable) h.push('[repeatable]');
  if (o.required) h.push('[required]');
  if (o.choices) h.push(`[choices: ${o.choices.join(', ')}]`);
  if (o.default !== undefined) h.push(`[default: ${o.default}]`);
  return h.join(' ');
}

/** A two-column table: the left column as wide as its widest entry, up to 40% of the width. */
function table(rows: Array<[string, string]>, width: number): string[] {
  const col = Math.min(Math.max(...rows.map(([l]) => l.length)) + 4, Math.floor(width * 0.4));
  const out: string[] = [];
  for (const [left, right] of rows) {
    const head = `  ${left}`;
    const body = wrap(right, width, col);
    if (head.length + 2 <= col) out.push(head.padEnd(col) + body[0]!.trimStart(), ...body.slice(1));
    else out.push(head, ...body);
  }
  return out;
}

const optionRows = (opts: OptionHelp[]): Array<[string, string]> =>
  opts.map((o) => {
    const short = o.aliases.find((a) => a.length === 1);
    const left = `${short ? `-${short}, ` : '    '}--${o.key}${o.value ? ` ${o.value}` : ''}`;
    return [left, `${o.describe} ${hints(o)}`.trim()];
  });

/** The words of a shell command line: split at blanks outside quotes and parentheses. */
function shellWords(command: string): string[] {
  const words: string[] = [];
  let word = '';
  let quote: string | undefined;
  let depth = 0;
  for (const ch of command) {
    if (quote) {
      if (ch === quote) quote = undefined;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
    } else if (ch === '(' || ch === ')') {
      depth += ch === '(' ? 1 : -1;
    } else if (ch === ' ' && depth === 0) {
      if (word) words.push(word);
      word = '';
      continue;
    }
    word += ch;
  }
  if (word) words.push(word);
  return words;
}

/**
 * Examples, their descriptions below. A command too long for the width goes on over lines that
 * end in ` \`, broken between words as a shell reads them: pasted whole, it runs as written.
 */
function examples(list: Example[], width: number): string[] {
  const out: string[] = [];
  for (const e of list) {
    let line = '';
    for (const w of shellWords(e.command)) {
      if (line === '') line = `  ${w}`;
      else if (line.length + 1 + w.length + 2 > width) {
        out.push(`${line} \\`);
        line = `    ${w}`;
      } else line += ` ${w}`;
    }
    out.push(line);
    if (e.describe) out.push(...wrap(e.describe, width, 6));
  }
  return out;
}

export function renderCommand(c: CommandHelp, globals: OptionHelp[], width: number): string {
  const out = [...wrap(`Usage: ${c.usage}`, width, 0), '', ...wrap(c.describe, width, 0)];
  if (c.positionals.length > 0) out.push('', 'Arguments:', ...table(c.positionals.map((p) => [p.value!, `${p.describe} ${p.required ? '[required]' : ''}`.trim()]), width));
  if (c.options.length > 0) out.push('', 'Options:', ...table(optionRows(c.options), width));
  out.push('', 'Global options:', ...table(optionRows(globals), width));
  if (c.examples.length > 0) out.push('', 'Examples:', ...examples(c.examples, width));
  return `${out.join('\n')}\n`;
}

export function renderProgram(p: ProgramHelp, width: number): string {
  const out = [
    ...wrap(`Usage: ${p.usage}`, width, 0),
    '',
    ...wrap(p.describe, width, 0),
    '',
    'Subcommands:',
    ...table(
      p.commands.map((c) => [c.name, c.describe]),
      width,
    ),
    '',
    'Global options:',
    ...table(optionRows(p.globals), width),
    '',
    ...wrap(`Run \`${SCRIPT} help SUBCOMMAND\` or \`${SCRIPT} SUBCOMMAND --help\` for a subcommand's options and examples.`, width, 0),
    '',
    ...wrap(p.epilog, width, 0),
  ];
  return `${out.join('\n')}\n`;
}
