// The lossy-transport harness (spec/receipts.md, spec/reliability.md): a sender with an outbox
// and a receiving queue, joined in both directions by a transport that drops, duplicates and
// reorders. Each round:
//
//   1. the sender makes up to `perRound` new packets (`prepare --outbox`) into the wire;
//   2. it re-sends what the newest receipt shows missing (`outbox-resend --to-dir` the wire);
//   3. the transport takes what is in the wire: each file is lost (drop), or delivered once or
//      (dup) twice, each copy after a random delay of 0..maxDelay rounds, in a shuffled order,
//      into the queue's jobs/ the way Syncthing does it (temp name, then rename);
//   4. the receiver runs `queue-process --receipt-to-dir`, which writes a receipt when
//      something changed;
//   5. the same transport carries receipts back (lost, duplicated, delayed, out of order), and
//      the sender runs `outbox-apply` on each that arrives.
//
// Until every packet ran and the outbox is empty. Checks: the receiver ran seqs 1..count, each
// exactly once, in order, each with its own payload; the outbox ends empty. Figures: rounds to
// converge, packets lost and re-sent, receipts lost. Real processes, real files; the only thing
// simulated is the network.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { FSPOOL, prng, tempDir } from './harness.mjs';

const RECORD = 'printf "%s %s\\n" "$FSPL_SEQ" "$(cat)" >> "$0"';

/** A transport between two directories: lossy, duplicating, reordering. */
class Wire {
  constructor(name, from, store, rand, { drop, dup, maxDelay }) {
    Object.assign(this, { name, from, store, rand, drop, dup, maxDelay });
    this.flight = []; // { path, due }
    this.taken = 0;
    this.lost = 0;
    this.copies = 0;
    this.serial = 0;
    mkdirSync(store, { recursive: true });
  }

  /** Take what the sender put in `from` (only whole files: names not starting with a dot). */
  take(round, filter = () => true) {
    for (const n of readdirSync(this.from).filter((n) => !n.startsWith('.') && filter(n)).sort()) {
      const src = join(this.from, n);
      this.taken++;
      if (this.rand() < this.drop) {
        rmSync(src);
        this.lost++;
        continue;
      }
      const copies = this.rand() < this.dup ? 2 : 1;
      for (let c = 0; c < copies; c++) {
        const path = join(this.store, `${this.serial++}-${n}`);
        copyFileSync(src, path);
        this.flight.push({ path, due: round + Math.floor(this.rand() * (this.maxDelay + 1)) });
        this.copies++;
      }
      rmSync(src);
    }
  }

  /** The copies due by this round, in a shuffled order; they leave the wire. */
  due(round) {
    const now = this.flight.filter((f) => f.due <= round);
    this.flight = this.flight.filter((f) => f.due > round);
    for (let i = now.length - 1; i > 0; i--) {
      const j = Math.floor(this.rand() * (i + 1));
      [now[i], now[j]] = [now[j], now[i]];
    }
    return now.map((f) => f.path);
  }
}

function ok(args, { input } = {}) {
  const r = spawnSync(FSPOOL, args, { input, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], timeout: 120_000, maxBuffer: 1 << 26 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`fspool ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr}`);
  return r;
}

/**
 * One run. Returns { ok, problems, rounds, figures }. `dir`: a fresh directory (made if absent).
 */
