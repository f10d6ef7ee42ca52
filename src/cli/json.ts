// The --json documents of queue-ls, queue-info, queue-status and queue-history: one schema,
// documented in spec/json.md. Every document is one JSON object on one line with
// "version": 1 and "kind": the command. Sequence numbers are u64 and are written as exact JSON
// integers (JSON has no limit; a reader in JavaScript loses precision above 2^53).
import { lstatSync } from 'node:fs';
import { rfc3339Local, rfc3339Utc } from '../packet/jobenv.js';
import type { Header } from '../packet/header.js';
import { packetId, type RunRow } from '../queue/journal.js';
import type { Queue, ScannedJob } from '../queue/queue.js';

export const JSON_VERSION = 1;

/** JSON text with bigints as exact integers; undefined members are left out. */
export function toJson(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  switch (typeof v) {
    case 'bigint':
      return v.toString();
    case 'number':
      return Number.isFinite(v) ? String(v) : 'null';
    case 'string':
    case 'boolean':
      return JSON.stringify(v);
    case 'object':
      if (Array.isArray(v)) return `[${v.map(toJson).join(',')}]`;
      return `{${Object.entries(v as Record<string, unknown>)
        .filter(([, x]) => x !== undefined)
        .map(([k, x]) => `${JSON.stringify(k)}:${toJson(x)}`)
        .join(',')}}`;
    default:
      return 'null';
  }
}

/** A byte string: a JSON string when it is valid UTF-8, else {"base64": "..."}. */
export function bytesJson(b: Buffer): string | { base64: string } {
  const s = b.toString('utf8');
  return Buffer.from(s, 'utf8').equals(b) ? s : { base64: b.toString('base64') };
}

export const msIso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());

/** The same time as seconds since the epoch (the `*_epoch` fields), for arithmetic in jq. */
export const msEpoch = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : ms / 1000);

/** A time in milliseconds as the pair of fields NAME and NAME_epoch. */
export const msTime = (name: string, ms: number | null | undefined) => ({ [name]: msIso(ms), [`${name}_epoch`]: msEpoch(ms) });

/** The job file's size in bytes; null if it went away meanwhile. */
const fileSize = (path: string) => lstatSync(path, { throwIfNoEntry: false })?.size ?? null;

export function ctimeJson(secs: bigint, nanos: number) {
  return { secs, nanos, utc: rfc3339Utc(secs), local: rfc3339Local(secs) };
}

/** What every document says about a job file. */
export function jobJson(h: Header, file: string, path: string, packet: string) {
  return { seq: h.seq, file, path, size: fileSize(path), ctime: ctimeJson(h.ctimeSecs, h.ctimeNanos), ctime_epoch: h.ctimeSecs, type: h.cmd.kind.toLowerCase(), packet };
}

export function runJson(r: RunRow) {
  return {
    id: r.id,
    seq: r.seq,
    file: r.file,
    packet: r.packet,
    ctime: ctimeJson(r.ctimeSecs, r.ctimeNanos),
    ctime_epoch: r.ctimeSecs,
    attempt: r.attempt,
    order_by: r.orderBy,
    pid: r.pid,
    ...msTime('started_at', r.startedAt),
    ...msTime('ended_at', r.endedAt),
    duration_ms: r.endedAt === null ? null : r.endedAt - r.startedAt,
    outcome: r.outcome,
    exit_code: r.exitCode,
    signal: r.signal,
    detail: r.detail,
    bytes: r.bytes,
    stderr_tail: r.stderrTail,
    action: r.action,
    moved_to: r.movedTo,
    commit: r.commit,
  };
}

export function doc(kind: string, queue: string, body: object): string {
  return `${toJson({ version: JSON_VERSION, kind, queue, ...body })}\n`;
}

/** queue-ls --json: readable jobs by seq, and the files that could not be read. */
export function lsJson(q: Queue, jobs: ScannedJob[]): string {
  const readable = jobs.filter((j): j is ScannedJob & { header: Header } => j.header !== undefined);
  readable.sort((x, y) => (x.header.seq !== y.header.seq ? (x.header.seq < y.header.seq ? -1 : 1) : x.name < y.name ? -1 : 1));
  return doc('queue-ls', q.dir, {
    next_seq: q.nextseq.readIfExists() ?? null,
    jobs: readable.map((j) => jobJson(j.header, j.name, j.path, packetId(j.header))),
    unreadable: jobs.filter((j) => !j.header).map((j) => ({ file: j.name, path: j.nameNotUtf8 ? null : j.path, error: j.error })),
  });
}

/** queue-info --json: the job, its params and variables, and the FSPL_* set its command gets. */
export function infoJson(q: Queue, j: ScannedJob & { header: Header }, env: Array<[string, Buffer]>): string {
  const h = j.header;
  return doc('queue-info', q.dir, {
    job: {
      ...jobJson(h, j.name, j.path, packetId(h)),
      params: h.cmd.kind === 'Command' ? h.cmd.params.map(bytesJson) : [],
      set: h.cmd.kind === 'Command' ? h.cmd.env.map(([k, v]) => ({ name: bytesJson(k), value: bytesJson(v) })) : [],
    },
    vars: env.map(([name, value]) => ({ name, value: bytesJson(value) })),
  });
}
