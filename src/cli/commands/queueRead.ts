import type { CommandModule } from 'yargs';
import { log } from '../../log.js';
import { formatEnv, jobEnv, rfc3339Local } from '../../packet/jobenv.js';
import { Queue } from '../../queue/queue.js';
import { writeJobPayload } from '../../run/payload.js';
import { type DecodeArgs, decodeContext, decodeOptions, job, queuedir } from '../options.js';
import { print } from './out.js';

interface LsArgs extends DecodeArgs {
  queuedir: string;
}

export const queueLs: CommandModule<object, LsArgs> = {
  command: 'queue-ls',
  describe: 'Gets information about the jobs in a queue',
  builder: (y) =>
    decodeOptions(y.option('queuedir', queuedir), { decoder: true, signature: false })
      .example('$0 queue-ls -q q', '')
      .example("$0 queue-ls -q q -d 'gzip -dc'", 'packets gzipped as a whole (zstd and OpenPGP need no -d)') as never,
  handler: async (a) => {
    const q = new Queue(a.queuedir).check();
    const jobs = await q.scan(decodeContext(a));
    const rows = [];
    for (const j of jobs) {
      if (j.header) rows.push({ seq: j.header.seq, name: j.name, ts: rfc3339Local(j.header.ctimeSecs) });
      else log.warn(`cannot read job file ${j.path}: ${j.error}`);
    }
    rows.sort((x, y) => (x.seq !== y.seq ? (x.seq < y.seq ? -1 : 1) : x.name < y.name ? -1 : 1));
    const line = (id: string, ts: string, name: string) => `${id.padEnd(20)} ${ts.padEnd(27)} ${name}\n`;
    print(line('ID', 'creation timestamp', 'filename') + rows.map((r) => line(String(r.seq), r.ts, r.name)).join(''));
  },
};

interface JobArgs extends LsArgs {
  job: bigint;
}

export const queueInfo: CommandModule<object, JobArgs> = {
  command: 'queue-info',
  describe: 'Show information about a specific job ID in a queue',
  builder: (y) => decodeOptions(y.option('queuedir', queuedir).option('job', job), { decoder: true, signature: false }).example('$0 queue-info -q q -j 3', '') as never,
  handler: async (a) => {
    const q = new Queue(a.queuedir).check();
    const j = await q.findJob(a.job, decodeContext(a));
    print(formatEnv(jobEnv(j.header, { filename: j.name, queuedir: q.dir, fullpath: j.path })));
  },
};

export const queuePayload: CommandModule<object, JobArgs> = {
  command: 'queue-payload',
  describe: 'Dump the payload of a job to stdout',
  builder: (y) =>
    decodeOptions(y.option('queuedir', queuedir).option('job', job), { decoder: true, signature: true }).example('$0 queue-payload -q q -j 3 > payload', '') as never,
  handler: async (a) => {
    const q = new Queue(a.queuedir).check();
    const ctx = decodeContext(a);
    const j = await q.findJob(a.job, ctx);
    await writeJobPayload(j.path, 1, ctx, q.spoolDir);
  },
};