export function runLossy({ count = 20, seed = 1, drop = 0.25, dup = 0.1, maxDelay = 2, perRound = 4, maxRounds = 300, dir, log = () => {} } = {}) {
  dir ??= tempDir('fspool-lossy-');
  const rand = prng(seed);
  const queue = join(dir, 'queue');
  const outbox = join(dir, 'outbox');
  const seqfile = join(dir, 'sender.seq');
  const wireOut = join(dir, 'wire-out');
  const receipts = join(dir, 'receipts');
  const applied = join(dir, 'applied.log');
  for (const d of [wireOut, receipts]) mkdirSync(d, { recursive: true });
  ok(['queue-init', '-q', queue]);
  const out = new Wire('packets', wireOut, join(dir, 'flight-out'), rand, { drop, dup, maxDelay });
  const back = new Wire('receipts', receipts, join(dir, 'flight-back'), rand, { drop, dup, maxDelay });

  const payloads = new Map();
  let made = 0;
  let resent = 0;
  let applies = 0;
  let rounds = 0;
  const problems = [];
  const kept = () => readdirSync(join(outbox, 'packets')).filter((n) => n.endsWith('.fspl')).length;
  const ran = () => (existsSync(applied) ? readFileSync(applied, 'utf8').split('\n').filter(Boolean) : []);

  for (rounds = 1; rounds <= maxRounds; rounds++) {
    // 1. New packets.
    for (let i = 0; i < perRound && made < count; i++) {
      made++;
      const payload = `payload-${made}-${Math.floor(rand() * 1e9)}`;
      payloads.set(made, payload);
      const r = ok(['prepare', '-s', seqfile, '-i', '-', '--outbox', outbox], { input: payload });
      writeFileSync(join(wireOut, `new-${made}.fspl`), r.stdout);
    }
    // 2. Re-send what is missing (the first round has nothing to re-send).
    if (rounds > 1) {
      const before = readdirSync(wireOut).filter((n) => !n.startsWith('.')).length;
      ok(['outbox-resend', '--outbox', outbox, '--to-dir', wireOut]);
      resent += readdirSync(wireOut).filter((n) => !n.startsWith('.')).length - before;
    }
    // 3. Packets travel.
    out.take(rounds);
    for (const p of out.due(rounds)) {
      const name = `fspl-${rounds}-${Math.floor(rand() * 1e12)}.fspl`;
      copyFileSync(p, join(queue, 'jobs', `.${name}.part`));
      renameSync(join(queue, 'jobs', `.${name}.part`), join(queue, 'jobs', name));
      rmSync(p);
    }
    // 4. The receiver.
    ok(['queue-process', '-q', queue, '--receipt-to-dir', receipts, 'sh', '--', '-c', RECORD, applied]);
    // 5. Receipts travel back.
    back.take(rounds);
    for (const p of back.due(rounds)) {
      ok(['outbox-apply', '--outbox', outbox], { input: readFileSync(p) });
      applies++;
      rmSync(p);
    }
    const lines = ran();
    if (made === count && lines.length >= count && kept() === 0) break;
    if (rounds % 10 === 0) log(`round ${rounds}: made ${made}, ran ${lines.length}, kept ${kept()}`);
  }

  // Checks.
  const lines = ran();
  const expected = [...payloads.entries()].map(([seq, p]) => `${seq} ${p}`);
  if (rounds > maxRounds) problems.push(`did not converge in ${maxRounds} rounds (ran ${lines.length} of ${count}, ${kept()} kept in the outbox)`);
  if (lines.join('\n') !== expected.join('\n')) {
    const seqs = lines.map((l) => Number(l.split(' ')[0]));
    const dupes = seqs.filter((s, i) => seqs.indexOf(s) !== i);
    const order = seqs.some((s, i) => i > 0 && s <= seqs[i - 1]);
    problems.push(`the receiver's log is not seqs 1..${count} once each in order with their payloads (${lines.length} lines; duplicates ${dupes.length}; out of order ${order})`);
  }
  const status = JSON.parse(ok(['outbox-status', '--outbox', outbox, '--json']).stdout.toString());
  if (status.unacked !== 0) problems.push(`outbox-status says ${status.unacked} unacknowledged at the end`);
  const figures = {
    seed,
    count,
    rounds: Math.min(rounds, maxRounds),
    packetsSent: out.taken,
    packetsLost: out.lost,
    packetsResent: resent,
    resentPerLost: out.lost === 0 ? 0 : resent / out.lost,
    duplicatesDelivered: out.copies - (out.taken - out.lost),
    receiptsSent: back.taken,
    receiptsLost: back.lost,
    receiptsApplied: applies,
  };
  return { ok: problems.length === 0, problems, figures, dir };
}
