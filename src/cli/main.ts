// fspool's command line: fspl 1.2's subcommands, flags and exit codes (spec/exit-codes.md).
import yargs, { type MiddlewareFunction } from 'yargs';
import { describe, FspoolError, UsageError } from '../errors.js';
import { type Level, LEVELS, log, printable, setLogLevel } from '../log.js';
import { PacketError } from '../packet/codec.js';
import { setQuiet } from '../progress.js';
import { isUtf8, rawArgs } from '../sys/argv.js';
import { writeAll } from '../sys/fd.js';
import { genFilename, genUuid } from './commands/gen.js';
import { print } from './commands/out.js';
import { enqueueCmd, prepareCmd, prepareFail, prepareGetNextCmd, prepareNop, prepareSetNextCmd } from './commands/prepare.js';
import { queueProcess, stdinProcess } from './commands/process.js';
import { queueGetNext, queueInit, queueSetNext, queueWrite } from './commands/queueAdmin.js';
import { queueInfo, queueLs, queuePayload } from './commands/queueRead.js';
import { queueClean, queueHistory, queueStatusCmd } from './commands/queueState.js';
import { stdinInfo, stdinPayload } from './commands/stdin.js';
import { choice } from './options.js';

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

function exitWith(e: unknown): never {
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
  const raw = rawArgs(args);
  if (!raw) return;
  const end = raw.findIndex((b) => b.toString('latin1') === '--');
  const bad = (end < 0 ? raw : raw.slice(0, end)).find((b) => !isUtf8(b));
  if (bad) throw new UsageError(`argument "${bad.toString('utf8')}" is not valid UTF-8; names of queues, files and commands must be`);
}

export async function main(args: string[]): Promise<void> {
  try {
    refuseNonUtf8(args);
  } catch (e) {
    exitWith(e);
  }
  const cli = commandLine(args);
  try {
    await cli.parseAsync();
  } catch (e) {
    exitWith(e);
  }
  log.trace('done');
  process.exit(process.exitCode ?? 0);
}

/** fspool's yargs definitions: they parse the command line, and make --help and fspool(1) (manPage.ts). */
export function commandLine(args: string[]) {
  return yargs(args)
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
    .usage('$0 [-l LEVEL] <SUBCOMMAND> [OPTIONS]\n\nSequential, distributed, POSIX-style job queue processing (Filespooler 1.2 compatible)')
    .option('log-level', {
      alias: 'l',
      type: 'string',
      requiresArg: true,
      global: true,
      default: 'info',
      coerce: choice('--log-level', LEVELS),
      describe: 'Logging (to stderr) level: TRACE, DEBUG, INFO, WARN, ERROR',
    })
    .option('quiet', { type: 'boolean', nargs: 0, global: true, default: false, describe: 'No progress lines on stderr' })
    .middleware(((a: Record<string, unknown>, y: unknown) => {
      // yargs renders the whole help text after starting every command, to show it if the
      // command fails; fspool never shows help on failure, and the rendering is a sixth of
      // its start-up time. (Internal API: if it goes away, this only stops saving the time.)
      const usage = (y as unknown as { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: unknown } } }).getInternalMethods?.().getUsageInstance?.();
      if (usage && typeof usage.cacheHelpMessage === 'function') usage.cacheHelpMessage = () => {};
      for (const [k, v] of Object.entries(a)) {
        if (Array.isArray(v) && !REPEATABLE.has(k)) throw new UsageError(`--${k} was given more than once`);
      }
      setLogLevel(a['log-level'] as Level);
      setQuiet(a.quiet === true);
    }) as unknown as MiddlewareFunction)
    .command(enqueueCmd)
    .command(genFilename)
    .command(genUuid)
    .command(prepareCmd)
    .command(prepareFail)
    .command(prepareGetNextCmd)
    .command(prepareNop)
    .command(prepareSetNextCmd)
    .command(queueClean)
    .command(queueGetNext)
    .command(queueHistory)
    .command(queueInfo)
    .command(queueInit)
    .command(queueLs)
    .command(queuePayload)
    .command(queueProcess)
    .command(queueSetNext)
    .command(queueStatusCmd)
    .command(queueWrite)
    .command({
      command: 'show-license',
      describe: 'Show the license information',
      builder: (y) => y.example('$0 show-license', ''),
      handler: () => print(LICENSE),
    })
    .command(stdinInfo)
    .command(stdinPayload)
    .command(stdinProcess)
    .completion('completion', 'Print a shell completion script (bash or zsh, from $SHELL): fspool completion >> ~/.bashrc')
    .demandCommand(1, 'a subcommand is required')
    .strict()
    .help('help')
    .alias('help', 'h')
    .version('version', 'Print version information', `fspool ${FSPOOL_VERSION} (Filespooler 1.2 compatible)`)
    .alias('version', 'V')
    .epilog('Exit status: 0 success or nothing to do; 1 error; 2 usage error; 128+N interrupted by signal N; queue-status: 3 stalled, 4 failing.')
    .wrap(Math.min(100, Number(process.env.COLUMNS) || 100))
    .fail((msg, err) => {
      // yargs' own parse and validation errors (coerce errors arrive as YError too) are usage
      // errors; anything else was thrown by a command and keeps its own exit status.
      if (err && err.name !== 'YError') throw err;
      throw new UsageError((msg ?? err?.message ?? 'invalid command line').replace(/^Error: /, ''));
    });
}
