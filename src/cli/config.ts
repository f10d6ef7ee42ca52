// fspool serve's configuration file: TOML (smol-toml), checked with a schema (valibot) that is
// derived from queue-process's settings (QUEUE_SETTINGS in commands/process.ts), so that a
// queue key is its option in snake_case, with the same meaning, default and checks. A bad file
// gives one short line per problem, naming the key (and the line, for a TOML syntax error).
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import * as v from 'valibot';
import { describe, FspoolError, UsageError } from '../errors.js';
import type { Listen, QueueSettings, ServeConfig } from '../serve/settings.js';
import { type QueueProcessArgs, queueProcessOptions, QUEUE_SETTINGS } from './commands/process.js';
import { type DecodeArgs, decodeContext, keyFileProblem, type Setting, type TomlType } from './options.js';
import { didYouMean } from './suggest.js';
import { os } from '../sys/lazy.js';

/** A configuration that cannot be used: every problem found, each one line (exit 2). */
export class ConfigProblems extends FspoolError {
  override name = 'ConfigProblems';
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(problems.map((p) => `${file}: ${p}`).join('\n'), 2);
  }
}

/** The configuration key of a setting: its long name in snake_case, unless it says otherwise. */
export const keyOf = (name: string, s: Setting) => s.key ?? name.replaceAll('-', '_');

/** Queue names label log lines and metrics: kept to what needs no quoting anywhere. */
const QUEUE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const TOP_KEYS = ['max_parallel', 'metrics_listen', 'defaults', 'queues'];

/** The queue keys: settings by key; the command is the queue's own. */
const SETTINGS = new Map(Object.entries(QUEUE_SETTINGS).map(([name, s]) => [keyOf(name, s), { name, s }] as const));
const CLI_ONLY = new Map([...SETTINGS].filter(([, { s }]) => s.cliOnly).map(([k, { s }]) => [k, s.cliOnly!]));
const QUEUE_KEYS = [...[...SETTINGS].filter(([, { s }]) => !s.cliOnly).map(([k]) => k), 'command'];

const TYPE_WORDS: Record<TomlType, string> = {
  string: 'a string',
  path: 'a string (a path)',
  file: 'a string (a path)',
  files: 'a path or an array of paths',
  number: 'a number',
  integer: 'a whole number',
  boolean: 'true or false',
};

const got = (x: unknown) =>
  Array.isArray(x)
    ? 'an array'
    : x === null || x === undefined
      ? 'nothing'
      : x instanceof Date
        ? 'a date'
        : typeof x === 'object'
          ? 'a table'
          : `${typeof x} ${typeof x === 'number' && !Number.isFinite(x) ? String(x) : JSON.stringify(typeof x === 'bigint' ? String(x) : x)}`;

/** The schema of one queue key, from its setting: TOML's type, then the option's own check. */
function keySchema(key: string, s: Setting, base: string) {
  const expected = `expected ${TYPE_WORDS[s.toml]}`;
  const message = (i: { input: unknown }) => `${expected}, not ${got(i.input)}`;
  const type = {
    string: v.string(message),
    path: v.string(message),
    file: v.string(message),
    files: v.union([v.string(), v.array(v.string())], message),
    number: v.number(message),
    integer: v.union([v.pipe(v.number(), v.integer(message)), v.bigint()], message),
    boolean: v.boolean(message),
  }[s.toml];
  return v.pipe(
    type as v.GenericSchema<unknown>,
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      let value = dataset.value;
      // A path of "" would resolve to the configuration's own directory: never what was meant.
      if ((s.toml === 'path' || s.toml === 'file' || s.toml === 'files') && [value].flat().includes('')) {
        addIssue({ message: 'an empty path' });
        return NEVER;
      }
      // Nor is an empty command (receipt_exec, decoder): the command line refuses it too. A
      // choice's own check names its choices.
      if (s.toml === 'string' && !s.parse && value === '') {
        addIssue({ message: 'an empty string' });
        return NEVER;
      }
      if (s.toml === 'path' || s.toml === 'file') value = resolve(base, value as string);
      if (s.toml === 'files') value = (Array.isArray(value) ? value : [value]).map((p: string) => resolve(base, p));
      if (!s.parse) return value;
      try {
        return s.parse(key)(value);
      } catch (e) {
        addIssue({ message: describe(e).replace(` for ${key}:`, ':') });
        return NEVER;
      }
    }),
  );
}

const command = v.pipe(
  v.array(
    v.string((i) => `expected a string (the program, then its arguments: ["zfs", "receive", "tank/data"]), not ${got(i.input)}`),
    (i) => `expected an array of strings (the program, then its arguments: ["zfs", "receive", "tank/data"]), not ${got(i.input)}`,
  ),
  v.minLength(1, 'must name the program to run'),
  v.check((c) => c[0] !== '', 'the program to run cannot be ""'),
);

