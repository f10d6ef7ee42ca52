// The header codec against packets written by the real fspl 1.2.2, and broken ones.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32, gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { readCanonical } from '../src/packet/canonical.js';
import { decodeAnyForm, decodeHeader, encodeHeader, HeaderReader, MAX_METADATA_LEN, PacketError, parsePrefix, PREFIX_LEN } from '../src/packet/codec.js';
import type { Header } from '../src/packet/header.js';
import { formatEnv, jobEnv } from '../src/packet/jobenv.js';
import { aroundMetadata } from './helpers/bytes.js';
import { FIXTURES } from './helpers/cli.js';

const fixture = (name: string) => readFileSync(join(FIXTURES, name));
const numbered = readdirSync(FIXTURES).filter((f) => /^\d\d-.*\.fspl$/.test(f));

describe('fixtures written by fspl 1.2.2', () => {
  it('has the nine plain numbered fixtures', () => {
    expect(numbered).toHaveLength(9);
  });

  for (const name of numbered) {
    it(`${name} decodes and re-encodes to the same bytes, read in the canonical form as the general reader reads it`, () => {
      const bytes = fixture(name);
      const { header, length } = decodeHeader(bytes);
      expect(encodeHeader(header)).toEqual(bytes.subarray(0, length));
      const meta = bytes.subarray(PREFIX_LEN, length);
      expect(readCanonical(meta)).toEqual(decodeAnyForm(meta));
    });
  }

  it('the forms fspl reads and never writes (a struct as an array, a time before 1970) are left to the general reader', () => {
    for (const name of ['odd-17-array-encoded-struct-ACCEPTED.fspl', 'odd-18-negative-secs-ACCEPTED.fspl']) {
      const bytes = fixture(name);
      const meta = bytes.subarray(PREFIX_LEN, PREFIX_LEN + parsePrefix(bytes).metaLen);
      expect(readCanonical(meta), name).toBeNull();
      expect(decodeHeader(bytes).header, name).toEqual(decodeAnyForm(meta));
    }
  });

  it('a header with bytes after its map leaves the decoder as it was: a later one naming its fields by bin and by number is still read', () => {
    const named = (seqKey: Buffer, rest: Buffer = Buffer.alloc(0)) =>
      Buffer.concat([Buffer.from([0x83]), seqKey, Buffer.from('01a56374696d6592010202', 'hex'), Buffer.from('a34e4f50', 'hex'), rest]);
    const bySeqName = Buffer.from('a3736571', 'hex');
    // The middle key is ctime by number, cmd_type as a bin: neither in the canonical form.
    const odd = Buffer.concat([Buffer.from([0x83]), Buffer.from('c403736571', 'hex'), Buffer.from('01', 'hex'), Buffer.from('01920102', 'hex'), Buffer.from('c408636d645f74797065a34e4f50', 'hex')]);
    expect(decodeAnyForm(odd).seq).toBe(1n);
    // Spare bytes after the map, which fspl ignores: the first object is taken.
    expect(decodeHeader(aroundMetadata(named(bySeqName, Buffer.from([0xc0, 0xc0])))).header.cmd.kind).toBe('NOP');
    expect(decodeAnyForm(odd).seq).toBe(1n);
  });

  it('the gzip-encoded fixture is a whole packet inside gzip', () => {
    const bytes = gunzipSync(fixture('10-gzip-encoded.fspl.gz'));
    const { header, length } = decodeHeader(bytes);
    expect(encodeHeader(header)).toEqual(bytes.subarray(0, length));
    expect(bytes.subarray(length).toString()).toBe('zipped payload\n');
  });

  it('reads the fields fspl wrote', () => {
    const h = decodeHeader(fixture('02-command-params-env-payload.fspl')).header;
    expect(h.seq).toBe(1n);
    expect(h.cmd.kind).toBe('Command');
    if (h.cmd.kind !== 'Command') return;
    expect(h.cmd.params.map(String)).toEqual(['a', 'b c']);
    expect(h.cmd.env.map(([k, v]) => `${k}=${v}`)).toEqual(['FOO=bar', 'Z=1']);
    expect(decodeHeader(fixture('02-command-params-env-payload.fspl')).length).toBe(105);
    expect(decodeHeader(fixture('08-seq200.fspl')).header.seq).toBe(200n);
    expect(decodeHeader(fixture('09-seq70000-nop.fspl')).header).toMatchObject({ seq: 70000n, cmd: { kind: 'NOP' } });
    expect(decodeHeader(fixture('05-fail.fspl')).header.cmd.kind).toBe('Fail');
  });

  it('keeps env order, empty params, empty keys and bytes >= 0x80', () => {
    const h = decodeHeader(fixture('03-utf8-param-emptyparam-env-order.fspl')).header;
    if (h.cmd.kind !== 'Command') throw new Error('not a command');
    expect(h.cmd.params.map(String)).toEqual(['é', '']);
    expect(h.cmd.env.map(([k, v]) => `${k}=${v}`)).toEqual(['ZZ=1', 'AA=2', '=empty']);
  });

  it('keeps non-UTF-8 env values as bytes', () => {
    const h = decodeHeader(fixture('07-nonutf8-env-value.fspl')).header;
    if (h.cmd.kind !== 'Command') throw new Error('not a command');
    expect(h.cmd.env[0]![1]).toEqual(Buffer.from([0xff, 0xfe]));
    expect(formatEnv(jobEnv(h)).includes(Buffer.from([0x3d, 0xff, 0xfe, 0x0a]))).toBe(true);
  });

  it('uses u16 and u32 array headers for long params and values', () => {
    const bytes = fixture('06-array16-array32.fspl');
    const h = decodeHeader(bytes).header;
    if (h.cmd.kind !== 'Command') throw new Error('not a command');
    expect(h.cmd.env[0]![1].length).toBe(70000);
    expect(h.cmd.params.length).toBe(21);
    expect(h.cmd.params[0]!.length).toBe(200);
  });

  it('header sizes match fspl: Command 85, NOP 66, Fail 67', () => {
    expect(decodeHeader(fixture('01-command-noparams-nopayload.fspl')).length).toBe(85);
    expect(decodeHeader(fixture('04-nop.fspl')).length).toBe(66);
    expect(decodeHeader(fixture('05-fail.fspl')).length).toBe(67);
  });
});

