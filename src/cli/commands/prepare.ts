import { prepare, prepareGetNext, type PrepareOptions, prepareSetNext } from '../../send/prepare.js';
import { rawTail } from '../../sys/argv.js';
import { describe, FspoolError, UsageError } from '../../errors.js';
import { Queue } from '../../queue/queue.js';
import { idArgument, type OptionDef, type PositionalDef, queuedir, seqfile, type Subcommand, u64, waitLock } from '../options.js';
import type { EncodeOptions } from '../../send/encode.js';
import type { Argv } from 'yargs';
import { outboxFor, outboxOption } from './outbox.js';

/** zstd and OpenPGP around the whole packet (spec/encoding.md). */
function encodeOptions<T>(y: Argv<T>) {
  return y
    .option('zstd', {
      type: 'string',
      value: 'LEVEL',
      describe: 'Compress the whole packet with zstd, at LEVEL (1-19, default 3): --zstd or --zstd=LEVEL',
      coerce: (v: unknown) => {
        if (v === '' || v === true) return 3;
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1 || n > 19) throw new UsageError(`invalid value "${v}" for --zstd: expected a level from 1 to 19`);
        return n;
      },
    })
    .option('encrypt-to', { type: 'string', value: 'KEYFILE', array: true, nargs: 1, requiresArg: true, describe: 'Encrypt to the OpenPGP public key(s) in this file (armored or binary); repeatable' })
    .option('passphrase-file', { type: 'string', value: 'FILE', requiresArg: true, describe: 'Encrypt with the passphrase on the first line of this file (symmetric)' })
    .option('sign-with', { type: 'string', value: 'KEYFILE', requiresArg: true, describe: 'Sign with the OpenPGP secret key in this file' })
    .option('key-passphrase-file', { type: 'string', value: 'FILE', requiresArg: true, describe: 'File whose first line unlocks the --sign-with key' });
}

const input: OptionDef = {
  alias: 'i',
  type: 'string',
  value: 'FILE',
  requiresArg: true,
  describe: 'Path to file to use for input. Set to "-" to use stdin. If not given, no input is used',
};

/** A command packet as the options describe it: seqfile, input, params after `--`, encodings. */
function commandPacket(a: PrepareArgs): PrepareOptions {
  return {
    seqfile: a.seqfile,
    kind: 'Command',
    input: a.input,
    params: rawTail(process.argv.slice(2), a['--'] ?? []),
    waitLockSeconds: a['wait-lock'],
    encode: encodeArgs(a),
    outbox: outboxFor(a.outbox, a.seqfile),
  };
}

function encodeArgs(a: PrepareArgs): EncodeOptions {
  return {
    zstdLevel: a.zstd,
    encryptTo: a['encrypt-to'],
    passphraseFile: a['passphrase-file'],
    signWith: a['sign-with'],
    keyPassphraseFile: a['key-passphrase-file'],
  };
}
import { print } from './out.js';

interface PrepareArgs {
  seqfile: string;
  zstd?: number;
  'encrypt-to'?: string[];
  'passphrase-file'?: string;
  'sign-with'?: string;
  'key-passphrase-file'?: string;
  input?: string;
  'wait-lock'?: number;
  outbox?: string;
  '--'?: string[];
}

export const prepareCmd: Subcommand<PrepareArgs> = {
  command: 'prepare',
  describe: 'Prepare a command packet, with its payload from -i and its params after --, writing it to stdout',
  params: 'PARAMS...',
  builder: (y) =>
    encodeOptions(y)
      .option('seqfile', seqfile)
      .option('input', input)
      .option('wait-lock', waitLock)
      .option('outbox', outboxOption)
      .example('tar c dir | $0 prepare -s seq -i - --zstd --encrypt-to recv.asc > p.fspl', 'compressed and encrypted, as zstd | gpg -e would')
      .example('$0 prepare -s seq -i dump.sql --outbox ~/outbox | nncp-exec receiver fspool', 'keep a copy until a receipt says it ran')
      .example('tar c dir | $0 prepare -s ~/.fspool-seq -i - | ssh host fspool queue-write -q /var/q', 'send a tar stream')
      .example('FSPL_SET_DB=app $0 prepare -s seq -- restore > p.fspl', 'a request with a param and an env var') as never,
  handler: async (a) => {
    await prepare(commandPacket(a));
  },
};

const bare = (kind: 'NOP' | 'Fail', command: string, describe: string): Subcommand<PrepareArgs> => ({
  command,
  describe,
  builder: (y) => encodeOptions(y.option('seqfile', seqfile).option('wait-lock', waitLock).option('outbox', outboxOption)).example(`$0 ${command} -s seq | $0 queue-write -q q`, '') as never,
  handler: async (a) => {
    await prepare({ seqfile: a.seqfile, kind, waitLockSeconds: a['wait-lock'], encode: encodeArgs(a), outbox: outboxFor(a.outbox, a.seqfile) });
  },
});

export const prepareNop = bare('NOP', 'prepare-nop', 'Prepare a NOP packet for transmission, writing to stdout');
export const prepareFail = bare('Fail', 'prepare-fail', 'Prepare a fail packet for transmission, writing to stdout');

export const enqueueCmd: Subcommand<PrepareArgs & { queuedir: string }> = {
  command: 'enqueue',
  describe: 'Prepare a command packet and write it into a local queue, in one process (prepare | queue-write)',
  params: 'PARAMS...',
  builder: (y) =>
    encodeOptions(y)
      .option('queuedir', queuedir)
      .option('seqfile', seqfile)
      .option('input', input)
      .option('wait-lock', waitLock)
      .option('outbox', outboxOption)
      .example('pg_dump app | $0 enqueue -q /var/spool/db -s /var/spool/db.seq -i - --zstd', 'one process instead of two') as never,
  handler: async (a) => {
    const q = new Queue(a.queuedir);
    const t = q.openTemp();
    let consumed = false;
    try {
      await prepare({
        ...commandPacket(a),
        command: 'enqueue',
        outFd: t.fd,
        // The packet is durable before its number is consumed, and visible only after:
        // a crash between the two leaves a complete temp file, never a reused number.
        finish: {
          durable: t.durable,
          publish: () => {
            consumed = true;
            t.publish();
          },
        },
      });
    } catch (e) {
      if (consumed) throw new FspoolError(`${describe(e)}; the packet is complete in ${t.tmpPath}: rename it to ${q.jobsDir}/fspl-NAME.fspl`);
      t.discard();
      throw e;
    }
  },
};

export const prepareGetNextCmd: Subcommand<{ seqfile: string }> = {
  command: 'prepare-get-next',
  describe: 'Get the next sequence number for prepare',
  builder: (y) => y.option('seqfile', seqfile).example('$0 prepare-get-next -s seq', '') as never,
  handler: async (a) => print(`${await prepareGetNext(a.seqfile)}\n`),
};

export const prepareSetNextCmd: Subcommand<{ seqfile: string; id?: bigint; '--'?: string[] }> = {
  command: 'prepare-set-next [id]',
  describe: 'Set the next sequence number for prepare',
  builder: (y) =>
    y
      .option('seqfile', seqfile)
      .positional('id', { type: 'string', value: 'ID', required: true, coerce: u64('ID'), describe: 'The ID to set it to' } satisfies PositionalDef)
      .example('$0 prepare-set-next -s seq 200', '') as never,
  handler: async (a) => prepareSetNext(a.seqfile, idArgument(a)),
};
