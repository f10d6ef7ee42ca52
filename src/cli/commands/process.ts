import type { DecodeContext } from '../../codec/decode.js';
import { Queue } from '../../queue/queue.js';
import { type OnError, type OrderBy, type ProcessOptions, processQueue } from '../../run/processQueue.js';
import { processStdin } from '../../run/processStdin.js';
import {
  checkKeyFiles,
  choiceSetting,
  cliOption,
  commandArgument,
  commandAndParams,
  type DecodeArgs,
  decodeContext,
  DECODE_SETTINGS,
  decodeOptions,
  delivery,
  queuedir,
  RUN_SETTINGS,
  runOptions,
  secondsSetting,
  type Setting,
  spoolDir,
  type Subcommand,
  u64,
  waitLock,
  withSettings,
} from '../options.js';
import type { DeliveryMode } from '../../run/source.js';
import { receiptSender } from '../../run/receiptHook.js';
import { FspoolError, UsageError } from '../../errors.js';
import { statSync } from 'node:fs';

interface RunArgs extends DecodeArgs {
  delivery: DeliveryMode;
  command?: string;
  '--'?: string[];
  'allow-job-params': boolean;
  'ignore-payload': boolean;
  timeout?: number;
  grace: number;
}

/** queue-process's options, parsed: from its command line, or from a queue of serve's configuration. */
export interface QueueProcessArgs extends RunArgs {
  queuedir: string;
  'on-error': OnError;
  'order-by': OrderBy;
  'never-delete': boolean;
  maxjobs?: bigint;
  'output-to': 'passboth' | 'saveboth';
  'wait-lock'?: number;
  'skip-if-locked': boolean;
  'stop-timeout': number;
  watch: boolean;
  rescan: number;
  retries: bigint;
  backoff: number;
  'receipt-to-dir'?: string;
  'receipt-exec'?: string;
  'receipt-sign-with'?: string;
  'receipt-every': number;
  'receipt-timeout': number;
}

/**
 * Default --stop-timeout: under systemd's default stop timeout (90 s), so that a running job
 * gets a minute to finish and is then interrupted cleanly, before systemd would SIGKILL it.
 */
const STOP_TIMEOUT = 60;

/** queue-process's own settings; with RUN_SETTINGS and DECODE_SETTINGS, all of them (QUEUE_SETTINGS). */
const PROCESS_SETTINGS = {
  queuedir: { option: queuedir, toml: 'path', key: 'dir' },
  delivery,
  'on-error': choiceSetting(['delete', 'leave', 'retry', 'quarantine'] as const, {
    default: 'retry',
    value: 'ACTION',
    describe: 'What to do with a job that failed: delete it, leave it (and go on), retry it next run, or quarantine it (move it to QUEUE/fspool/quarantine/)',
  }),
  // Runs within a run, counted across runs by the journal.
  retries: {
    option: {
      type: 'string',
      value: 'N',
      helpType: 'number',
      requiresArg: true,
      default: '0',
      describe: 'Run a failed job again up to N times (failures are counted across runs) before --on-error applies',
    },
    toml: 'integer',
    parse: u64,
  },
  backoff: secondsSetting({ value: 'SECONDS', default: '0', describe: 'Seconds to wait before the first retry; doubled for each further retry in a run' }),
  'order-by': choiceSetting(['sequence', 'timestamp'] as const, { default: 'sequence', value: 'ORDER', describe: 'In what order to process jobs' }),
  'never-delete': { option: { type: 'boolean', nargs: 0, default: false, describe: 'Never delete processed job files in any circumstance' }, toml: 'boolean' },
  maxjobs: {
    option: { alias: 'n', type: 'string', value: 'N', helpType: 'number', requiresArg: true, describe: 'Maximum number of jobs to process' },
    toml: 'integer',
    parse: u64,
    cliOnly: 'a served queue is processed for as long as serve runs',
  },
  'output-to': choiceSetting(['passboth', 'saveboth'] as const, {
    default: 'passboth',
    value: 'WHERE',
    describe: "The command's stdout and stderr: pass both on (passboth) or save both to jobs/NAME.out (saveboth)",
  }),
  'wait-lock': { option: waitLock, toml: 'number', cliOnly: 'serve waits for a queue another processor holds, and takes it once it is free' },
  'skip-if-locked': {
    option: { type: 'boolean', nargs: 0, default: false, describe: 'If another processor holds the queue, exit 0 quietly (for cron) instead of failing' },
    toml: 'boolean',
    cliOnly: 'serve waits for a queue another processor holds, and takes it once it is free',
  },
  'stop-timeout': secondsSetting({
    value: 'SECONDS',
    default: String(STOP_TIMEOUT),
    describe: 'On SIGTERM, start no new job and let the running one finish for up to this many seconds before interrupting it (0: as long as it takes)',
  }),
  watch: {
    option: {
      type: 'boolean',
      nargs: 0,
      default: false,
      describe: 'Keep running: process each packet as it lands (inotify, and a rescan every --rescan seconds); SIGTERM ends the run',
    },
    toml: 'boolean',
    cliOnly: 'serve watches every queue',
  },
  // A rescan every instant would only spin: at least a tenth of a second apart.
  rescan: secondsSetting({ value: 'SECONDS', default: '30', describe: 'With --watch: look at jobs/ at least this often (0.1 or more)' }, 0.1),
  'receipt-to-dir': { option: { type: 'string', value: 'DIR', requiresArg: true, describe: 'After each pass, write a receipt per stream into this directory (spec/receipts.md)' }, toml: 'path' },
  'receipt-exec': { option: { type: 'string', value: 'CMD', requiresArg: true, describe: 'After each pass, run $SHELL -c CMD with a receipt per stream on stdin' }, toml: 'string' },
  'receipt-sign-with': { option: { type: 'string', value: 'KEYFILE', requiresArg: true, describe: 'Sign receipts with the OpenPGP secret key in this file' }, toml: 'file' },
  'receipt-every': secondsSetting({ value: 'SECONDS', default: '3600', describe: 'Send a receipt at least this often, even when nothing changed' }),
  'receipt-timeout': secondsSetting({
    value: 'SECONDS',
    default: '120',
    describe: 'Kill a --receipt-exec command still running after this long (its process group: SIGTERM, SIGKILL after --grace) and try again after the next pass (0: no limit)',
  }),
} satisfies Record<string, Setting>;

