// Options shared by several subcommands, spelled as fspl spells them. Values fspl treats
// case-insensitively are lower-cased here; bad values are usage errors (exit 2).
import type { Argv, CommandModule, Options, PositionalOptions } from 'yargs';
import { constants } from 'node:fs';
import { FspoolError, UsageError } from '../errors.js';
import { parseU64 } from '../queue/seqfile.js';
import type { DecodeContext } from '../codec/decode.js';
import { DecodeWorkers } from '../codec/decodeThread.js';
import { Keyring } from '../codec/keys.js';
import type { DeliveryMode } from '../run/source.js';
import { accessProblem, who } from '../sys/access.js';
import { rawTail } from '../sys/argv.js';

/** A yargs option, plus what help shows that yargs has no field for (src/cli/help.ts). */
export interface OptionDef extends Options {
  /** The value's name in usage lines and help: DIR, FILE, SECONDS. */
  value?: string;
  /** Shown as [number]: the value is a string to yargs, parsed by a coerce function (a u64 must stay exact). */
  helpType?: 'number';
}

export interface PositionalDef extends PositionalOptions {
  value?: string;
  /** Required, though optional to yargs because it may also come after `--`. */
  required?: boolean;
}

/** A subcommand: yargs' module, and what its usage line ends with (`[-- PARAMS...]`). */
export type Subcommand<T = object> = CommandModule<object, T> & { params?: string };

/**
 * What a subcommand's builder declares, kept as given (yargs would drop help's own fields):
 * what help, the man page and the quick parser (src/cli/quickParse.ts) read. Builders declare
 * options, positionals and examples, and nothing else.
 */
export class Declared {
  readonly options: Array<[string, OptionDef]> = [];
  readonly positionals: Array<[string, PositionalDef]> = [];
  /** As written, with `$0` for the program's name. */
  readonly examples: Array<{ command: string; describe: string }> = [];

  static of(mod: Pick<Subcommand<any>, 'builder'>): Declared {
    const d = new Declared();
    if (typeof mod.builder === 'function') mod.builder(d as unknown as Argv<never>);
    return d;
  }

  option(key: string, o: OptionDef): this {
    this.options.push([key, o]);
    return this;
  }

  positional(key: string, o: PositionalDef): this {
    this.positionals.push([key, o]);
    return this;
  }

  example(command: string, describe: string): this {
    this.examples.push({ command, describe });
    return this;
  }
}

export function u64(what: string) {
  return (v: unknown): bigint => {
    const n = parseU64(String(v));
    if (n === undefined) throw new UsageError(`invalid value "${v}" for ${what}: expected a whole number from 0 to 18446744073709551615`);
    return n;
  };
}

/** A duration in seconds: any finite number from `min` up (fspool's timers take any length). */
export function seconds(what: string, min = 0) {
  return (v: unknown): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || String(v).trim() === '') {
      throw new UsageError(`invalid value "${v}" for ${what}: expected seconds (a number, ${min === 0 ? '0' : min} or more)`);
    }
    return n;
  };
}

export function choice<T extends string>(what: string, values: readonly T[]) {
  return (v: unknown): T => {
    const s = String(v).toLowerCase() as T;
    if (!values.includes(s)) throw new UsageError(`invalid value "${v}" for ${what}: must be one of ${values.join(', ')} (any case)`);
    return s;
  };
}

/** An option whose values are fixed words: completed by the shell, any case accepted. */
export function choiceOption<T extends string>(name: string, values: readonly T[], o: OptionDef & { default: T; value: string }): OptionDef {
  return { type: 'string', requiresArg: true, choices: values, coerce: choice(`--${name}`, values), ...o };
}