describe('what fspl accepts, fspool accepts', () => {
  it('metadata as an array [seq, [secs, ns], cmd_type]', () => {
    expect(decodeHeader(fixture('odd-17-array-encoded-struct-ACCEPTED.fspl')).header).toMatchObject({ seq: 17n, cmd: { kind: 'NOP' } });
  });

  it('negative seconds', () => {
    const h = decodeHeader(fixture('odd-18-negative-secs-ACCEPTED.fspl')).header;
    expect(h.ctimeSecs).toBe(-128n);
    const env = formatEnv(jobEnv(h)).toString();
    expect(env).toContain('FSPL_CTIME_RFC3339_UTC=1969-12-31T23:57:52Z');
  });
});

describe('broken packets get a clear one-line error', () => {
  const cases: Array<[string, RegExp]> = [
    ['bad-11-magic.fspl', /not a filespooler packet/],
    ['bad-12-meta-crc.fspl', /metadata CRC mismatch/],
    ['bad-13-prefix-crc.fspl', /prefix CRC mismatch/],
    ['bad-14-version2.fspl', /version 2/],
    ['bad-15-huge-length-ABORTS-fspl.fspl', /metadata length 1099511627776 exceeds the limit/],
    ['bad-16-nanos-overflow-PANICS-fspl.fspl', /nanoseconds 2000000000 out of range/],
  ];
  for (const [name, msg] of cases) {
    it(name, () => {
      expect(() => decodeHeader(fixture(name))).toThrow(PacketError);
      expect(() => decodeHeader(fixture(name))).toThrow(msg);
    });
  }

  it('a lying length is refused before anything of that size is allocated', () => {
    const prefix = fixture('bad-15-huge-length-ABORTS-fspl.fspl').subarray(0, PREFIX_LEN);
    expect(() => parsePrefix(prefix)).toThrow(`exceeds the limit of ${MAX_METADATA_LEN} bytes`);
  });

  it('truncation at every byte of a header is an error, never a wrong header', () => {
    const bytes = fixture('02-command-params-env-payload.fspl');
    const { length } = decodeHeader(bytes);
    for (let n = 0; n < length; n++) expect(() => decodeHeader(bytes.subarray(0, n))).toThrow(PacketError);
  });

  it('refuses bin and str where fspl wants byte arrays, and unknown command types', () => {
    const base: Header = { seq: 1n, ctimeSecs: 0n, ctimeNanos: 0, cmd: { kind: 'Command', params: [Buffer.from('x')], env: [] } };
    const good = encodeHeader(base);
    // Swap the param's array [0x91, 0x78] for str "x" [0xa1, 0x78], fixing both CRCs.
    const meta = Buffer.from(good.subarray(PREFIX_LEN));
    const at = meta.indexOf(Buffer.from([0x91, 0x78]));
    meta[at] = 0xa1;
    expect(() => decodeHeader(aroundMetadata(meta))).toThrow('param 1 is not a byte array');
  });

  it("fspool's stream id given twice is no stream id (fspl knows no such key and reads the header)", () => {
    const stream = 'ab'.repeat(16);
    const good = encodeHeader({ seq: 1n, ctimeSecs: 0n, ctimeNanos: 0, cmd: { kind: 'NOP' }, stream });
    expect(decodeHeader(good).header.stream).toBe(stream);
    // The map gains a second fspool_stream: 84 becomes 85, the pair appended.
    const meta = Buffer.from(good.subarray(PREFIX_LEN));
    expect(meta[0]).toBe(0x84);
    meta[0] = 0x85;
    const twice = Buffer.concat([meta, Buffer.from([0xad]), Buffer.from('fspool_stream'), Buffer.from([0xa0 | 32]), Buffer.from('cd'.repeat(16))]);
    const h = decodeHeader(aroundMetadata(twice)).header;
    expect(h.seq).toBe(1n);
    expect(h.stream).toBeUndefined();
  });
});

