import { Queue } from '../../queue/queue.js';
import { notAPacket } from '../../codec/check.js';
import { Keyring } from '../../codec/keys.js';
import { decoder, idArgument, type PositionalDef, queuedir, seconds, type Subcommand, u64, waitLock } from '../options.js';
import { print } from './out.js';

export const queueInit: Subcommand<{ queuedir: string; 'append-only': boolean }> = {
  command: 'queue-init',
  describe: 'Initialize a queue',
  builder: (y) =>
    y
      .option('queuedir', queuedir)
      .option('append-only', { type: 'boolean', nargs: 0, default: false, describe: 'Create the queue without nextseq: it can be written and listed, not processed' })
      .example('$0 queue-init -q /var/spool/q', '') as never,
  handler: (a) => {
    Queue.init(a.queuedir, a['append-only']);
  },
};

export const queueGetNext: Subcommand<{ queuedir: string }> = {
  command: 'queue-get-next',
  describe: 'Prints the next sequence number for the queue',
  builder: (y) => y.option('queuedir', queuedir).example('$0 queue-get-next -q q', '') as never,
  handler: (a) => {
    // No lock: nextseq is only ever replaced by rename, so a read sees a whole number.
    const q = new Queue(a.queuedir).checkProcessable();
    print(`${q.nextseq.read()}\n`);
  },
};

export const queueSetNext: Subcommand<{ queuedir: string; id?: bigint; '--'?: string[]; 'wait-lock'?: number }> = {
  command: 'queue-set-next [id]',
  describe: 'Sets the next sequence number for the queue',
  builder: (y) =>
    y
      .option('queuedir', queuedir)
      .option('wait-lock', waitLock)
      .positional('id', { type: 'string', value: 'ID', required: true, coerce: u64('ID'), describe: 'The ID to set it to' } satisfies PositionalDef)
      .example('$0 queue-set-next -q q 42', 'skip ahead to seq 42')
      .example('$0 queue-set-next -q synced 1', 'make an append-only queue (a synced copy of an outbox, say) one that can be processed, from seq 1') as never,
  handler: async (a) => {
    // On an append-only queue this creates nextseq.lock and nextseq: the way to make it
    // processable (fspl creates nextseq too, once nextseq.lock is there).
    const q = new Queue(a.queuedir).check();
    const lock = await q.nextseq.lock({ create: true, waitSeconds: a['wait-lock'], what: `queue ${q.dir}` });
    try {
      q.nextseq.write(idArgument(a));
    } finally {
      lock.release();
    }
  },
};

interface WriteArgs {
  queuedir: string;
  raw: boolean;
  decoder?: string;
  'decoder-timeout'?: number;
}

export const queueWrite: Subcommand<WriteArgs> = {
  command: 'queue-write',
  describe: 'Save a packet from stdin to a queue (refused if it is not one)',
  builder: (y) =>
    y
      .option('queuedir', queuedir)
      .option('decoder', { ...decoder, describe: 'Command that decodes the packet (run by $SHELL -c): the input must decode to a packet header' })
      .option('decoder-timeout', { type: 'string', value: 'SECONDS', helpType: 'number', requiresArg: true, default: '300', coerce: seconds('--decoder-timeout'), describe: 'Seconds the decoder may take to give the header' })
      .option('raw', { type: 'boolean', nargs: 0, default: false, describe: 'Write the input as it is, whatever it holds (a deliberately opaque file)' })
      .example('ssh sender fspool prepare -s seq | $0 queue-write -q q', '') as never,
  handler: async (a) => {
    // The writer rarely holds the receiver's keys: an encrypted packet is taken as it is.
    const ctx = { decoder: a.decoder, decoderTimeoutSeconds: a['decoder-timeout'], keys: new Keyring({ defaults: false }) };
    await new Queue(a.queuedir).write(0, a.raw ? undefined : (fd) => notAPacket(fd, ctx));
  },
};
