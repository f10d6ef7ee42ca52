// fspool's command line: fspl 1.2's subcommands, flags and exit codes (spec/exit-codes.md).
import type { Argv, MiddlewareFunction } from 'yargs';
import { describe, FspoolError, UsageError } from '../errors.js';
import { type Level, LEVELS, log, printable, setLogLevel } from '../log.js';
import { PacketError } from '../packet/codec.js';
import { setQuiet } from '../progress.js';
import { isUtf8, mayBeAltered, rawArgs } from '../sys/argv.js';
import { writeAll } from '../sys/fd.js';
import { genFilename, genUuid } from './commands/gen.js';
import { print } from './commands/out.js';
import { enqueueCmd, prepareCmd, prepareFail, prepareGetNextCmd, prepareNop, prepareSetNextCmd } from './commands/prepare.js';
import { queueProcess, stdinProcess } from './commands/process.js';
import { outboxApply, outboxResend, outboxStatusCmd, queueReceipt } from './commands/outbox.js';
import { queueGetNext, queueInit, queueSetNext, queueWrite } from './commands/queueAdmin.js';
import { queueInfo, queueLs, queuePayload } from './commands/queueRead.js';
import { NAGIOS_UNKNOWN, queueClean, queueHistory, queueStatusCmd } from './commands/queueState.js';
import { queueQuarantine } from './commands/quarantine.js';
import { serve, status } from './commands/serve.js';
import { stdinInfo, stdinPayload } from './commands/stdin.js';
import type { HelpSource, ProgramHelp } from './help.js';
import { choiceOption, emptyValue, type OptionDef, type Subcommand } from './options.js';
import { quickParse } from './quickParse.js';
import { splitShortValues } from './shortValues.js';

declare const FSPOOL_VERSION: string;

/** Options that may be given more than once, and the positional lists. */
const REPEATABLE = new Set(['_', '--', 'decrypt-key', 'require-signature', 'encrypt-to']);

/** The LICENSE file, put in by the build. */
declare const FSPOOL_LICENSE: string;

const LICENSE = `${FSPOOL_LICENSE}
fspool reads and writes the packet format of Filespooler by John Goerzen (GPL-3.0-or-later),
and shares no code with it. The code fspool's package carries from other projects (yargs,
better-sqlite3, zstd-napi…) is under their own licenses: dist/THIRD-PARTY-NOTICES in it.
`;

const DESCRIBE = 'Sequential, distributed, POSIX-style job queue processing (Filespooler 1.2 compatible)';
const EPILOG = 'Exit status: 0 success or nothing to do; 1 error; 2 usage error; 128+N interrupted by signal N; queue-status and status: 3 stalled, 4 failing (--nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).';

/** A level's name in any case, or fspl's number for it: 1 error, 2 warn, 3 info, 4 debug, 5 trace. */
function logLevel(v: unknown): Level {
  const w = String(v).toLowerCase();
  if (/^[1-5]$/.test(w)) return LEVELS[5 - Number(w)]!;
  if ((LEVELS as readonly string[]).includes(w)) return w as Level;
  throw new UsageError(`invalid value "${v}" for --log-level: must be one of ${LEVELS.join(', ')} (any case), or a number from 1 (error) to 5 (trace)`);
}

/** Options every subcommand takes. */
const GLOBALS = {
  'log-level': {
    ...choiceOption('log-level', LEVELS, {
      alias: 'l',
      global: true,
      default: 'info',
      value: 'LEVEL',
      describe: 'Logging (to stderr) level; or a number, as fspl takes: 1 error to 5 trace',
    }),
    coerce: logLevel,
  },
  quiet: { type: 'boolean', nargs: 0, global: true, default: false, describe: 'No progress lines on stderr' },
  help: { alias: 'h', type: 'boolean', nargs: 0, global: true, describe: `Show help (also: fspool help SUBCOMMAND)` },
  version: { alias: 'V', type: 'boolean', nargs: 0, describe: 'Print version information' },
} satisfies Record<string, OptionDef>;

/** The global options a command is run with; --help and --version are answered instead of one. */
export const RUN_GLOBALS = { 'log-level': GLOBALS['log-level'], quiet: GLOBALS.quiet };

const showLicense: Subcommand = {
  command: 'show-license',
  describe: 'Show the license information',
  builder: (y) => y.example('$0 show-license', ''),
  handler: () => print(LICENSE),
};

/** yargs' own subcommand (.completion below); here for help. */
const completion: HelpSource = {
  command: 'completion',
  describe: 'Print a shell completion script for bash, or zsh when $SHELL is zsh: subcommands, options and their values',
  builder: (y) => y.example('$0 completion >> ~/.bashrc', 'bash').example('SHELL=zsh $0 completion >> ~/.zshrc', 'zsh'),
};