/**
 * Every setting of queue-process, in the order help lists them: the command line's options,
 * and the queue keys of serve's configuration (those not marked cliOnly).
 */
export const QUEUE_SETTINGS: Record<string, Setting> = { ...RUN_SETTINGS, ...DECODE_SETTINGS, ...PROCESS_SETTINGS };

const runOpts = (a: RunArgs, cmd: { command: string; params: Buffer[] }) => ({
  ...cmd,
  decode: decodeContext(a),
  delivery: a.delivery,
  allowJobParams: a['allow-job-params'],
  ignorePayload: a['ignore-payload'],
  timeoutSeconds: a.timeout,
  graceSeconds: a.grace,
});

/** What queue-process's options mean: the one mapping from them to a processor's options, for the command line and for serve. */
export function queueProcessOptions(a: QueueProcessArgs, cmd: { command: string; params: Buffer[] }): ProcessOptions & { stopTimeoutSeconds: number } {
  const q = new Queue(a.queuedir);
  const run = runOpts(a, cmd);
  return {
    ...run,
    onError: a['on-error'],
    orderBy: a['order-by'],
    neverDelete: a['never-delete'],
    retries: Number(a.retries),
    backoffSeconds: a.backoff,
    maxJobs: a.maxjobs === undefined ? undefined : Number(a.maxjobs),
    saveOutput: a['output-to'] === 'saveboth',
    waitLockSeconds: a['wait-lock'],
    skipIfLocked: a['skip-if-locked'],
    stopTimeoutSeconds: a['stop-timeout'],
    watch: a.watch,
    rescanSeconds: a.rescan,
    // The receipts read headers through the jobs' decode worker: one thread, not a second.
    afterPass: receiptHook(q, a, run.decode),
  };
}

/** --receipt-to-dir / --receipt-exec: the hook that sends receipts after each pass. */
function receiptHook(q: Queue, a: QueueProcessArgs, decode: DecodeContext) {
  if (a['receipt-to-dir'] === undefined && a['receipt-exec'] === undefined) {
    if (a['receipt-sign-with'] !== undefined) throw new UsageError('--receipt-sign-with needs --receipt-to-dir or --receipt-exec');
    return undefined;
  }
  const dir = a['receipt-to-dir'];
  if (dir !== undefined && !statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new FspoolError(`--receipt-to-dir ${dir}: no such directory; create it (receipts are written into it after each pass)`);
  }
  // --receipt-sign-with: a typo would otherwise be a WARN at every pass, and no receipt ever.
  checkKeyFiles(a, PROCESS_SETTINGS);
  return receiptSender(q, {
    toDir: a['receipt-to-dir'],
    exec: a['receipt-exec'],
    signWith: a['receipt-sign-with'],
    keyPassphraseFile: a['key-passphrase-file'],
    everySeconds: a['receipt-every'],
    execTimeoutSeconds: a['receipt-timeout'],
    graceSeconds: a.grace,
    decode,
  });
}

export const queueProcess: Subcommand<QueueProcessArgs> = {
  command: 'queue-process [command]',
  params: 'PARAMS...',
  describe: 'Process a queue',
  builder: (y) =>
    commandArgument(withSettings(y, QUEUE_SETTINGS))
      .example("$0 queue-process -q /var/q --timeout 3600 zfs -- receive -u tank/backup", 'receive zfs streams in order')
      .example("$0 queue-process -q q -d 'zstd -dc' --on-error delete sh -- -c 'tar xf - -C /srv'", 'decode, unpack, drop failures')
      .example('$0 queue-process -q /var/spool/q --watch ./apply', 'a daemon: run packets as they arrive (contrib/systemd/fspool-watch.service)')
      .example('$0 queue-process -q q --retries 3 --backoff 60 --on-error quarantine ./apply', 'try 4 times, then set the job aside')
      .example("$0 queue-process -q q --receipt-exec 'nncp-exec sender fspool-receipt' ./apply", "tell the sender's outbox what ran") as never,
  handler: async (a) => {
    const code = await processQueue(new Queue(a.queuedir), queueProcessOptions(a, commandAndParams(a)));
    process.exitCode = code;
  },
};

export const stdinProcess: Subcommand<RunArgs & { 'spool-dir'?: string }> = {
  command: 'stdin-process [command]',
  params: 'PARAMS...',
  describe: 'Process a command from a job packet read from stdin',
  builder: (y) =>
    decodeOptions(runOptions(y), { decoder: false, signature: true })
      .option('delivery', cliOption('delivery', delivery))
      .option('spool-dir', spoolDir)
      .example('ssh sender fspool prepare -s seq -i file | $0 stdin-process cat', '')
      .example('$0 stdin-process --require-signature send.asc --spool-dir /var/tmp ./apply < p.fspl', 'the plaintext is decoded and verified in /var/tmp before ./apply starts') as never,
  handler: async (a) => {
    process.exitCode = await processStdin({ ...runOpts(a, commandAndParams(a)), spoolDir: a['spool-dir'] });
  },
};
