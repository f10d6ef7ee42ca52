// Where deployments break: a processor that may not write the queue, a read-only monitoring
// user, cron's bare environment and its busy locks, status that must not call a stuck queue
// healthy, queue-write given something that is not a packet, quarantine's way out, and keys
// left in the wrong shape. Real users (setpriv to nobody), real files, real processes.
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { asNobody, FSPOOL, fspool, makeQueue, NOBODY, openDir, preparePacket, runAsync, runSync, tempDir } from './helpers/cli.js';
import { asOwner, foreignOwner } from '../src/queue/owner.js';
import { native } from '../src/sys/native.js';
import { makeKey } from './helpers/keys.js';
import { exists, jobFiles, nextseq, put, waitFor } from './helpers/queue.js';

/** A group root is put in for a test, which no user of the machine has. */
const GROUP = 4242;

const packet = (seq: number, payload: string, params: string[] = []) => {
  const d = tempDir();
  writeFileSync(join(d, 'seq'), `${seq}\n`);
  return preparePacket(['-s', join(d, 'seq'), '-i', '-', '--', ...params], payload);
};

describe('a processor that cannot record what it does runs nothing', () => {
  it('nobody on a root-owned queue: refused up front, naming owner and mode; run once by the owner', () => {
    const dir = openDir();
    const q = makeQueue(dir);
    put(q, packet(1, 'backup'));
    const out = join(dir, 'out');
    writeFileSync(out, '');
    chmodSync(out, 0o666);
    const r = asNobody(['queue-process', '-q', q, 'sh', '--', '-c', `cat >> ${out}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: cannot process queue .*: .* \(owned by uid 0, mode 0755\) is not writable by uid 65534, so nextseq could not advance after a job; .*run as the queue's owner or make it writable; nothing was run$/m);
    expect(readFileSync(out, 'utf8')).toBe('');
    expect(nextseq(q)).toBe('1');
    // The owner runs it, once.
    expect(fspool(['queue-process', '-q', q, 'sh', '--', '-c', `cat >> ${out}`]).code).toBe(0);
    expect(asNobody(['queue-process', '-q', q, 'sh', '--', '-c', `cat >> ${out}`]).code).toBe(1);
    expect(readFileSync(out, 'utf8')).toBe('backup');
  });

  it('a queue nobody owns is processed by nobody', () => {
    const dir = openDir();
    const q = makeQueue(dir);
    put(q, packet(1, 'mine'));
    runSync('chown', ['-R', `${NOBODY}:${NOBODY}`, q]);
    const r = asNobody(['queue-process', '-q', q, 'cat']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toBe('mine');
  });
});

describe('root in a queue another user owns', () => {
  it("what root's run quarantines the owner's runs can quarantine beside it; a quarantine the owner cannot write stops them before a job runs", () => {
    const dir = openDir();
    const q = makeQueue(dir);
    for (let i = 1; i <= 3; i++) put(q, packet(i, `job ${i}`));
    runSync('chown', ['-R', `${NOBODY}:${NOBODY}`, q]);
    const quarantine = join(q, 'fspool/quarantine');
    // root's run makes QUEUE/fspool/quarantine/: the queue's owner gets it, and the note.
    expect(fspool(['queue-process', '-q', q, '-n', '1', '--on-error', 'quarantine', 'false']).code).toBe(0);
    const [first] = readdirSync(quarantine).filter((n) => n.endsWith('.fspl'));
    for (const p of [quarantine, join(quarantine, `${first}.json`)]) expect(statSync(p).uid, p).toBe(NOBODY);
    // The owner's run quarantines the next one beside it.
    const r = asNobody(['queue-process', '-q', q, '-n', '1', '--on-error', 'quarantine', 'false']);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(quarantine).filter((n) => n.endsWith('.fspl'))).toHaveLength(2);
    expect(nextseq(q)).toBe('3');
    // A quarantine the owner cannot write (root made it so): refused before the job runs.
    runSync('chown', ['0:0', quarantine]);
    const out = join(dir, 'ran');
    const refused = asNobody(['queue-process', '-q', q, '--on-error', 'quarantine', 'sh', '--', '-c', `touch ${out}; exit 1`]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^Error: cannot process queue .*: .*quarantine \(owned by uid 0, mode 0755\) is not writable by uid 65534, so failed jobs could not be quarantined; run as the queue's owner or make it writable; nothing was run$/m);
    expect(existsSync(out)).toBe(false);
    expect(nextseq(q)).toBe('3');
  });
});

describe('root in a queue another user owns: what the owner puts in QUEUE/fspool/ gets no more than the owner has', () => {
  /** A root-owned directory with a file in it, which the queue's owner must not get. */
  function victim(dir: string): string {
    const v = join(dir, 'victim');
    mkdirSync(v);
    writeFileSync(join(v, 'file'), 'root only\n');
    return v;
  }
  const untouched = (v: string) => {
    expect(statSync(v).uid, `${v} given away`).toBe(0);
    expect(readdirSync(v)).toEqual(['file']);
    expect(statSync(join(v, 'file')).uid).toBe(0);
  };
  /** A command run by the queue's owner (nobody). */
  const byOwner = (...argv: string[]) => runSync('setpriv', ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups', ...argv]);
  /** A queue nobody owns, holding `first`, beside a directory of root's. */
  function foreignQueue(first = packet(1, 'one')) {
    const dir = openDir();
    const v = victim(dir);
    const q = makeQueue(dir);
    put(q, first);
    runSync('chown', ['-R', `${NOBODY}:${NOBODY}`, q]);
    return { dir, v, q };
  }

  it('asOwner: root works with the owner\'s file-system identity, and only inside the call', () => {
    const dir = openDir();
    const q = makeQueue(dir);
    runSync('chown', ['-R', `${NOBODY}:${NOBODY}`, q]);
    const owner = foreignOwner(q);
    expect(owner).toEqual({ uid: NOBODY, gid: NOBODY });
    expect(foreignOwner(dir), 'a queue of root\'s own').toBe(undefined);
    const rootOnly = join(dir, 'root-only');
    mkdirSync(rootOnly, { mode: 0o755 });
    expect(() => asOwner(owner, () => writeFileSync(join(rootOnly, 'x'), ''))).toThrow(/EACCES/);
    asOwner(owner, () => asOwner(owner, () => writeFileSync(join(q, 'made'), '')));
    expect(statSync(join(q, 'made')).uid).toBe(NOBODY);
    writeFileSync(join(rootOnly, 'x'), '');
    expect(statSync(join(rootOnly, 'x')).uid).toBe(0);
    expect(() => asOwner(owner, () => Promise.resolve())).toThrow(/promise/);
    writeFileSync(join(rootOnly, 'y'), '');
    // Root's supplementary groups are put aside inside the call, and given back after it.
    const ours = process.getgroups!();
    process.setgroups!([GROUP]);
    try {
      expect(asOwner(owner, () => native().groups())).toEqual([]);
      expect(native().groups()).toEqual([GROUP]);
    } finally {
      process.setgroups!(ours.filter((g) => g !== process.getegid!()));
    }
  });

  it("root run from where the owner cannot read (a clone in a directory of root's own) keeps its journal in the owner's queue", () => {
    const { q } = foreignQueue();
    // The checkout, seen at a path inside a directory only root may enter.
    const at = join(tempDir(), 'fspool');
    mkdirSync(at);
    const script = 'root=$0 at=$1; shift; mount --bind "$root" "$at" && exec "$at/bin/fspool" "$@"';
    const r = runSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, dirname(dirname(FSPOOL)), at, 'queue-process', '-q', q, 'cat']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/WARN/);
    expect(r.stdout.toString()).toBe('one');
    expect(fspool(['queue-history', '-q', q]).stdout.toString()).toMatch(/ success /);
    expect(statSync(join(q, 'fspool/state.db')).uid).toBe(NOBODY);
  });

  it('a symlink in place of QUEUE/fspool: root follows it nowhere (no chown, nothing made there); every command goes on without the state database', () => {
    const { v, q } = foreignQueue();
    byOwner('ln', '-s', v, join(q, 'fspool'));
    for (const args of [['queue-status', '-q', q], ['queue-ls', '-q', q], ['queue-history', '-q', q]]) {
      const r = fspool(args);
      expect(r.stderr, args[0]).toMatch(/WARN fspool: state database .*fspool\/state\.db cannot be used: .*\/fspool is a symlink, which fspool does not follow there: replace the symlink with what it points to, or remove it; going on without it/);
      untouched(v);
    }
    const r = fspool(['queue-process', '-q', q, 'cat']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toBe('one');
    untouched(v);
  });

  it("a symlink at QUEUE/fspool/state.db: root makes no database where it leads, nor changes a file there; the database root makes itself is the owner's", () => {
    const { v, q } = foreignQueue();
    byOwner('mkdir', join(q, 'fspool'));
    byOwner('ln', '-s', join(v, 'file'), join(q, 'fspool/state.db'));
    const r = fspool(['queue-process', '-q', q, 'cat']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/WARN fspool: state database .* cannot be used: .*\/fspool\/state\.db is a symlink, which fspool does not follow there/);
    expect(readFileSync(join(v, 'file'), 'utf8')).toBe('root only\n');
    untouched(v);
    // Without the symlink, root's run makes the database, and it is the owner's.
    runSync('rm', [join(q, 'fspool/state.db')]);
    put(q, packet(2, 'two'));
    expect(fspool(['queue-process', '-q', q, 'cat']).code).toBe(0);
    for (const f of ['fspool', 'fspool/state.db']) expect(statSync(join(q, f)).uid, f).toBe(NOBODY);
    expect(fspool(['queue-history', '-q', q]).stdout.toString()).toMatch(/success/);
  });

  it('a symlink in place of QUEUE/fspool/quarantine: refused before any job runs, and root puts nothing where it leads', () => {
    const { dir, v, q } = foreignQueue();
    byOwner('mkdir', join(q, 'fspool'));
    byOwner('ln', '-s', v, join(q, 'fspool/quarantine'));
    const ran = join(dir, 'ran');
    const r = fspool(['queue-process', '-q', q, '--on-error', 'quarantine', 'sh', '--', '-c', `touch ${ran}; exit 1`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: cannot process queue .*: .*\/fspool\/quarantine is a symlink, which fspool does not follow there, so failed jobs could not be quarantined; replace the symlink with what it points to, or remove it; nothing was run$/m);
    expect(exists(ran)).toBe(false);
    untouched(v);
    // Made a symlink while the job runs (past that check): the move fails as the owner's would,
    // root's rights go nowhere, and the packet is not lost.
    runSync('rm', [join(q, 'fspool/quarantine')]);
    const swap = `ln -s ${v} ${join(q, 'fspool/quarantine')}`;
    const late = fspool(['queue-process', '-q', q, '--on-error', 'quarantine', 'sh', '--', '-c', `setpriv --reuid ${NOBODY} --regid ${NOBODY} --clear-groups ${swap}; exit 1`]);
    expect(late.code).toBe(1);
    expect(late.stderr).toMatch(/job 1 .* ran, but recording that failed: .*quarantine.*: permission denied \(EACCES\)/);
    untouched(v);
    expect(jobFiles(q)).toHaveLength(1);
  });

  it("root killed mid-job leaves nextseq.temp the owner's: fspl run as the owner replaces it and moves on, as it does its own", () => {
    const { dir, q } = foreignQueue();
    const log = join(dir, 'ran');
    writeFileSync(log, '');
    chmodSync(log, 0o666);
    const receiver = ['sh', '--', '-c', `cat >/dev/null; echo "ran $FSPL_SEQ" >> ${log}`];
    const crashed = fspool(['queue-process', '-q', q, ...receiver], { env: { ...process.env, FSPOOL_CRASH_AT: 'receiver-exited' } });
    expect(crashed.signal).toBe('SIGKILL');
    expect(statSync(join(q, 'nextseq.temp')).uid).toBe(NOBODY);
    const owners = byOwner('fspl', 'queue-process', '-q', q, ...receiver);
    expect(owners.code, owners.stderr).toBe(0);
    expect(readFileSync(join(q, 'nextseq'), 'utf8')).toBe('2\n');
    // Run by root, then (the journal not having its outcome) again by fspl, which reads none.
    expect(readFileSync(log, 'utf8')).toBe('ran 1\nran 1\n');
    expect(byOwner('fspl', 'queue-process', '-q', q, ...receiver).code).toBe(0);
    expect(readFileSync(log, 'utf8')).toBe('ran 1\nran 1\n');
  });

  it('a symlink in place of QUEUE/jobs: root runs, deletes and writes nothing where it leads; every command says so', () => {
    const { dir, v, q } = foreignQueue();
    // A packet of root's, where the owner may not go, that the owner would have root run and delete.
    writeFileSync(join(v, 'fspl-roots-own.fspl'), packet(1, 'root only'));
    chmodSync(v, 0o700);
    byOwner('rm', '-r', join(q, 'jobs'));
    byOwner('ln', '-s', v, join(q, 'jobs'));
    const ran = join(dir, 'ran');
    for (const args of [['queue-process', '-q', q, '--output-to', 'saveboth', 'sh', '--', '-c', `cat > ${ran}`], ['queue-ls', '-q', q], ['queue-status', '-q', q]]) {
      const r = fspool(args);
      expect(r.code, args[0]).not.toBe(0);
      expect(r.stderr, args[0]).toMatch(/^Error: .*\/jobs is a symlink, which root does not follow in a queue another user owns; replace the symlink with what it points to, or remove it$/m);
    }
    expect(exists(ran)).toBe(false);
    expect(readdirSync(v).sort()).toEqual(['file', 'fspl-roots-own.fspl']);
    expect(nextseq(q)).toBe('1');
  });

  it('a jobs/ swapped for a symlink while the job is decoded: root writes no saveboth .out and removes nothing where it leads', async () => {
    const { dir, v, q } = foreignQueue();
    chmodSync(v, 0o700);
    writeFileSync(join(v, 'fspl-x.fspl.out'), 'root only\n');
    // A decoder that holds the delivery (its second call: the first reads the header) until told.
    const dec = join(dir, 'dec.sh');
    writeFileSync(dec, `#!/bin/sh\nif [ -e ${dir}/called ]; then touch ${dir}/holding; while [ ! -e ${dir}/go ]; do sleep 0.05; done; fi\ntouch ${dir}/called\nexec cat\n`, { mode: 0o755 });
    const [name] = jobFiles(q);
    const run = runAsync(FSPOOL, ['queue-process', '-q', q, '--output-to', 'saveboth', '-d', dec, 'cat']);
    await waitFor('the delivery decoder', () => exists(join(dir, 'holding')));
    byOwner('mv', join(q, 'jobs'), join(q, 'jobs.real'));
    byOwner('ln', '-s', v, join(q, 'jobs'));
    runSync('cp', [join(q, 'jobs.real', name!), join(v, 'fspl-x.fspl')]);
    runSync('cp', [join(q, 'jobs.real', name!), join(v, name!)]);
    writeFileSync(join(dir, 'go'), '');
    await run.done;
    expect(readdirSync(v).sort()).toEqual(['file', 'fspl-x.fspl', 'fspl-x.fspl.out', name!].sort());
    expect(readFileSync(join(v, 'fspl-x.fspl.out'), 'utf8')).toBe('root only\n');
    for (const f of readdirSync(v)) expect(statSync(join(v, f)).uid, f).toBe(0);
  });

  it('a symlink at QUEUE/fspool/tmp (where --delivery verified decodes): root makes nothing where it leads; the job is not run, and stays', () => {
    const zstdPacket = preparePacket(['-s', '-', '-i', '-', '--zstd'], 'secret payload');
    const { dir, v, q } = foreignQueue(zstdPacket);
    byOwner('mkdir', join(q, 'fspool'));
    byOwner('ln', '-s', v, join(q, 'fspool/tmp'));
    const out = join(dir, 'out');
    const r = fspool(['queue-process', '-q', q, '--delivery', 'verified', '--on-error', 'delete', 'sh', '--', '-c', `cat > ${out}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: job 1 \(.*\): cannot decode into .*\/fspool\/tmp: .*\/fspool\/tmp is a symlink, which fspool does not follow there; replace the symlink with what it points to, or remove it; the command was not started$/m);
    expect(exists(out)).toBe(false);
    untouched(v);
    expect(jobFiles(q)).toHaveLength(1);
    // Without the symlink, root's run makes the folder as the owner's, and decodes there.
    runSync('rm', [join(q, 'fspool/tmp')]);
    const again = fspool(['queue-process', '-q', q, '--delivery', 'verified', 'sh', '--', '-c', `cat > ${out}`]);
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe('secret payload');
    expect(statSync(join(q, 'fspool/tmp')).uid).toBe(NOBODY);
    expect(readdirSync(join(q, 'fspool/tmp'))).toEqual([]);
  });

  it("a QUEUE/fspool/tmp the processor may not write: not started, the job stays (not deleted by --on-error delete)", () => {
    const { q } = foreignQueue(preparePacket(['-s', '-', '-i', '-', '--zstd'], 'payload'));
    mkdirSync(join(q, 'fspool/tmp'), { recursive: true });
    runSync('chown', [`${NOBODY}:${NOBODY}`, join(q, 'fspool')]);
    const r = asNobody(['queue-process', '-q', q, '--delivery', 'verified', '--on-error', 'delete', 'cat']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: job 1 \(.*\): cannot decode into .*\/fspool\/tmp: .*permission denied \(EACCES\); the command was not started$/m);
    expect(jobFiles(q)).toHaveLength(1);
    expect(nextseq(q)).toBe('1');
  });

  it("root's supplementary groups open nothing to the owner: a quarantine made a symlink into a directory only such a group may write gets nothing", () => {
    const { dir, q } = foreignQueue();
    // Where root is in more groups than its own (disk, adm, wheel on some systems), a directory
    // of such a group's, which the owner may neither enter nor write.
    const grouped = join(dir, 'grouped');
    mkdirSync(grouped);
    runSync('chown', [`0:${GROUP}`, grouped]);
    chmodSync(grouped, 0o770);
    byOwner('mkdir', join(q, 'fspool'));
    const swap = `ln -s ${grouped} ${join(q, 'fspool/quarantine')}`;
    const job = ['--on-error', 'quarantine', 'sh', '--', '-c', `setpriv --reuid ${NOBODY} --regid ${NOBODY} --clear-groups ${swap}; exit 1`];
    const r = runSync('setpriv', ['--groups', String(GROUP), FSPOOL, 'queue-process', '-q', q, ...job]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/job 1 .* ran, but recording that failed: .*quarantine.*: permission denied \(EACCES\)/);
    expect(readdirSync(grouped)).toEqual([]);
    expect(jobFiles(q)).toHaveLength(1);
  });

  it("what root quarantines in such a queue is the owner's, even a packet the owner may not link (someone else's): copied, not linked", () => {
    const { q } = foreignQueue();
    // The packet of another transport user, which the owner may read but not link.
    const [name] = jobFiles(q);
    const bytes = readFileSync(join(q, 'jobs', name!));
    runSync('chown', ['1:1', join(q, 'jobs', name!)]);
    expect(fspool(['queue-process', '-q', q, '--on-error', 'quarantine', 'false']).code).toBe(0);
    const quarantine = join(q, 'fspool/quarantine');
    for (const f of [quarantine, join(quarantine, `${name}.json`)]) expect(statSync(f).uid, f).toBe(NOBODY);
    // Where the kernel lets anyone link anything, it is linked, and stays the other user's.
    const linksProtected = readFileSync('/proc/sys/fs/protected_hardlinks', 'utf8').trim() !== '0';
    expect(statSync(join(quarantine, name!)).uid).toBe(linksProtected ? NOBODY : 1);
    expect(readFileSync(join(quarantine, name!)).equals(bytes)).toBe(true);
    expect(jobFiles(q)).toEqual([]);
  });

  it('a FIFO or a symlink at QUEUE/fspool/receipts.json hangs nothing and takes nothing of root\'s', () => {
    // Packets of a stream (an outbox's), so that there are receipts to send and to remember.
    const sender = tempDir();
    const streamed = (n: number, payload: string) => {
      writeFileSync(join(sender, 'seq'), `${n}\n`);
      return preparePacket(['-s', join(sender, 'seq'), '-i', '-', '--outbox', join(sender, 'outbox')], payload);
    };
    const { dir, v, q } = foreignQueue(streamed(1, 'one'));
    byOwner('mkdir', join(q, 'fspool'));
    byOwner('mkfifo', join(q, 'fspool/receipts.json'));
    const receipts = join(dir, 'receipts');
    mkdirSync(receipts);
    const r = fspool(['queue-process', '-q', q, '--receipt-to-dir', receipts, 'cat'], { timeoutMs: 30_000 });
    expect(r.signal, 'hung').toBe(null);
    expect(r.code, r.stderr).toBe(0);
    expect(readdirSync(receipts), 'a receipt of the stream').toHaveLength(1);
    runSync('rm', [join(q, 'fspool/receipts.json')]);
    byOwner('ln', '-s', join(v, 'receipts.json'), join(q, 'fspool/receipts.json'));
    put(q, streamed(2, 'two'));
    expect(fspool(['queue-process', '-q', q, '--receipt-to-dir', receipts, 'cat']).code).toBe(0);
    untouched(v);
  });
});

describe('a read-only monitoring user', () => {
  it('queue-status and queue-history read the journal of a queue they may not write', () => {
    const dir = openDir();
    const q = makeQueue(dir);
    put(q, packet(1, 'one'));
    put(q, packet(2, 'two'));
    expect(fspool(['queue-process', '-q', q, '-n', '1', 'cat']).code).toBe(0);
    const s = asNobody(['queue-status', '-q', q, '--json']);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stderr).toBe('');
    const status = JSON.parse(s.stdout.toString());
    expect(status.journal).toBe(true);
    expect(status.last_success.seq).toBe(1);
    const h = asNobody(['queue-history', '-q', q, '--json']);
    expect(h.code, h.stderr).toBe(0);
    expect(h.stderr).toBe('');
    expect(JSON.parse(h.stdout.toString()).runs.map((x: { seq: number }) => x.seq)).toEqual([1]);
    const ls = asNobody(['queue-ls', '-q', q]);
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stderr).toBe('');
  });
});

describe('a monitoring user kept out', () => {
  it('of the queue directory itself: told it may not enter it, not that there is no queue to make (queue-init would fail)', () => {
    const dir = openDir();
    const q = makeQueue(dir);
    chmodSync(q, 0o700);
    const shut = new RegExp(`^Error: cannot look into queue .*: ${q} \\(owned by uid 0, mode 0700\\) may not be entered by uid 65534; run as the queue's owner, or let uid 65534 in$`, 'm');
    for (const args of [['queue-status', '-q', q], ['queue-ls', '-q', q], ['queue-process', '-q', q, 'cat'], ['queue-write', '-q', q]]) {
      const r = asNobody(args, packet(1, 'one'));
      expect(r.code, args[0]).toBe(1);
      expect(r.stderr, args[0]).toMatch(shut);
    }
  });

  it('is told what keeps it out and how to let it in: a journal, a quarantine or job files it may not read', () => {
    const dir = openDir();
    const q = makeQueue(dir);
    put(q, packet(1, 'one'));
    expect(fspool(['queue-process', '-q', q, '--on-error', 'quarantine', 'false']).code).toBe(0);
    put(q, packet(3, 'three'));
    chmodSync(join(q, 'jobs', jobFiles(q)[0]!), 0o600);
    chmodSync(join(q, 'fspool'), 0o700);
    const h = asNobody(['queue-history', '-q', q]);
    expect(h.code, h.stderr).toBe(0);
    expect(h.stderr).toMatch(/^ WARN fspool: cannot read the journal of queue .*: .*fspool: .*permission denied \(EACCES\); run as the queue's owner, or give read access to .*fspool$/m);
    const s = asNobody(['queue-status', '-q', q]);
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/^Error: cannot read the quarantine of queue .* \(.*permission denied \(EACCES\)\); run as the queue's owner, or give read access to .*fspool and its quarantine\/$/m);
    chmodSync(join(q, 'fspool'), 0o755);
    const j = asNobody(['queue-status', '-q', q, '--json']);
    const reasons = (JSON.parse(j.stdout.toString()) as { reasons: string[] }).reasons.join('\n');
    expect(reasons).toMatch(/1 job file\(s\) cannot be read: .*permission denied.*; give the reader access to them \(or run as their owner\), or remove them/);
    expect(reasons).not.toMatch(/decoder/);
  });
});

describe('a sender or a reader without the rights it needs', () => {
  it('is told in one line which file or directory, whose it is, and what to do: queue-write, queue-set-next, prepare, queue-ls', () => {
    const dir = openDir();
    const q = makeQueue(dir);
    const pkt = packet(1, 'one');
    const w = asNobody(['queue-write', '-q', q], pkt);
    expect(w.code).toBe(1);
    expect(w.stderr).toBe(`Error: cannot queue a packet: ${q}/jobs (owned by uid 0, mode 0755) is not writable by uid ${NOBODY}; write as the queue's owner, or make jobs/ writable for this user; nothing was queued\n`);
    const n = asNobody(['queue-set-next', '-q', q, '5']);
    expect(n.code).toBe(1);
    expect(n.stderr).toBe(`Error: queue ${q}: cannot open lock file ${q}/nextseq.lock: permission denied (EACCES) (${q}/nextseq.lock: owned by uid 0, mode 0644); run as its owner, or let uid ${NOBODY} open it\n`);
    const p = asNobody(['prepare', '-s', join(dir, 'seq'), '-i', '/dev/null']);
    expect(p.code).toBe(1);
    expect(p.stderr).toBe(`Error: sequence file ${join(dir, 'seq')}: cannot create lock file ${join(dir, 'seq')}.lock: permission denied (EACCES) (${dir}: owned by uid 0, mode 0755); run as its owner, or let uid ${NOBODY} write it\n`);
    chmodSync(join(q, 'jobs'), 0o700);
    const l = asNobody(['queue-ls', '-q', q]);
    expect(l.code).toBe(1);
    expect(l.stderr).toBe(`Error: cannot read ${q}/jobs: permission denied (EACCES) (owned by uid 0, mode 0700); run as the queue's owner, or let uid ${NOBODY} read it\n`);
    expect(nextseq(q)).toBe('1');
    expect(existsSync(join(dir, 'seq'))).toBe(false);
  });
});

describe('queue-status tells the truth', () => {
  const status = (q: string) => {
    const r = fspool(['queue-status', '-q', q, '--json']);
    return { code: r.code, s: JSON.parse(r.stdout.toString()) as { state: string; reasons: string[] } };
  };

  it("failing, for a user who cannot read the due job file, though root's look filled the header cache with it; the processor says how to fix it; root's look says that user cannot read it", () => {
    const dir = openDir();
    const q = makeQueue(dir);
    const name = put(q, packet(1, 'secret'));
    runSync('chown', ['-R', `${NOBODY}:${NOBODY}`, q]);
    runSync('chown', ['0:0', join(q, 'jobs', name)]);
    chmodSync(join(q, 'jobs', name), 0o600);
    // Root reads it; which user processes the queue is not known yet (nextseq is the queue
    // owner's, as a root processor leaves it too).
    expect(status(q).code, 'root reads it').toBe(0);
    const r = asNobody(['queue-status', '-q', q]);
    expect(r.code, r.stdout.toString()).toBe(4);
    expect(r.stdout.toString()).toMatch(/state: +failing - 1 job file\(s\) cannot be read: .*permission denied \(EACCES\)\); give the reader access to them \(or run as their owner\), or remove them/);
    const p = asNobody(['queue-process', '-q', q, 'cat']);
    expect(p.code).toBe(1);
    expect(p.stderr).toMatch(/give the reader access to them \(or run as their owner\), or remove them/);
    expect(p.stdout.toString()).toBe('');
    // Now root's look knows who processes the queue, and that it stops there.
    const root = status(q);
    expect(root.code).toBe(4);
    expect(root.s.reasons).toEqual([`job 1 (${name}, owned by uid 0, mode 0600) cannot be read by uid ${NOBODY}, the queue's processor: the queue stops at it; let that user read it, and have whatever writes the queue make files that user may read`]);
  });

  it('failing when the sender lost its seqfile: packets below nextseq that never ran', () => {
    const q = makeQueue(tempDir());
    for (let i = 1; i <= 3; i++) put(q, packet(i, `old ${i}`));
    expect(fspool(['queue-process', '-q', q, 'cat']).code).toBe(0);
    // The sender starts again at 1: new backups with old numbers.
    const lost = put(q, packet(1, 'new backup'));
    const { code, s } = status(q);
    expect(code).toBe(4);
    expect(s.state).toBe('failing');
    expect(s.reasons.join('\n')).toMatch(new RegExp(`1 packet\\(s\\) below next seq 4 never ran here: ${lost} \\(seq 1\\); if their sender restarted its numbering, queue-set-next 1 runs them`));
    // queue-clean --stale keeps it, and says so; --force removes it.
    const c = fspool(['queue-clean', '-q', q, '--stale']);
    expect(c.code).toBe(0);
    expect(c.stderr).toMatch(/kept .* its packet never ran here/);
    expect(jobFiles(q)).toEqual([lost]);
  });

  it('failing when every packet is encrypted to a key fspool does not hold (and queue-process exits 1)', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    const other = makeKey('other', dir);
    writeFileSync(join(dir, 'seq'), '1\n');
    const enc = fspool(['prepare', '-s', join(dir, 'seq'), '-i', '-', '--encrypt-to', other.pub], { input: 'secret' });
    const name = put(q, enc.stdout);
    const { code, s } = status(q);
    expect(code).toBe(4);
    expect(s.reasons.join('\n')).toMatch(new RegExp(`1 job file\\(s\\) cannot be read: ${name} \\(.*\\); give the key or decoder they need`));
    const p = fspool(['queue-process', '-q', q, 'cat'], { env: { ...process.env, FSPOOL_KEYS: join(dir, 'nokeys') } });
    expect(p.code).toBe(1);
    expect(p.stderr).toMatch(/seq 1 not found, and 1 job file\(s\) that cannot be read could hold it/);
  });

  it('failing when a truncated zstd packet sits at the head of the queue', () => {
    const q = makeQueue(tempDir());
    const z = runSync('zstd', ['-q', '-c'], { input: packet(1, 'x'.repeat(100_000)) }).stdout;
    put(q, z.subarray(0, 20));
    const { code, s } = status(q);
    expect(code).toBe(4);
    expect(s.reasons.join('\n')).toMatch(/cannot be read/);
  });

  it('failing while a job is in quarantine, healthy again once it is dropped', () => {
    const q = makeQueue(tempDir());
    put(q, packet(1, 'bad'));
    expect(fspool(['queue-process', '-q', q, '--on-error', 'quarantine', 'sh', '--', '-c', 'cat >/dev/null; exit 5']).code).toBe(0);
    expect(status(q).code).toBe(4);
    const list = JSON.parse(fspool(['queue-quarantine', '-q', q, '--json']).stdout.toString());
    expect(list.jobs).toHaveLength(1);
    expect(list.jobs[0].note.last_outcome).toBe('exit-code');
    expect(fspool(['queue-quarantine', '-q', q, '--drop', list.jobs[0].file]).code).toBe(0);
    expect(status(q).code).toBe(0);
    const h = JSON.parse(fspool(['queue-history', '-q', q, '--json']).stdout.toString());
    expect(h.runs[0].outcome).toBe('dropped');
  });
});

describe('queue-quarantine --release', () => {
  it('puts the job back; the next run runs it once more, out of turn, and nextseq stays', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    for (const [i, p] of ['one', 'two', 'three'].entries()) put(q, packet(i + 1, p));
    const out = join(dir, 'out');
    const fixed = join(dir, 'fixed');
    const recv = `x=$(cat); if [ "$x" = two ] && [ ! -e ${fixed} ]; then exit 4; fi; echo "$FSPL_SEQ $x" >> ${out}`;
    expect(fspool(['queue-process', '-q', q, '--on-error', 'quarantine', 'sh', '--', '-c', recv]).code).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe('1 one\n3 three\n');
    const name = JSON.parse(fspool(['queue-quarantine', '-q', q, '--json']).stdout.toString()).jobs[0].file;
    writeFileSync(fixed, '');
    const rel = fspool(['queue-quarantine', '-q', q, '--release', name]);
    expect(rel.code, rel.stderr).toBe(0);
    expect(jobFiles(q)).toEqual([name]);
    const r = fspool(['queue-process', '-q', q, 'sh', '--', '-c', recv]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/released from quarantine: running it once more, out of turn/);
    expect(readFileSync(out, 'utf8')).toBe('1 one\n3 three\n2 two\n');
    expect(nextseq(q)).toBe('4');
    expect(jobFiles(q)).toEqual([]);
    // Once is once: it does not run again.
    expect(fspool(['queue-process', '-q', q, 'sh', '--', '-c', recv]).code).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe('1 one\n3 three\n2 two\n');
  });

  it('refuses a name that is not in quarantine, with the way to list them', () => {
    const q = makeQueue(tempDir());
    const r = fspool(['queue-quarantine', '-q', q, '--release', 'fspl-nope.fspl']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/is not in quarantine .*; list it with queue-quarantine -q/);
  });
});

describe('queue-write checks what it is given', () => {
  it('refuses what is not a packet (prepare forgotten), writes nothing; --raw writes it', () => {
    const dir = tempDir();
    const q = makeQueue(dir);
    writeFileSync(join(dir, 'f'), 'data');
    const tar = runSync('tar', ['cf', '-', '-C', dir, 'f']).stdout;
    const r = fspool(['queue-write', '-q', q], { input: tar });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^Error: not a filespooler packet .*did you forget fspool prepare\?; nothing was queued \(--raw queues it anyway\)$/m);
    expect(runSync('ls', ['-A', join(q, 'jobs')]).stdout.toString()).toBe('');
    expect(fspool(['queue-write', '-q', q, '--raw'], { input: tar }).code).toBe(0);
    expect(jobFiles(q)).toHaveLength(1);
  });

  it('takes a gzipped packet as fspl\'s manual writes one, and with its decoder; a zstd or xz one as it is; a damaged header never', () => {
    const q = makeQueue(tempDir());
    const p = packet(1, 'hello');
    const gz = runSync('gzip', ['-c'], { input: p }).stdout;
    // `fspl prepare ... | gzip | fspl queue-write -q Q`, then `queue-ls -d zcat`: gzip's start is
    // undone to see that a packet is inside.
    expect(fspool(['queue-write', '-q', q], { input: gz }).code).toBe(0);
    expect(fspool(['queue-write', '-q', q, '-d', 'gzip -dc'], { input: gz }).code).toBe(0);
    expect(fspool(['queue-write', '-q', q], { input: runSync('zstd', ['-q', '-c'], { input: p }).stdout }).code).toBe(0);
    expect(fspool(['queue-write', '-q', q], { input: runSync('xz', ['-c'], { input: p }).stdout }).code).toBe(0);
    expect(jobFiles(q)).toHaveLength(4);
    // gzip around what is no packet (a tar.gz, prepare forgotten), or too short to hold one: refused.
    writeFileSync(join(q, '..', 'f'), 'data');
    const tgz = runSync('tar', ['czf', '-', '-C', join(q, '..'), 'f']).stdout;
    // (A PNG's first byte, 0x89, would pass for an OpenPGP packet's: not one a packet starts with.)
    const png = Buffer.concat([Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'), Buffer.alloc(64)]);
    for (const input of [tgz, runSync('gzip', ['-c'], { input: png }).stdout]) {
      const r = fspool(['queue-write', '-q', q], { input });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^Error: not a filespooler packet: gzip data that holds something else; did you forget fspool prepare\?; nothing was queued/m);
    }
    for (const input of [runSync('gzip', ['-c'], { input: 'hi\n' }).stdout, gz.subarray(0, 20)]) {
      const r = fspool(['queue-write', '-q', q], { input });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^Error: not a filespooler packet: gzip data too short to hold a packet; nothing was queued/m);
    }
    // A packet whose header is damaged is refused inside gzip too; text that starts "BZh" is no bzip2.
    const damaged = Buffer.from(p);
    damaged[40] = damaged[40]! ^ 0xff;
    expect(fspool(['queue-write', '-q', q], { input: runSync('gzip', ['-c'], { input: damaged }).stdout }).stderr).toMatch(/not a filespooler packet inside gzip: metadata CRC mismatch/);
    expect(fspool(['queue-write', '-q', q], { input: 'BZh is not bzip2\n' }).code).toBe(1);
    const broken = Buffer.from(p);
    broken[40] = broken[40]! ^ 0xff; // inside the metadata: its CRC no longer matches
    const b = fspool(['queue-write', '-q', q], { input: broken });
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/CRC/);
    expect(jobFiles(q)).toHaveLength(4);
  });
});

