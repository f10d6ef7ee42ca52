// Receipts over NNCP, both ways, with two real nodes on one machine (README, "Lossy
// transports"): packets go by `nncp-exec receiver fspool` into `queue-write`; the receiver's
// `queue-process --receipt-exec 'nncp-exec sender fspool-receipt'` sends receipts back into
// `outbox-apply`; `nncp-xfer` carries both through a shared directory (the USB stick), from
// which the test removes some packets in transit, both ways. The sender re-sends with
// `outbox-resend --exec 'nncp-exec receiver fspool'` until everything ran once, in order,
// and the outbox is empty. NNCP comes from Debian (.ci/run installs nncp).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FSPOOL, type Result, runSync, tempDir } from './helpers/cli.js';

const ENV: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME ?? '/tmp', SHELL: '/bin/sh', LC_ALL: 'C', TZ: 'UTC' };
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v "$1"`, 'sh', cmd], { stdio: 'ignore' }).status === 0;
const NNCP = ['nncp-cfgnew', 'nncp-exec', 'nncp-xfer', 'nncp-toss'].every(has);

function ok(file: string, args: string[], input?: Buffer | string): Result {
  const r = runSync(file, args, { env: ENV, input, timeoutMs: 60_000 });
  expect(r.code, `${file} ${args.join(' ')} exited ${r.code}: ${r.stderr}`).toBe(0);
  return r;
}

/** The node's public keys: its `neigh: { self: {...} }` block. */
function publicKeys(cfg: string): Record<'id' | 'exchpub' | 'signpub' | 'noisepub', string> {
  const neigh = cfg.slice(cfg.search(/^\s*neigh: \{/m));
  const get = (k: string) => neigh.match(new RegExp(`^\\s*${k}: ([A-Z0-9]+)$`, 'm'))![1]!;
  return { id: get('id'), exchpub: get('exchpub'), signpub: get('signpub'), noisepub: get('noisepub') };
}

/** The README's edits: spool and log, and the neighbour with what it may run here. */
function configure(cfg: string, spool: string, log: string, name: string, neigh: ReturnType<typeof publicKeys>, exec: string): string {
  const q = JSON.stringify;
  const block = [`    ${name}: {`, `      id: ${neigh.id}`, `      exchpub: ${neigh.exchpub}`, `      signpub: ${neigh.signpub}`, `      noisepub: ${neigh.noisepub}`, `      exec: ${exec}`, '    }'].join('\n');
  return cfg
    .replace(/^(\s*)spool: .*$/m, `$1spool: ${q(spool)}`)
    .replace(/^(\s*)log: .*$/m, `$1log: ${q(log)}`)
    .replace(/^\s*neigh: \{$/m, (m) => `${m}\n${block}`);
}

/** Every file under `dir` (nncp-xfer lays packets out as DIR/RECIPIENT/SENDER/PACKET). */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((n) => join(dir, n))
    .filter((p) => statSync(p).isFile())
    .sort();
}

describe.skipIf(!NNCP)('receipts over NNCP, both ways (skipped only when the nncp package is not installed)', () => {
  it('packets and receipts lost in transit: the outbox re-sends until every job ran once, in order', () => {
    const dir = tempDir('fspool-rnncp-');
    const queue = join(dir, 'queue');
    const outbox = join(dir, 'outbox');
    const seqfile = join(dir, 'queue.seq');
    const via = join(dir, 'via');
    const log = join(dir, 'received.log');
    ok(FSPOOL, ['queue-init', '-q', queue]);
    mkdirSync(via);
    const sGen = ok('nncp-cfgnew', []).stdout.toString();
    const rGen = ok('nncp-cfgnew', []).stdout.toString();
    const S = join(dir, 'sender.hjson');
    const R = join(dir, 'receiver.hjson');
    const q = JSON.stringify;
    writeFileSync(S, configure(sGen, join(dir, 'sender-spool'), join(dir, 'sender.log'), 'receiver', publicKeys(rGen), `{"fspool-receipt": [${q(FSPOOL)}, "outbox-apply", "--outbox", ${q(outbox)}]}`));
    writeFileSync(R, configure(rGen, join(dir, 'receiver-spool'), join(dir, 'receiver.log'), 'sender', publicKeys(sGen), `{fspool: [${q(FSPOOL)}, "queue-write", "-q", ${q(queue)}]}`));
    for (const d of ['sender-spool', 'receiver-spool']) mkdirSync(join(dir, d));

    const sh = (script: string) => ok('/bin/sh', ['-c', script, 'sh', FSPOOL, S, R, queue, outbox, seqfile, via, log]);
    // The README's commands; $1 fspool, $2 sender config, $3 receiver config, $4 queue,
    // $5 outbox, $6 seqfile, $7 via, $8 the receiver's log.
    const send = (payload: string) => sh(`printf '%s' '${payload}' | "$1" prepare -s "$6" -i - --outbox "$5" | nncp-exec -cfg "$2" -quiet receiver fspool`);
    const senderTx = () => sh('nncp-xfer -cfg "$2" -quiet -mkdir -tx "$7"');
    const receiverSide = () =>
      sh(`nncp-xfer -cfg "$3" -quiet -rx "$7" && nncp-toss -cfg "$3" -quiet &&
          "$1" -l warn queue-process -q "$4" --receipt-exec 'nncp-exec -cfg ${q(R)} -quiet sender fspool-receipt' sh -- -c 'printf "%s %s\\n" "$FSPL_SEQ" "$(cat)" >> "$0"' "$8" &&
          nncp-xfer -cfg "$3" -quiet -mkdir -tx "$7"`);
    const senderRx = () => sh('nncp-xfer -cfg "$2" -quiet -rx "$7" && nncp-toss -cfg "$2" -quiet');
    const resend = () => sh(`"$1" -l warn outbox-resend --outbox "$5" --exec 'nncp-exec -cfg ${q(S)} -quiet receiver fspool'`);
    const status = () => JSON.parse(ok(FSPOOL, ['outbox-status', '--outbox', outbox, '--json']).stdout.toString());
    const ran = () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : []);

    const payloads = ['one', 'two', 'three', 'four', 'five', 'six'];
    for (const p of payloads) send(p);
    expect(status().unacked).toBe(6);

    // Round 1: two of the six packets vanish from the stick in transit; the receiver runs what
    // it can and waits at the first gap.
    senderTx();
    const out1 = filesUnder(via);
    expect(out1).toHaveLength(6);
    for (const i of [1, 4]) rmSync(out1[i]!);
    receiverSide();
    expect(ran().length).toBeLessThan(6);
    // Its receipt is lost too.
    const back1 = filesUnder(via);
    expect(back1).toHaveLength(1);
    rmSync(back1[0]!);
    senderRx();
    expect(status().last_receipt).toBeNull();

    // Then the loop, with nothing lost, until done; each step as the README's cron lines do it.
    let rounds = 1;
    while (status().unacked > 0 || ran().length < payloads.length) {
      expect(rounds++, `not converged: ran ${ran().length}, unacked ${status().unacked}`).toBeLessThan(8);
      resend();
      senderTx();
      receiverSide();
      senderRx();
    }
    expect(ran()).toEqual(payloads.map((p, i) => `${i + 1} ${p}`));
    expect(status()).toMatchObject({ unacked: 0, missing: 0, held: 0 });
    expect(status().last_receipt.next_seq).toBe(7);
  });
});
