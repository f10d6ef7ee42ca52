import type { CommandModule } from 'yargs';
import { Queue } from '../../queue/queue.js';
import { type OnError, type OrderBy, processQueue } from '../../run/processQueue.js';
import { processStdin } from '../../run/processStdin.js';
import { choice, commandAndParams, type DecodeArgs, decodeContext, decodeOptions, delivery, queuedir, runOptions, seconds, u64, waitLock } from '../options.js';
import type { DeliveryMode } from '../../run/source.js';

interface RunArgs extends DecodeArgs {
  delivery: DeliveryMode;
  command?: string;
  '--'?: string[];
  'allow-job-params': boolean;
  'ignore-payload': boolean;
  timeout?: number;
  grace: number;
}

interface QueueProcessArgs extends RunArgs {
  queuedir: string;
  'on-error': OnError;
  'order-by': OrderBy;
  'never-delete': boolean;
  maxjobs?: bigint;
  'output-to': 'passboth' | 'saveboth';
  'wait-lock'?: number;
  watch: boolean;
  rescan: number;
  retries: bigint;
  backoff: number;
}

const runOpts = (a: RunArgs) => ({
  ...commandAndParams(a),
  decode: decodeContext(a),
  delivery: a.delivery,
  allowJobParams: a['allow-job-params'],
  ignorePayload: a['ignore-payload'],
  timeoutSeconds: a.timeout,
  graceSeconds: a.grace,
});

export const queueProcess: CommandModule<object, QueueProcessArgs> = {
  command: 'queue-process [command]',
  describe: 'Process a queue',
  builder: (y) =>
    decodeOptions(runOptions(y), { decoder: true, signature: true })
      .usage('$0 queue-process [OPTIONS] --queuedir DIR COMMAND [-- PARAMS...]')
      .option('queuedir', queuedir)
      .option('delivery', delivery)
      .option('on-error', {
        type: 'string',
        requiresArg: true,
        default: 'retry',
        coerce: choice('--on-error', ['delete', 'leave', 'retry', 'quarantine'] as const),
        describe: 'What to do with an error. Can be Delete, Leave, Retry, or Quarantine (move it to QUEUE/fspool/quarantine/)',
      })
      // Issue 4: retries within a run, counted across runs by the journal.
      .option('retries', {
        type: 'string',
        requiresArg: true,
        default: '0',
        coerce: u64('--retries'),
        describe: 'Run a failed job again up to N times (failures are counted across runs) before --on-error applies',
      })
      .option('backoff', {
        type: 'string',
        requiresArg: true,
        default: '0',
        coerce: seconds('--backoff'),
        describe: 'Seconds to wait before the first retry; doubled for each further retry in a run',
      })
      .option('order-by', {
        type: 'string',
        requiresArg: true,
        default: 'sequence',
        coerce: choice('--order-by', ['sequence', 'timestamp'] as const),
        describe: 'In what order to process jobs. Can be Sequence or Timestamp',
      })
      .option('never-delete', { type: 'boolean', nargs: 0, default: false, describe: 'Never delete processed job files in any circumstance' })
      .option('maxjobs', { alias: 'n', type: 'string', requiresArg: true, coerce: u64('--maxjobs'), describe: 'Maximum number of jobs to process' })
      .option('output-to', {
        type: 'string',
        requiresArg: true,
        default: 'passboth',
        coerce: choice('--output-to', ['passboth', 'saveboth'] as const),
        describe: 'What to do with stdout and stderr of the process. Can be PassBoth or SaveBoth (to jobs/NAME.out)',
      })
      .option('wait-lock', waitLock)
      .option('watch', {
        type: 'boolean',
        nargs: 0,
        default: false,
        describe: 'Keep running: process each packet as it lands (inotify, and a rescan every --rescan seconds); SIGTERM ends the run',
      })
      // A rescan every instant would only spin: at least a second apart.
      .option('rescan', { type: 'string', requiresArg: true, default: '30', coerce: seconds('--rescan', 1), describe: 'With --watch: look at jobs/ at least this often (1 or more)' })
      .example("$0 queue-process -q /var/q --timeout 3600 zfs -- receive -u tank/backup", 'receive zfs streams in order')
      .example("$0 queue-process -q q -d 'zstd -dc' --on-error delete sh -- -c 'tar xf - -C /srv'", 'decode, unpack, drop failures')
      .example('$0 queue-process -q /var/spool/q --watch ./apply', 'a daemon: run packets as they arrive (contrib/fspool-watch@.service)')
      .example('$0 queue-process -q q --retries 3 --backoff 60 --on-error quarantine ./apply', 'try 4 times, then set the job aside') as never,
  handler: async (a) => {
    const code = await processQueue(new Queue(a.queuedir), {
      ...runOpts(a),
      onError: a['on-error'],
      orderBy: a['order-by'],
      neverDelete: a['never-delete'],
      retries: Number(a.retries),
      backoffSeconds: a.backoff,
      maxJobs: a.maxjobs === undefined ? undefined : Number(a.maxjobs),
      saveOutput: a['output-to'] === 'saveboth',
      waitLockSeconds: a['wait-lock'],
      watch: a.watch,
      rescanSeconds: a.rescan,
    });
    process.exitCode = code;
  },
};

export const stdinProcess: CommandModule<object, RunArgs> = {
  command: 'stdin-process [command]',
  describe: 'Process a command from a job packet read from stdin',
  builder: (y) =>
    decodeOptions(runOptions(y), { decoder: false, signature: true })
      .option('delivery', delivery)
      .usage('$0 stdin-process [OPTIONS] COMMAND [-- PARAMS...]')
      .example('ssh sender fspool prepare -s seq -i file | $0 stdin-process cat', '') as never,
  handler: async (a) => {
    process.exitCode = await processStdin(runOpts(a));
  },
};
