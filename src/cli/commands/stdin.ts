import { openForDelivery } from '../../codec/decode.js';
import { formatEnv, jobEnv } from '../../packet/jobenv.js';
import { writePayload } from '../../run/payload.js';
import { type DecodeArgs, decodeContext, decodeOptions, spoolDir, type Subcommand } from '../options.js';
import { print } from './out.js';
import { os } from '../../sys/lazy.js';

export const stdinInfo: Subcommand<DecodeArgs> = {
  command: 'stdin-info',
  describe: 'Get information about a packet piped to filespooler on stdin',
  builder: (y) => decodeOptions(y, { decoder: false, signature: false }).example('$0 stdin-info < packet.fspl', '') as never,
  handler: async (a) => {
    // Read as a delivery reads it: an encoded packet coming down a pipe is decoded in the decode
    // worker, whose heap and --decoder-timeout bound what a hostile one costs (spec/encoding.md).
    const p = await openForDelivery(0, decodeContext(a));
    if (p.kind === 'stream') p.abort();
    print(formatEnv(jobEnv(p.header)));
  },
};

export const stdinPayload: Subcommand<DecodeArgs & { 'spool-dir'?: string }> = {
  command: 'stdin-payload',
  describe: 'Dumps the payload from the packet on stdin to stdout',
  builder: (y) =>
    decodeOptions(y, { decoder: false, signature: true })
      .option('spool-dir', spoolDir)
      .example('$0 stdin-payload < packet.fspl > payload', '') as never,
  handler: (a) => writePayload(0, 1, decodeContext(a), a['spool-dir'] ?? os().tmpdir(), '--spool-dir'),
};