export const queuedir: OptionDef = { alias: 'q', type: 'string', value: 'DIR', demandOption: true, requiresArg: true, describe: 'The path to the queue directory' };
export const decoder: OptionDef = {
  alias: 'd',
  type: 'string',
  value: 'CMD',
  requiresArg: true,
  describe: 'Command to decode the files (run by $SHELL -c); its exit status is checked',
};
export const seqfile: OptionDef = {
  alias: 's',
  type: 'string',
  value: 'FILE',
  demandOption: true,
  requiresArg: true,
  describe: 'The path to the state file. Set to "-" to not use any state file at all',
};
export const job: OptionDef = { alias: 'j', type: 'string', value: 'ID', helpType: 'number', demandOption: true, requiresArg: true, coerce: u64('--job'), describe: 'The ID of the job' };
export const waitLock: OptionDef = {
  type: 'string',
  value: 'SECONDS',
  helpType: 'number',
  requiresArg: true,
  coerce: seconds('--wait-lock'),
  describe: 'If the lock is held, keep trying for up to this many seconds (fspl fails at once)',
};

/**
 * A setting of the commands that run jobs. One definition serves the command line (yargs) and
 * `fspool serve`'s configuration (src/cli/config.ts derives its schema from these tables), so
 * that names, meanings, defaults and checks cannot drift apart. In the configuration a setting
 * is a queue key spelled as its long name in snake_case (`--on-error` is `on_error`).
 */
export interface Setting {
  /** The yargs definition (help, alias, the default as a command line would give it), without coerce: see parse. */
  option: OptionDef;
  /**
   * The value's type in TOML, checked before parse. Paths (`path`, and `file`/`files`: files
   * fspool reads, which must be readable when the configuration is loaded) are taken from the
   * configuration's directory.
   */
  toml: TomlType;
  /** A command-line string or a TOML value to the option's value; throws UsageError naming `what`. */
  parse?: (what: string) => (v: unknown) => unknown;
  /** The configuration's key, where it is not the long name in snake_case. */
  key?: string;
  /** Not a queue key of the configuration, and why (said to whoever writes it there). */
  cliOnly?: string;
}

export type TomlType = 'string' | 'path' | 'file' | 'files' | 'number' | 'integer' | 'boolean';

/** The yargs option of a setting named `name`. */
export function cliOption(name: string, s: Setting): OptionDef {
  return s.parse ? { ...s.option, coerce: s.parse(`--${name}`) } : s.option;
}

/** Add every setting of a table to a yargs builder, in the table's order. */
export function withSettings<T>(y: Argv<T>, settings: Record<string, Setting>): Argv<T> {
  let r = y;
  for (const [name, s] of Object.entries(settings)) r = r.option(name, cliOption(name, s)) as Argv<T>;
  return r;
}

/** A setting whose value is one of fixed words: completed by the shell, any case accepted. */
export function choiceSetting<T extends string>(values: readonly T[], o: OptionDef & { default: T; value: string }): Setting {
  return { option: { type: 'string', requiresArg: true, choices: values, ...o }, toml: 'string', parse: (what) => choice(what, values) };
}

/**
 * An option's value that is empty: no option takes one (a variable left unset, --outbox
 * "$OUTBOX", would mean the current directory, or no command at all). The command line refuses
 * it (src/cli/main.ts); the quick parser leaves it to yargs to say so.
 */
export const emptyValue = (v: unknown): boolean => v === '' || (Array.isArray(v) && v.includes(''));

/** A duration setting: a number of seconds from `min` up. */
export function secondsSetting(o: OptionDef & { value: string }, min = 0): Setting {
  return { option: { type: 'string', helpType: 'number', requiresArg: true, ...o }, toml: 'number', parse: (what) => seconds(what, min) };
}

