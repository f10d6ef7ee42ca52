import { log, printable } from '../../log.js';
import { formatEnv, jobEnv, rfc3339Local } from '../../packet/jobenv.js';
import { Queue } from '../../queue/queue.js';
import { attachState, type QueueState, READER_BUSY_MS } from '../../queue/state.js';
import { writeJobPayload } from '../../run/payload.js';
import { shortRun } from '../../sys/shortRun.js';
import { infoJson, lsJson } from '../json.js';
import { type DecodeArgs, decodeContext, decodeOptions, job, queuedir, type Subcommand } from '../options.js';
import { print } from './out.js';
import { json } from './queueState.js';
import { foreignOwner } from '../../queue/owner.js';

interface LsArgs extends DecodeArgs {
  queuedir: string;
  json: boolean;
}

/** Read headers through the queue's header cache, when it has one. */
async function withCache<T>(q: Queue, fn: (state: QueueState) => Promise<T>): Promise<T> {
  const state = attachState(q, { create: true, busyMs: READER_BUSY_MS, cacheHeaders: true, mapped: true, without: 'going on without it: reading every file' });
  try {
    return await fn(state);
  } finally {
    state.close();
  }
}

export const queueLs: Subcommand<LsArgs> = {
  command: 'queue-ls',
  describe: 'Gets information about the jobs in a queue',
  builder: (y) =>
    decodeOptions(y.option('queuedir', queuedir).option('json', json), { decoder: true, signature: false })
      .example('$0 queue-ls -q q', '')
      .example("$0 queue-ls -q q -d 'gzip -dc'", 'packets gzipped as a whole (zstd and OpenPGP need no -d)') as never,
  handler: async (a) => {
    shortRun();
    const q = new Queue(a.queuedir).check();
    const ctx = decodeContext(a);
    if (a.json) return print(lsJson(q, await withCache(q, () => q.scan(ctx))));
    const listing = await withCache(q, () => q.list(ctx));
    const order = listing.bySeq();
    for (const { path, error } of listing.unreadable()) log.warn(`cannot read job file ${path}: ${error}`);
    // Written a block at a time: the listing of 10,000 jobs is never one string.
    const line = (id: string, ts: string, name: string) => `${id.padEnd(20)} ${ts.padEnd(27)} ${name}\n`;
    let out = line('ID', 'creation timestamp', 'filename');
    // Packets made together share their second: its text is made once for them.
    let secs: number | bigint | undefined;
    let ts = '';
    for (const i of order) {
      const s = listing.ctimeSecs(i);
      if (s !== secs) {
        secs = s;
        ts = rfc3339Local(s);
      }
      // A name is shown with its control characters escaped: it is not fspool's to trust.
      out += line(listing.seqText(i), ts, printable(listing.name(i)));
      if (out.length >= 1 << 16) {
        print(out);
        out = '';
      }
    }
    print(out);
  },
};

interface JobArgs extends LsArgs {
  job: bigint;
}

export const queueInfo: Subcommand<JobArgs> = {
  command: 'queue-info',
  describe: 'Show information about a specific job ID in a queue',
  builder: (y) =>
    decodeOptions(y.option('queuedir', queuedir).option('job', job).option('json', json), { decoder: true, signature: false }).example('$0 queue-info -q q -j 3', '') as never,
  handler: async (a) => {
    const q = new Queue(a.queuedir).check();
    const ctx = decodeContext(a);
    const j = await withCache(q, () => q.findJob(a.job, ctx));
    const env = jobEnv(j.header, { filename: j.name, queuedir: q.dir, fullpath: j.path });
    print(a.json ? infoJson(q, j, env) : formatEnv(env));
  },
};

export const queuePayload: Subcommand<JobArgs> = {
  command: 'queue-payload',
  describe: 'Dump the payload of a job to stdout',
  builder: (y) =>
    decodeOptions(y.option('queuedir', queuedir).option('job', job), { decoder: true, signature: true }).example('$0 queue-payload -q q -j 3 > payload', '') as never,
  handler: async (a) => {
    const q = new Queue(a.queuedir).check();
    const ctx = decodeContext(a);
    const j = await withCache(q, () => q.findJob(a.job, ctx));
    await writeJobPayload(j.path, 1, ctx, q.spoolDir, foreignOwner(q.dir), j.identity);
  },
};
