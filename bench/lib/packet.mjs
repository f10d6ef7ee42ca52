// A minimal Filespooler 1.2 packet writer for generating benchmark queues quickly
// (spawning `prepare` 10,000 times would dominate the run). The bytes are the ones
// `fspl prepare` writes (checked against fspl itself by `checkEncoder` before use):
// 30-byte prefix, MessagePack metadata {seq, ctime: [s, ns], cmd_type: {Command: {params: [], env: []}}},
// then the raw payload.
import { createCipheriv, randomBytes, randomUUID } from 'node:crypto';
import { closeSync, fdatasyncSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

function mpUint(n) {
  if (n < 0x80) return Buffer.from([n]);
  if (n < 0x100) return Buffer.from([0xcc, n]);
  if (n < 0x10000) return Buffer.from([0xcd, n >> 8, n & 0xff]);
  if (n < 0x100000000) {
    const b = Buffer.alloc(5);
    b[0] = 0xce;
    b.writeUInt32BE(n, 1);
    return b;
  }
  const b = Buffer.alloc(9);
  b[0] = 0xcf;
  b.writeBigUInt64BE(BigInt(n), 1);
  return b;
}

const fixstr = (s) => Buffer.concat([Buffer.from([0xa0 | s.length]), Buffer.from(s, 'ascii')]);

/** The 30-byte prefix (magic, version 1, L, both CRCs), then the metadata. */
function withPrefix(meta) {
  const prefix = Buffer.alloc(30);
  prefix.write('*FILESPOOLER', 0, 'ascii');
  prefix.writeUInt16BE(1, 12);
  prefix.writeBigUInt64BE(BigInt(meta.length), 14);
  prefix.writeUInt32BE(crc32(meta), 22);
  prefix.writeUInt32BE(crc32(prefix.subarray(0, 26)), 26);
  return Buffer.concat([prefix, meta]);
}

/** The header (prefix + metadata) of a Command packet with no params and no env. */
export function packetHeader(seq, secs, nanos) {
  const meta = Buffer.concat([
    Buffer.from([0x83]),
    fixstr('seq'),
    mpUint(seq),
    fixstr('ctime'),
    Buffer.from([0x92]),
    mpUint(secs),
    mpUint(nanos),
    fixstr('cmd_type'),
    Buffer.from([0x81]),
    fixstr('Command'),
    Buffer.from([0x82]),
    fixstr('params'),
    Buffer.from([0x90]),
    fixstr('env'),
    Buffer.from([0x90]),
  ]);
  return withPrefix(meta);
}

export function packet(seq, payload = Buffer.alloc(0), when = Date.now()) {
  const secs = Math.floor(when / 1000);
  const nanos = (when % 1000) * 1e6 + seq; // distinct, still < 1e9
  return Buffer.concat([packetHeader(seq, secs, nanos), payload]);
}

const mpArray = (n) => {
  if (n < 16) return Buffer.from([0x90 | n]);
  const b = Buffer.alloc(n < 0x10000 ? 3 : 5);
  b[0] = n < 0x10000 ? 0xdc : 0xdd;
  if (n < 0x10000) b.writeUInt16BE(n, 1);
  else b.writeUInt32BE(n, 1);
  return b;
};

/**
 * A whole header (prefix and metadata) of a Command packet with these params, as fspl writes
 * it; `seqKeyAsBin`: its first key written as a bin, a form fspl reads and never writes.
 */
export function commandHeader(seq, params, { seqKeyAsBin = false } = {}) {
  const parts = [Buffer.from([0x83]), seqKeyAsBin ? Buffer.from([0xc4, 3, ...Buffer.from('seq')]) : fixstr('seq'), mpUint(seq)];
  parts.push(fixstr('ctime'), Buffer.from([0x92]), mpUint(1_700_000_000), mpUint(seq), fixstr('cmd_type'), Buffer.from([0x81]), fixstr('Command'), Buffer.from([0x82]), fixstr('params'), mpArray(params.length));
  for (const p of params) {
    parts.push(mpArray(p.length));
    // A byte below 128 as itself, others after 0xcc.
    const out = Buffer.alloc(2 * p.length);
    let at = 0;
    for (const x of p) {
      if (x >= 0x80) out[at++] = 0xcc;
      out[at++] = x;
    }
    parts.push(out.subarray(0, at));
  }
  parts.push(fixstr('env'), Buffer.from([0x90]));
  const meta = Buffer.concat(parts);
  return withPrefix(meta);
}

/** A processable queue: QUEUE/nextseq ("1\n"), QUEUE/nextseq.lock, QUEUE/jobs/. */
export function initQueue(dir) {
  mkdirSync(join(dir, 'jobs'), { recursive: true });
  writeFileSync(join(dir, 'nextseq'), '1\n');
  writeFileSync(join(dir, 'nextseq.lock'), '');
}

/** Jobs 1..n as {name, data}, with fspl-style names. */
export function makeJobs(n, payloadOf = () => Buffer.alloc(0)) {
  const base = Date.now() - n * 1000;
  const jobs = [];
  for (let seq = 1; seq <= n; seq++) {
    jobs.push({ name: `fspl-${randomUUID()}.fspl`, data: packet(seq, payloadOf(seq), base + seq * 1000) });
  }
  return jobs;
}

export function writeJobs(queueDir, jobs) {
  const jobsDir = join(queueDir, 'jobs');
  for (const j of jobs) writeFileSync(join(jobsDir, j.name), j.data);
}

/**
 * Write `prefix` then `bytes` bytes of random-looking data, fast: one random 1 MiB block
 * written over and over. Synced before returning, so that writeback of the new file does not
 * compete with the runs that use it (the data stays in the page cache).
 */
export function writeRepeated(path, bytes, block, prefix = Buffer.alloc(0)) {
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, prefix);
    let left = bytes;
    while (left > 0) {
      const n = Math.min(left, block.length);
      let off = 0;
      while (off < n) off += writeSync(fd, block, off, n - off);
      left -= n;
    }
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A packet of seq 1 whose payload is `bytes` bytes of random data. */
export function writeBigPacket(path, bytes, block) {
  writeRepeated(path, bytes, block, packet(1));
}

/** `bytes` of an AES-CTR key stream: no block repeats, zstd can do nothing with it. */
export function writeRandomPayload(path, bytes) {
  const MiB = 1 << 20;
  const cipher = createCipheriv('aes-128-ctr', randomBytes(16), randomBytes(16));
  const zeros = Buffer.alloc(MiB);
  const fd = openSync(path, 'w');
  try {
    for (let i = 0; i < bytes / MiB; i++) {
      const block = cipher.update(zeros);
      let off = 0;
      while (off < block.length) off += writeSync(fd, block, off, block.length - off);
    }
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * A payload that is partly compressible, as real backups and archives are: 1 MiB blocks,
 * alternately random (an AES-CTR key stream, so no two blocks are alike and zstd finds nothing
 * to match) and text (log-like lines with counters, which zstd -3 shrinks ~9-fold). `bytes`
 * must be a multiple of 1 MiB. Synced before returning, like writeRepeated.
 */
export function writeMixedPayload(path, bytes) {
  const MiB = 1 << 20;
  const cipher = createCipheriv('aes-128-ctr', randomBytes(16), randomBytes(16));
  const zeros = Buffer.alloc(MiB);
  const fd = openSync(path, 'w');
  let line = 0;
  try {
    for (let i = 0; i < bytes / MiB; i++) {
      let block;
      if (i % 2 === 0) block = cipher.update(zeros);
      else {
        const parts = [];
        let n = 0;
        while (n < MiB) {
          line++;
          const s = `2025-06-${String(1 + (line % 28)).padStart(2, '0')}T12:${String(line % 60).padStart(2, '0')}:00Z host${line % 7} backup[${1000 + (line % 97)}]: chunk ${line} stored, ${(line * 7919) % 100000} bytes, status ok\n`;
          parts.push(s);
          n += s.length;
        }
        block = Buffer.from(parts.join(''), 'latin1').subarray(0, MiB);
      }
      let off = 0;
      while (off < block.length) off += writeSync(fd, block, off, block.length - off);
    }
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
