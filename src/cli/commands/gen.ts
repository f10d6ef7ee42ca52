import { randomUUID } from 'node:crypto';
import type { CommandModule } from 'yargs';
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