/** The settings of every command that runs a job (queue-process, stdin-process, serve's queues). */
export const RUN_SETTINGS = {
  'allow-job-params': { option: { type: 'boolean', nargs: 0, default: false, describe: "Append the job's parameters to the command line (off by default)" }, toml: 'boolean' },
  'ignore-payload': { option: { type: 'boolean', nargs: 0, default: false, describe: 'Ignore the payload; the command gets an empty stdin' }, toml: 'boolean' },
  timeout: secondsSetting({ value: 'SECONDS', describe: 'A timeout, in seconds, for the command (then SIGTERM to its process group, SIGKILL after --grace), and for each pass over the payload before it starts' }),
  grace: secondsSetting({ value: 'SECONDS', default: '5', describe: 'Seconds between SIGTERM and SIGKILL when a command times out' }),
} satisfies Record<string, Setting>;

/** The COMMAND positional of the commands that run a job. */
export function commandArgument<T>(y: Argv<T>) {
  return y.positional('command', { type: 'string', value: 'COMMAND', required: true, describe: 'The command to run (its own options go after --)' } satisfies PositionalDef);
}

/** The options of the commands that run a job (stdin-process; queue-process has them among QUEUE_SETTINGS). */
export function runOptions<T>(y: Argv<T>) {
  return commandArgument(withSettings(y, RUN_SETTINGS));
}

/** COMMAND, then PARAMS after `--`. Also accepts `-- COMMAND PARAMS...` (fspl does not). */
export function commandAndParams(argv: { command?: unknown; '--'?: unknown }): { command: string; params: Buffer[] } {
  const rest = Array.isArray(argv['--']) ? argv['--'].map(String) : [];
  const raw = rawTail(process.argv.slice(2), rest);
  const command = argv.command !== undefined ? String(argv.command) : rest.shift();
  if (!command) throw new UsageError('missing COMMAND: the command to run');
  return { command, params: argv.command !== undefined ? raw : raw.slice(1) };
}

/** A positional ID, also accepted after `--` as fspl accepts it (`queue-set-next -q Q -- 12`). */
export function idArgument(argv: { id?: bigint; '--'?: unknown }): bigint {
  if (argv.id !== undefined) return argv.id;
  const rest = Array.isArray(argv['--']) ? argv['--'].map(String) : [];
  if (rest.length !== 1) throw new UsageError('missing ID: the sequence number to set');
  return u64('ID')(rest[0]);
}

/** Default --decoder-timeout: long enough for a decoder that buffers a large file, not forever. */
const DECODER_TIMEOUT = 300;

/** How packets are decoded: an external decoder, and the keys for OpenPGP (spec/encoding.md). */
export const DECODE_SETTINGS = {
  'decrypt-key': {
    option: {
      type: 'string',
      value: 'KEYFILE',
      array: true,
      nargs: 1,
      requiresArg: true,
      describe: 'OpenPGP secret key file (armored or binary) to decrypt packets with; repeatable. Default: the files in ~/.config/fspool/keys/',
    },
    toml: 'files',
  },
  'passphrase-file': { option: { type: 'string', value: 'FILE', requiresArg: true, describe: 'File whose first line is the passphrase of symmetrically encrypted packets' }, toml: 'file' },
  'key-passphrase-file': { option: { type: 'string', value: 'FILE', requiresArg: true, describe: 'File whose first line unlocks protected secret keys' }, toml: 'file' },
  decoder: { option: decoder, toml: 'string' },
  'decoder-timeout': secondsSetting({
    value: 'SECONDS',
    default: String(DECODER_TIMEOUT),
    describe: 'Seconds a decoder (this one, or the built-in OpenPGP one) may take to produce a packet header before it is stopped and the file counted unreadable (0: no limit)',
  }),
  'require-signature': {
    option: { type: 'string', value: 'KEYFILE', array: true, nargs: 1, requiresArg: true, describe: 'Accept only packets signed by a key in this public key file; repeatable' },
    toml: 'files',
  },
} satisfies Record<string, Setting>;

/** The decoding options a command takes: the keys always; the external decoder and the signature check where they apply. */
export function decodeSettings(opts: { decoder: boolean; signature: boolean }): Record<string, Setting> {
  const { decoder: d, 'decoder-timeout': t, 'require-signature': sig, ...keys } = DECODE_SETTINGS;
  return { ...keys, ...(opts.decoder ? { decoder: d, 'decoder-timeout': t } : {}), ...(opts.signature ? { 'require-signature': sig } : {}) };
}

