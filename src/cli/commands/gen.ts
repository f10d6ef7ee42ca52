import type { CommandModule } from 'yargs';
import { randomUUID } from '../../sys/lazy.js';
import { print } from './out.js';

export const genFilename: CommandModule = {
  command: 'gen-filename',
  describe: 'Display a fspl-*.fspl filename to stdout',
  handler: () => print(`fspl-${randomUUID()}.fspl\n`),
};

export const genUuid: CommandModule = {
  command: 'gen-uuid',
  describe: 'Display a UUID to stdout',
  handler: () => print(`${randomUUID()}\n`),
};