const help: Subcommand<{ subcommand?: string }> = {
  command: 'help [subcommand]',
  describe: 'Show the help of a subcommand, or this list',
  builder: (y) =>
    y.positional('subcommand', { type: 'string', describe: 'The subcommand', choices: COMMANDS.map((c) => String(c.command).split(' ')[0]!) }).example('$0 help queue-ls', ''),
  handler: async (a) => showHelp(await helpModel(), a.subcommand),
};

/** Every subcommand, in the order help lists them. */
export const COMMANDS: HelpSource[] = [
  enqueueCmd,
  genFilename,
  genUuid,
  outboxApply,
  outboxResend,
  outboxStatusCmd,
  prepareCmd,
  prepareFail,
  prepareGetNextCmd,
  prepareNop,
  prepareSetNextCmd,
  queueClean,
  queueGetNext,
  queueHistory,
  queueInfo,
  queueInit,
  queueLs,
  queuePayload,
  queueProcess,
  queueQuarantine,
  queueReceipt,
  queueSetNext,
  queueStatusCmd,
  queueWrite,
  serve,
  showLicense,
  stdinInfo,
  stdinPayload,
  stdinProcess,
  status,
  completion,
  help,
] as HelpSource[];

// Help and the explaining of usage errors are loaded only when needed (dynamic imports are
// lazy in the bundle): the other runs need neither, and start-up time counts.

/** What help and the man page show: the subcommands as their builders declare them. */
export async function helpModel(): Promise<ProgramHelp> {
  const { programHelp } = await import('./help.js');
  return programHelp({ describe: DESCRIBE, epilog: EPILOG, commands: COMMANDS, globals: GLOBALS });
}

async function showHelp(model: ProgramHelp, subcommand: string | undefined): Promise<void> {
  const { helpWidth, renderCommand, renderProgram } = await import('./help.js');
  const width = helpWidth(process.env);
  const cmd = model.commands.find((c) => c.name === subcommand);
  print(cmd ? renderCommand(cmd, model.globals, width) : renderProgram(model, width));
}

/** A usage error from yargs' parser, to be said in fspool's words when it can (src/cli/suggest.ts). */
class ParseError extends UsageError {}

async function explained(e: unknown, args: string[]): Promise<unknown> {
  if (!(e instanceof ParseError)) return e;
  const { explainUsage } = await import('./suggest.js');
  return new UsageError(explainUsage(args, await helpModel()) ?? e.message);
}

/** The arguments before `--`: fspool's own; what follows is the command's. */
function options(args: string[]): string[] {
  const end = args.indexOf('--');
  return end < 0 ? args : args.slice(0, end);
}

/**
 * `-h`/`--help` anywhere before `--`: help for the subcommand named, shown before yargs
 * parses, so that a missing required option does not stand in its way.
 */
function helpAsked(args: string[]): boolean {
  return options(args).some((a) => a === '--help' || a === '-h');
}

function exitWith(e: unknown, args: string[]): never {
  if (e instanceof UsageError && nagios(args)) {
    // A Nagios plugin's output is its stdout; a check that cannot run is UNKNOWN.
    print(`FSPOOL ${NAGIOS_UNKNOWN.state} - ${e.message}\n`);
    process.exit(NAGIOS_UNKNOWN.code);
  }
  if (e instanceof UsageError) {
    writeErr(`error: ${e.message}\n\nFor more information try --help\n`);
    process.exit(2);
  }
  if (e instanceof FspoolError || e instanceof PacketError) {
    writeErr(`Error: ${e.message}\n`);
    process.exit(e instanceof FspoolError ? e.exitCode : 1);
  }
  writeErr(`Error: ${describe(e)}\n`);
  process.exit(1);
}

/**
 * yargs offers `--l` for `-l` when the word so far is `--`, and nothing for a word that matches
 * no option: keep what can be typed.
 */
function completions(items: string[], current: string): string[] {
  return items.filter((w) => !/^--.$/.test(w) && w.startsWith(current));
}

function nagios(args: string[]): boolean {
  return options(args).includes('--nagios');
}

function writeErr(s: string): void {
  try {
    writeAll(2, Buffer.from(s.split('\n').map(printable).join('\n')));
  } catch {
    /* nowhere to report */
  }
}

/**
 * Options and paths must be UTF-8: Node has already turned any other byte into U+FFFD, and
 * acting on the altered name (a different queue, seqfile or input) would be worse than
 * refusing. Params after `--` are bytes and pass through exactly.
 */
function refuseNonUtf8(args: string[]): void {
  if (!mayBeAltered(options(args))) return;
  const raw = rawArgs(args);
  if (!raw) return;
  const end = raw.findIndex((b) => b.toString('latin1') === '--');
  const bad = (end < 0 ? raw : raw.slice(0, end)).find((b) => !isUtf8(b));
  if (bad) throw new UsageError(`argument "${bad.toString('utf8')}" is not valid UTF-8; names of queues, files and commands must be`);
}