describe('cron', () => {
  it("in cron's bare environment, a healthy run at -l warn prints nothing: params ignored and tar's unread padding are routine", () => {
    const dir = openDir();
    const q = makeQueue(dir);
    const src = join(dir, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'a.txt'), 'hello\n');
    const tar = runSync('tar', ['cf', '-', '-C', src, 'a.txt']).stdout;
    put(q, packet(1, tar.toString('latin1'), ['nightly']));
    const dest = join(dir, 'dest');
    mkdirSync(dest);
    // env -i: what cron gives a job, give or take LOGNAME and SHELL.
    const r = runSync('env', ['-i', 'PATH=/usr/bin:/bin', 'SHELL=/bin/sh', `HOME=${dir}`, FSPOOL, '-l', 'warn', 'queue-process', '-q', q, 'sh', '--', '-c', `head -c 1024 | tar xf - -C ${dest}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe('');
    expect(readFileSync(join(dest, 'a.txt'), 'utf8')).toBe('hello\n');
    expect(nextseq(q)).toBe('2');
  });

  it('--skip-if-locked: another processor holds the queue, so exit 0 without a word', async () => {
    const q = makeQueue(tempDir());
    const holder = spawn('flock', [join(q, 'nextseq.lock'), 'sleep', '30'], { stdio: 'ignore' });
    try {
      await waitFor('the lock to be held', () => fspool(['queue-process', '-q', q, 'true']).code === 1);
      const r = fspool(['queue-process', '-q', q, '--skip-if-locked', 'true']);
      expect(r.code).toBe(0);
      expect(r.stderr).toBe('');
    } finally {
      holder.kill('SIGKILL');
    }
  });
});

describe('the keys directory', () => {
  it('a file there that holds no secret key is skipped with a WARN; a key others may read draws one', () => {
    const dir = tempDir();
    const recv = makeKey('recv', dir);
    const keys = join(dir, 'cfg', 'keys');
    mkdirSync(keys, { recursive: true });
    copyFileSync(recv.pub, join(keys, '0-public-by-mistake.asc'));
    copyFileSync(recv.sec, join(keys, '1-recv.sec'));
    chmodSync(join(keys, '1-recv.sec'), 0o644);
    writeFileSync(join(dir, 'seq'), '1\n');
    const enc = fspool(['prepare', '-s', join(dir, 'seq'), '-i', '-', '--encrypt-to', recv.pub], { input: 'secret' }).stdout;
    const r = fspool(['stdin-process', 'cat'], { input: enc, env: { ...process.env, FSPOOL_KEYS: join(dir, 'cfg') } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toBe('secret');
    expect(r.stderr).toMatch(/WARN fspool: .*0-public-by-mistake\.asc holds no usable OpenPGP key.*; skipped/);
    expect(r.stderr).toMatch(/WARN fspool: secret key file .*1-recv\.sec can be read by any user \(mode 644\): chmod 600/);
    expect(exists(join(keys, '1-recv.sec'))).toBe(true);
  });
});
