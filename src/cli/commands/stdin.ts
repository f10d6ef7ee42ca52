import type { CommandModule } from 'yargs';
import { formatEnv, jobEnv } from '../../packet/jobenv.js';
import { readHeaderFromFd } from '../../queue/jobfile.js';
import { writeStdinPayload } from '../../run/payload.js';
import { print } from './out.js';

export const stdinInfo: CommandModule = {
  command: 'stdin-info',
  describe: 'Get information about a packet piped to filespooler on stdin',
  builder: (y) => y.example('$0 stdin-info < packet.fspl', ''),
  handler: () => print(formatEnv(jobEnv(readHeaderFromFd(0).header))),
};

export const stdinPayload: CommandModule = {
  command: 'stdin-payload',
  describe: 'Dumps the payload from the packet on stdin to stdout',
  builder: (y) => y.example('$0 stdin-payload < packet.fspl > payload', ''),
  handler: () => writeStdinPayload(1),
};