function queueSchema(path: string, base: string, withDir: boolean) {
  const entries: Record<string, v.GenericSchema<unknown>> = { command: v.optional(command) };
  for (const [key, { s }] of SETTINGS) if (!s.cliOnly) entries[key] = v.optional(keySchema(`${path}.${key}`, s, base));
  if (!withDir) delete entries.dir;
  return v.looseObject(entries);
}

const LISTEN_FORM = 'HOST:PORT with a port from 0 to 65535 (127.0.0.1:9464, [::1]:9464)';

/** "HOST:PORT" or "[IPv6]:PORT"; undefined if it is neither. The host is never implied. */
function parseListen(text: string): Listen | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  return m && port <= 65535 ? { host: m[1] ?? m[2]!, port } : undefined;
}

/** --metrics-listen's value. */
export function metricsListen(text: string, what: string): Listen {
  const l = parseListen(text);
  if (!l) throw new UsageError(`invalid value "${text}" for ${what}: expected ${LISTEN_FORM}`);
  return l;
}

const listen = v.pipe(
  v.string((i) => `expected ${LISTEN_FORM}, not ${got(i.input)}`),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const l = parseListen(dataset.value);
    if (l) return l;
    addIssue({ message: `expected ${LISTEN_FORM}, not ${JSON.stringify(dataset.value)}` });
    return NEVER;
  }),
);

const isTable = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Date);

/** A TOML table (valibot's record takes an array too: [[queues]] would make queues "0", "1"). */
const table = (what: string) => v.pipe(v.custom<Record<string, unknown>>(isTable, (i) => `expected ${what}, not ${got(i.input)}`), v.record(v.string(), v.unknown()));

const TOP_SCHEMAS = {
  max_parallel: v.pipe(v.number((i) => `expected a whole number, 1 or more, not ${got(i.input)}`), v.integer('expected a whole number'), v.minValue(1, 'must be 1 or more')),
  metrics_listen: listen,
  defaults: table('a table ([defaults])'),
  queues: table('tables of queues ([queues.NAME])'),
};

/** valibot's issues as lines naming their key. */
function issueLines(issues: readonly v.BaseIssue<unknown>[] | undefined, prefix: string): string[] {
  return (issues ?? []).map((i) => {
    const path = [prefix, v.getDotPath(i)].filter(Boolean).join('.');
    if (i.input === undefined && /^Invalid key/.test(i.message)) return `${path}: missing`;
    return `${path}: ${i.message}`;
  });
}

/** Keys nobody reads: said, with the one probably meant, rather than silently ignored. */
function unknownKeys(table: Record<string, unknown>, known: string[], where: string, cliOnly?: Map<string, string>): string[] {
  const out: string[] = [];
  for (const k of Object.keys(table)) {
    if (known.includes(k)) continue;
    const key = where ? `${where}.${k}` : k;
    const why = cliOnly?.get(k);
    if (why) out.push(`${key}: not a queue key (${why})`);
    else {
      const near = didYouMean(k, known);
      out.push(`${key}: unknown key${near ? `; did you mean ${near}?` : ''}`);
    }
  }
  return out;
}

/** The key files' identity, so that a reload after a key file was replaced starts the queue's processor again. */
function fileStamp(path: string): string {
  try {
    const st = statSync(path);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return '-';
  }
}

/**
 * Read and check the configuration in `file`: the settings serve runs with, or ConfigProblems
 * with every problem found.
 */
