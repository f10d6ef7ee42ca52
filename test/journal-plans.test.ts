// A queue's journal is never pruned: a processor that has run for years holds hundreds of
// thousands of rows. What it reads for each job, and for each stale file, must go through an
// index of the packet (or the row id), never through all the rows of one outcome or the whole
// table: SQLite's planner, with no ANALYZE statistics, may pick the outcome index for
// `packet = ? AND outcome = 'success'` and then walk every success the queue ever had.
//
// Each statement the journal prepares while it lives one job and judges stale files, and that a
// receipt's look at the queue prepares, is taken from better-sqlite3 itself and put to EXPLAIN
// QUERY PLAN on a journal with a long history.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Header } from '../src/packet/header.js';
import { Keyring } from '../src/codec/keys.js';
import { Journal, type JobRef } from '../src/queue/journal.js';
import { Queue } from '../src/queue/queue.js';
import { lookAtQueue } from '../src/queue/receipt.js';
import { attachState } from '../src/queue/state.js';
import { StateDb } from '../src/queue/stateDb.js';
import { preparePacket, tempDir } from './helpers/cli.js';

const HISTORY = 20_000;

function seed(path: string): void {
  const db = new Database(path);
  const put = db.prepare(
    `INSERT INTO runs (seq, packet, file, ctime_secs, ctime_nanos, attempt, order_by, pid, started_at, ended_at, outcome, action, commit_state, stream)
     VALUES (?, ?, ?, '1', 0, 1, 'sequence', 1, 1, 2, ?, ?, 'done', ?)`,
  );
  db.transaction(() => {
    for (let i = 1; i <= HISTORY; i++) put.run(String(i), `packet-${i}`, `fspl-${i}.fspl`, i % 10 ? 'success' : 'exit-code', i % 10 ? 'delete' : 'keep', i % 3 ? null : `stream-${i % 7}`);
  })();
  db.close();
}

/** The SQL of every statement better-sqlite3 prepares from now on (until the mocks are restored). */
function recordPrepared(): Set<string> {
  const prepared = new Set<string>();
  const prepare = Database.prototype.prepare;
  vi.spyOn(Database.prototype, 'prepare').mockImplementation(function (this: Database.Database, sql: string) {
    prepared.add(sql);
    return prepare.call(this, sql);
  });
  return prepared;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('the journal with a long history', () => {
  it("reads one packet's rows through the packet index, and the latest runs by id, for a job, stale files and a receipt", async () => {
    const q = tempDir('journal-plans-');
    mkdirSync(join(q, 'jobs'));
    writeFileSync(join(q, 'nextseq'), '20001\n');
    writeFileSync(join(q, 'nextseq.lock'), '');
    const state = StateDb.open(q, { create: true, busyMs: 1000, without: 'test' })!;
    expect(state).toBeDefined();
    seed(state.path);

    const prepared = recordPrepared();

    // The calls a processor makes for one job that fails once, is retried and succeeds, and
    // the stale-file judgement of a run (and of queue-status, queue-clean).
    const journal = new Journal(state);
    const header = { seq: 20_001n, ctimeSecs: 1n, ctimeNanos: 0 } as unknown as Header;
    const job: JobRef = { seq: 20_001n, file: 'fspl-new.fspl', header, packet: 'packet-new' };
    const first = journal.begin(job, 'sequence', true);
    journal.finish(first, { kind: 'exit-code', exitCode: 1 }, 'exit 1', 'retry');
    expect(journal.failures(job.packet)).toBe(1);
    const second = journal.begin(job, 'sequence');
    journal.finish(second, { kind: 'success' }, undefined, 'delete');
    journal.done(second.id);
    expect(journal.lastSuccess('packet-7')?.seq).toBe(7n);
    expect(journal.lastRow('packet-10')?.outcome).toBe('exit-code');
    const ends = journal.endsOf(['packet-7', 'packet-10', 'packet-none']);
    expect([ends.get('packet-7')?.processed?.seq, ends.get('packet-7')?.ran?.seq]).toEqual([7n, 7n]);
    expect([ends.get('packet-10')?.processed, ends.get('packet-10')?.ran?.outcome]).toEqual([undefined, 'exit-code']);
    expect(ends.has('packet-none')).toBe(false);
    const facts = await lookAtQueue(new Queue(q), state, { keys: new Keyring({ defaults: false }) });
    expect([...facts.streams].sort()).toEqual(['stream-0', 'stream-1', 'stream-2', 'stream-3', 'stream-4', 'stream-5', 'stream-6']);
    vi.restoreAllMocks();

    const reading = [...prepared].filter((sql) => /\bFROM runs\b/.test(sql));
    expect(reading.length).toBeGreaterThanOrEqual(5);
    const db = new Database(state.path, { readonly: true });
    for (const sql of reading) {
      const params = (sql.match(/\?/g) ?? []).map(() => 'x');
      const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[]).map((r) => r.detail);
      // The table by its name, or by an alias a query gives it (r, l): any step that reads it.
      const aliases = [...sql.matchAll(/\bruns (?:AS )?([a-z])\b/g)].map((m) => m[1]!);
      const runs = plan.filter((d) => new RegExp(`^(SCAN|SEARCH) (runs|${['runs', ...aliases].join('|')})\\b`).test(d));
      expect(runs.length, sql).toBeGreaterThan(0);
      for (const d of runs) expect(d, `${sql}\n${plan.join('\n')}`).toMatch(/USING (COVERING )?INDEX runs_packet \(packet=|USING INTEGER PRIMARY KEY \(rowid[<>=]|^SEARCH runs$/);
    }
    db.close();
    state.close();
  });

  it("forgets the header cache's rows of files that are gone through its primary key, not a walk of the table per file", async () => {
    const q = tempDir('header-plans-');
    mkdirSync(join(q, 'jobs'));
    writeFileSync(join(q, 'nextseq'), '1\n');
    const fspl = (seq: number) => join(q, 'jobs', `fspl-${seq}.fspl`);
    for (let seq = 1; seq <= 3; seq++) {
      writeFileSync(join(q, 'seq'), `${seq}\n`);
      writeFileSync(fspl(seq), preparePacket(['-s', join(q, 'seq'), '-i', '-'], `job ${seq}`));
    }
    const prepared = recordPrepared();
    const queue = new Queue(q);
    const { db: state } = attachState(queue, { create: true, busyMs: 1000, without: 'test', cacheHeaders: true });
    const ctx = { keys: new Keyring({ defaults: false }) };
    expect(await queue.scan(ctx)).toHaveLength(3);
    rmSync(fspl(2));
    expect(await queue.scan(ctx)).toHaveLength(2);
    vi.restoreAllMocks();
    const deletes = [...prepared].filter((sql) => /^DELETE FROM headers\b/.test(sql));
    expect(deletes).toHaveLength(1);
    const db = new Database(state!.path, { readonly: true });
    const plan = (db.prepare(`EXPLAIN QUERY PLAN ${deletes[0]}`).all('x', 'x') as { detail: string }[]).map((r) => r.detail);
    expect(plan.join('\n')).toMatch(/^SEARCH headers USING PRIMARY KEY \(decoder=\? AND name=\?\)$/);
    expect(db.prepare('SELECT name FROM headers ORDER BY name').pluck().all()).toEqual(['fspl-1.fspl', 'fspl-3.fspl']);
    db.close();
    state!.close();
  });
});