export async function main(given: string[]): Promise<void> {
  // The shell asking yargs to complete a word: given to yargs as it is.
  const completing = given[0] === '--get-yargs-completions';
  let args = given;
  try {
    refuseNonUtf8(given);
    if (!completing) args = splitShortValues(given, COMMANDS as Subcommand<any>[], GLOBALS);
    // yargs' own completion command takes any words after it and prints its script regardless.
    const at = args.indexOf('completion');
    const extra = at >= 0 && !completing && args.slice(0, at).every((a) => a.startsWith('-')) ? args.slice(at + 1).find((a) => !a.startsWith('-')) : undefined;
    if (extra !== undefined) throw new UsageError(`completion takes no arguments ('${extra}'): it prints a script for bash, or zsh when $SHELL is zsh`);
    if (helpAsked(args) && !completing) {
      const model = await helpModel();
      const { subcommandOf, unknownSubcommand } = await import('./suggest.js');
      const sub = subcommandOf(args, model);
      if (sub && !model.commands.some((c) => c.name === sub.word)) throw new UsageError(unknownSubcommand(sub.word, model));
      await showHelp(model, sub?.word);
      process.exit(0);
    }
  } catch (e) {
    exitWith(e, args);
  }
  const quick = quickParsed(args);
  try {
    if (quick) {
      started(quick.argv);
      await quick.command.handler(quick.argv);
    } else {
      await (await program(args, COMMANDS as Subcommand<any>[])).parseAsync();
    }
  } catch (e) {
    exitWith(await explained(e, args), args);
  }
  log.trace('done');
  process.exit(process.exitCode ?? 0);
}

/** The command line parsed without yargs, when it can be (src/cli/quickParse.ts). */
export function quickParsed(args: string[]) {
  return quickParse(args, COMMANDS as Subcommand<any>[], RUN_GLOBALS);
}

/** Keys of the parsed command line that are not options. */
const NOT_OPTIONS = new Set(['_', '--', '$0', 'command', 'id', 'subcommand']);

/** What every command does first with its parsed options. */
function started(a: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(a)) {
    if (Array.isArray(v) && !REPEATABLE.has(k)) throw new UsageError(`--${k} was given more than once`);
    // Positionals and the params after -- may be empty.
    if (!NOT_OPTIONS.has(k) && emptyValue(v)) {
      throw new UsageError(`--${k} was given an empty value (an unset variable?); give it one`);
    }
  }
  setLogLevel(a['log-level'] as Level);
  setQuiet(a.quiet === true);
}

/**
 * fspool's command line as yargs parses it: what quickParse does not read, and the reference it
 * is tested against. yargs is loaded only then.
 */
export async function program(args: string[], commands: Subcommand<any>[]): Promise<Argv> {
  const { default: yargs } = await import('yargs');
  const cli = yargs(args)
    .scriptName('fspool')
    .parserConfiguration({
      'populate--': true,
      'parse-numbers': false,
      'parse-positional-numbers': false,
      'dot-notation': false,
      'camel-case-expansion': false,
      'boolean-negation': false,
      // Repeatable options (--decrypt-key, --encrypt-to, --require-signature) collect into
      // arrays; repeating any other option is refused below, as fspl does.
      'duplicate-arguments-array': true,
      'strip-aliased': true,
    })
    .options(RUN_GLOBALS)
    .middleware(started as unknown as MiddlewareFunction)
    .completion('completion', completion.describe as string, ((current: string, _argv: unknown, complete: (done: (err: unknown, items: string[]) => void) => void, done: (items: string[]) => void) =>
      complete((_err, items) => done(completions(items, current)))) as never)
    .demandCommand(1, 'a subcommand is required; `fspool --help` lists them')
    .strict()
    .help(false)
    .option('help', GLOBALS.help)
    .version('version', GLOBALS.version.describe, `fspool ${FSPOOL_VERSION} (Filespooler 1.2 compatible)`)
    .alias('version', 'V')
    .fail((msg, err) => {
      // yargs' own parse and validation errors, and those of coerce functions (they arrive as
      // YError too), are usage errors: said in fspool's words when a word of the command line
      // can be named as the fault, else in theirs. Anything else was thrown by a command and
      // keeps its own exit status.
      if (err && err.name !== 'YError') throw err;
      throw new ParseError((msg ?? err?.message ?? 'invalid command line').replace(/^Error: /, ''));
    });
  // yargs' own completion command is declared above; the list's entry is for help.
  for (const c of commands) if (typeof c.handler === 'function') cli.command(c);
  return cli;
}