export function decodeOptions<T>(y: Argv<T>, opts: { decoder: boolean; signature: boolean }) {
  return withSettings(y, decodeSettings(opts));
}

export interface DecodeArgs {
  decoder?: string;
  'decoder-timeout'?: number;
  'decrypt-key'?: string[];
  'passphrase-file'?: string;
  'key-passphrase-file'?: string;
  'require-signature'?: string[];
}

/**
 * How packets are decoded. OpenPGP is decoded in a decode worker (spec/encoding.md, "Decoding
 * threads"), started on the first OpenPGP packet (a queue of plain packets never starts one):
 * a processor's main thread then never moves payload bytes, and what openpgp.js does with a
 * hostile packet (hours of work, gigabytes, from a few KiB) is bounded from outside, by the
 * worker's heap limit and by --decoder-timeout, which stop the worker whole: a thread busy
 * inside openpgp.js gets no timer in edgewise. Listings and status too, for the same packets.
 */
export function decodeContext(a: DecodeArgs): DecodeContext {
  checkKeyFiles(a, DECODE_SETTINGS);
  return {
    decoder: a.decoder,
    // Commands without the option (no -d) bound the built-in decoders all the same.
    decoderTimeoutSeconds: a['decoder-timeout'] ?? DECODER_TIMEOUT,
    keys: new Keyring({
      decryptKeys: a['decrypt-key'],
      passphraseFile: a['passphrase-file'],
      keyPassphraseFile: a['key-passphrase-file'],
      requireSignature: a['require-signature'],
    }),
    workers: new DecodeWorkers(),
  };
}

/** Why a key or passphrase file cannot be read, and the fix; undefined when it can. Nothing is read. */
export function keyFileProblem(file: string): { why: string; fix: string } | undefined {
  const problem = accessProblem(file, constants.R_OK);
  if (!problem) return undefined;
  const fixes: Record<string, string> = { EISDIR: 'give a file', ENOENT: 'check the path', EACCES: `give a file ${who()} may read` };
  return { why: problem.why, fix: fixes[problem.code ?? ''] ?? 'give a file this user can read' };
}

/**
 * The key and passphrase files `settings` name (their TOML type is file or files) are read when
 * a packet first needs them, or a receipt is signed: one that cannot be read
 * must stop the command now, not let every poll of an empty queue exit 0 until a job arrives
 * and cannot be decoded. A pipe is fine (--passphrase-file <(pass show fspool)): only looked
 * at here, not read, so that it is not consumed.
 */
export function checkKeyFiles(a: object, settings: Record<string, Setting>): void {
  // The settings that name files, as serve's configuration finds them (their TOML type).
  for (const [option, s] of Object.entries(settings)) {
    if (s.toml !== 'file' && s.toml !== 'files') continue;
    for (const file of [(a as Record<string, unknown>)[option] ?? []].flat() as string[]) {
      const problem = keyFileProblem(file);
      if (problem) throw new FspoolError(`--${option} ${file}: ${problem.why}; ${problem.fix}; nothing was done`);
    }
  }
}

export const delivery: Setting = choiceSetting(['stream', 'verified'] as const satisfies readonly DeliveryMode[], {
  default: 'stream',
  value: 'MODE',
  describe:
    'Encoded packets: stream plaintext to the command as it is decoded (EOF only once verified), or decode and verify into a temp file first (verified)',
});

/** Where stdin-process and stdin-payload decode a packet whose signature must verify first. */
export const spoolDir: OptionDef = {
  type: 'string',
  value: 'DIR',
  requiresArg: true,
  describe:
    'With --require-signature (or --delivery verified): the payload is decoded here and verified before it is used, since stdin cannot be read twice. Default: $TMPDIR or /tmp. Needs free space for the whole plaintext',
};