describe('encoding', () => {
  it('round-trips u64 and i64 extremes in the compact forms', () => {
    for (const seq of [0n, 127n, 128n, 255n, 256n, 65535n, 65536n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 64n - 1n]) {
      for (const secs of [0n, -1n, -32n, -33n, -(2n ** 63n), 2n ** 63n - 1n]) {
        const h: Header = { seq, ctimeSecs: secs, ctimeNanos: 999_999_999, cmd: { kind: 'NOP' } };
        expect(decodeHeader(encodeHeader(h)).header).toEqual(h);
      }
    }
  });

  it('refuses values fspl cannot represent', () => {
    expect(() => encodeHeader({ seq: 2n ** 64n, ctimeSecs: 0n, ctimeNanos: 0, cmd: { kind: 'NOP' } })).toThrow(PacketError);
    expect(() => encodeHeader({ seq: 1n, ctimeSecs: 0n, ctimeNanos: 1e9, cmd: { kind: 'NOP' } })).toThrow(PacketError);
  });

  it('HeaderReader asks for exactly the bytes it needs and keeps what follows', () => {
    const bytes = fixture('02-command-params-env-payload.fspl');
    const r = new HeaderReader();
    expect(r.needed).toBe(PREFIX_LEN);
    for (const b of bytes) r.push(Buffer.from([b]));
    expect(r.header?.seq).toBe(1n);
    expect(r.rest.toString()).toBe('hello\n');
  });
});

describe('crc32', () => {
  it('equals zlib.crc32 on the empty input, every fixture and random buffers', async () => {
    const { crc32: ours } = await import('../src/packet/crc32.js');
    expect(ours(Buffer.alloc(0))).toBe(crc32(Buffer.alloc(0)));
    for (const f of readdirSync(FIXTURES).filter((n) => n.endsWith('.fspl'))) expect(ours(fixture(f))).toBe(crc32(fixture(f)));
    for (let i = 0; i < 50; i++) {
      const b = Buffer.from(Array.from({ length: i * 37 }, () => Math.floor(Math.random() * 256)));
      expect(ours(b)).toBe(crc32(b));
    }
  });
});