export function loadConfig(file: string): ServeConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigProblems(file, [`cannot read it: ${describe(e)}`]);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text, { integersAsBigInt: 'asNeeded' }) as Record<string, unknown>;
  } catch (e) {
    const err = e as Error & { line?: number; column?: number };
    const what = err.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
    throw new ConfigProblems(`${file}${err.line ? `:${err.line}:${err.column}` : ''}`, [`not valid TOML: ${what}`]);
  }
  const base = dirname(resolve(file));
  const problems: string[] = unknownKeys(doc, TOP_KEYS, '');
  /** A top-level key, checked; undefined when it is absent or wrong (said in problems). */
  const top = <K extends keyof typeof TOP_SCHEMAS>(key: K): v.InferOutput<(typeof TOP_SCHEMAS)[K]> | undefined => {
    if (doc[key] === undefined) return undefined;
    const r = v.safeParse(TOP_SCHEMAS[key], doc[key], { abortEarly: false });
    problems.push(...issueLines(r.issues, key));
    return r.success ? r.output : undefined;
  };
  const maxParallel = top('max_parallel');
  const listenAt = top('metrics_listen');
  const defaults = top('defaults') ?? {};
  const tables = top('queues');
  if (doc.queues === undefined) problems.push('queues: missing: one [queues.NAME] table per queue');
  else if (tables && Object.keys(tables).length === 0) problems.push('queues: no queue in it: one [queues.NAME] table per queue');
  problems.push(...unknownKeys(defaults, QUEUE_KEYS, 'defaults', CLI_ONLY));
  if ('dir' in defaults) problems.push('defaults.dir: each queue has its own directory; give dir in [queues.NAME]');
  const checkedDefaults = v.safeParse(queueSchema('defaults', base, false), defaults, { abortEarly: false });
  problems.push(...issueLines(checkedDefaults.issues, 'defaults'));
  // A bad default is said once, under [defaults], not again for every queue that takes it.
  const badDefaults = new Set((checkedDefaults.issues ?? []).map((i) => String(i.path?.[0]?.key)));
  const goodDefaults = Object.fromEntries(Object.entries(defaults).filter(([k]) => !badDefaults.has(k)));

  const queues: QueueSettings[] = [];
  const dirs = new Map<string, string>();
  for (const [name, table] of Object.entries(tables ?? {})) {
    const where = `queues.${/^[A-Za-z0-9_-]+$/.test(name) ? name : JSON.stringify(name)}`;
    if (!QUEUE_NAME.test(name)) {
      problems.push(`${where}: a queue name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
      continue;
    }
    if (!isTable(table)) {
      problems.push(`${where}: expected a table ([${where}]), not ${got(table)}`);
      continue;
    }
    const merged = { ...goodDefaults, ...table };
    // Two queues in one directory is said whatever else is wrong with either.
    if (typeof merged.dir === 'string' && merged.dir !== '') {
      const dir = resolve(base, merged.dir);
      let real = dir;
      try {
        real = realpathSync(dir);
      } catch {
        /* not there (yet): compared as written */
      }
      const other = dirs.get(real);
      if (other) problems.push(`${where}.dir: the same directory as queues.${other}.dir (${dir}): a queue has one processor`);
      dirs.set(real, name);
    }
    const before = problems.length;
    problems.push(...unknownKeys(table, QUEUE_KEYS, where, CLI_ONLY));
    const r = v.safeParse(queueSchema(where, base, true), merged, { abortEarly: false });
    problems.push(...issueLines(r.issues, where));
    if (merged.dir === undefined) problems.push(`${where}.dir: missing: the queue's directory`);
    if (merged.command === undefined) problems.push(`${where}.command: missing: the receiver to run, as an array (["zfs", "receive", "tank/data"])`);
    if (problems.length > before || !r.success) continue;
    const values = r.output as Record<string, unknown>;

    // The parsed values under their option names, defaults filled in as the command line
    // fills them: then queue-process's own mapping makes the processor's options.
    const args: Record<string, unknown> = {};
    for (const [key, { name: option, s }] of SETTINGS) {
      const given = values[key];
      const dflt = s.option.default;
      args[option] = given !== undefined ? given : dflt !== undefined && s.parse ? s.parse(`--${option}`)(dflt) : dflt;
    }
    const beforeFiles = problems.length;
    for (const [key, { s }] of SETTINGS) {
      if ((s.toml === 'file' || s.toml === 'files') && values[key] !== undefined) {
        for (const p of [values[key]].flat() as string[]) {
          const problem = keyFileProblem(p);
          if (problem) problems.push(`${where}.${key}: cannot read ${p}: ${problem.why}; ${problem.fix}`);
        }
      }
    }
    if (problems.length > beforeFiles) continue;
    const dir = args.queuedir as string;
    const [program, ...params] = values.command as string[];
    let opts: ReturnType<typeof queueProcessOptions>;
    try {
      opts = queueProcessOptions(args as unknown as QueueProcessArgs, { command: program!, params: params.map((p) => Buffer.from(p)) });
    } catch (e) {
      // Said of options that go together: in the configuration's words, its keys.
      problems.push(`${where}: ${describe(e).replace(/--([a-z][a-z-]*)/g, (_m, o: string) => keyOf(o, QUEUE_SETTINGS[o] ?? { option: {}, toml: 'string' }))}`);
      continue;
    }
    const { stopTimeoutSeconds, ...processOptions } = opts;
    const files = [...SETTINGS].filter(([, { s }]) => s.toml === 'file' || s.toml === 'files').map(([key]) => values[key]);
    const stamps = files.flat().filter((p): p is string => typeof p === 'string').map(fileStamp);
    const fingerprint = JSON.stringify([values, stamps], (_k, x) => (typeof x === 'bigint' ? String(x) : x));
    queues.push({ name, dir, opts: processOptions, stopTimeoutSeconds, fingerprint, readerDecode: decodeContext(args as unknown as DecodeArgs) });
  }
  if (problems.length > 0) throw new ConfigProblems(file, problems);
  return { maxParallel: maxParallel ?? defaultParallel(), metricsListen: listenAt, queues };
}

/** max_parallel's default: one receiver per core, each decoding its own stream. */
export function defaultParallel(): number {
  return Math.max(1, os().availableParallelism());
}
