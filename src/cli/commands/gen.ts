import { randomUUID } from '../../sys/lazy.js';
import type { Subcommand } from '../options.js';
import { print } from './out.js';

export const genFilename: Subcommand = {
  command: 'gen-filename',
  describe: 'Display a fspl-*.fspl filename to stdout',
  builder: (y) => y.example('cp p.fspl "q/jobs/$($0 gen-filename)"', 'a job name, for a tool that copies packets into jobs/'),
  handler: () => print(`fspl-${randomUUID()}.fspl\n`),
};

export const genUuid: Subcommand = {
  command: 'gen-uuid',
  describe: 'Display a UUID to stdout',
  builder: (y) => y.example('$0 gen-uuid', 'a random (v4) UUID'),
  handler: () => print(`${randomUUID()}\n`),
};
