// A walk over the first MessagePack object in the metadata, before it is decoded.
//
// The decoder allocates an array or map as soon as it reads the container's declared length.
// A packet that lies about lengths (`dd 01 00 00 00`, "16 million elements", repeated a few
// times in a 45-byte file) would make it allocate gigabytes. Every element takes at least one
// byte, so valid data never declares more elements than bytes are left: the walk refuses the
// metadata the moment the elements still owed exceed the bytes remaining, which bounds all
// that the decoder will allocate by the metadata's own size. No allocation, one pass.
//
// That bound is not enough: 16 MiB of one-byte containers (empty arrays, empty strings) is 16
// million objects, gigabytes once decoded and made into params. So containers and strings are
// counted too, and more than MAX_OBJECTS is refused. Each param is one object, each variable
// three (its pair, its name, its value); with the default stack limit the kernel passes 2 MiB
// of argv and environ, some 230,000 params at most (each costs a NUL and a pointer). A larger
// stack limit lets it pass up to 6 MiB, and so more params than this takes: such a header
// (which fspl would read) is refused, as the price of a bound: a decoded header of 2^19 objects
// takes ~150 MB. Integers are not counted: a byte string is an array of them, one per byte, and
// they decode to small numbers in a packed array.
//
// Containers nested deeper than fspl's reader takes them (MAX_DEPTH) are refused, as fspl
// refuses them: the walk keeps how many elements each open one still owes, and nothing else.
//
// Floats are refused too: no field of fspl's header is one, and fspl refuses a header that
// has one where a number is expected (a seq of 1.0 would otherwise read as seq 1).
//
// A field given twice is refused, as fspl (serde) refuses it: the decoder would keep the last,
// and the header would mean one seq to fspool and none to fspl. A field may be named by its
// number too (serde reads key 0 of the metadata as seq), and a name may be a bin as well as a
// str. So is a cmd_type map of other than one entry (a command type given twice), and, as
// serde refuses it, a key of the header's own maps that is neither a name nor a number. Keys
// fspl does not know may repeat, as fspl lets them; fspool's own fspool_stream given twice is
// no stream id at all.
import { PacketError, STREAM_KEY } from './header.js';
import { ASCII_RUN, asciiRun, COUNTED, FIXED, latin1, readBE, SIZED } from './msgpackTypes.js';

/**
 * How deep containers may nest in the metadata, counted as fspl's reader (rmp-serde) counts
 * them: it refuses a header deeper than that ("depth limit exceeded").
 */
export const MAX_DEPTH = 1023;

/** The most MessagePack objects (arrays, maps, strings, binaries, extensions) a header's metadata may hold. */
export const MAX_OBJECTS = 1 << 19;

/** The most the shape walk checks natively at once (a check reads all it is given). */
const ASCII_CHUNK = 64 * 1024;

/** Bytes after the type byte of the scalars a run is made of: all but floats, which are refused. */
const SCALAR: Array<number | undefined> = Array.from({ length: 256 }, (_, t) =>
  t < 0x80 || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3 ? 0 : t >= 0xcc && t <= 0xd3 ? FIXED[t] : undefined,
);

/** The header's own structs and the command type between them; anything else is walked flat. */
type Role = 'metadata' | 'cmd_type' | 'command';
/**
 * A struct's fields, in order: a map names them, or numbers them (serde), an array places them.
 * cmd_type's are the command types, which a map names or numbers the same way.
 */
const FIELDS: Record<Role, readonly string[]> = { metadata: ['seq', 'ctime', 'cmd_type'], cmd_type: ['Command', 'NOP', 'Fail'], command: ['params', 'env'] };

/** An open container of the header's own: the metadata, cmd_type's map, Command's fields. */
interface Frame {
  role: Role;
  map: boolean;
  count: number;
  left: number;
  keys: Set<string>;
  /** The field, or variant, whose value comes next (maps), if it is one of the header's. */
  key: string | undefined;
}

/** What the walk found that decoding will not show: fspool_stream given more than once. */
export interface Shape {
  streamRepeated: boolean;
}

export function checkShape(b: Uint8Array): Shape {
  let pos = 0;
  let owed = 1;
  const need = (n: number) => {
    if (pos + n > b.length) throw new PacketError('metadata is truncated MessagePack');
  };
  const uint = (n: number) => {
    need(n);
    pos += n;
    return readBE(b, pos - n, n);
  };
  let objects = 0;
  let streams = 0;
  const frames: Frame[] = [];
  /**
   * The containers open inside none of the header's own, innermost last: the elements each still
   * owes. Nothing else is kept of them (they are walked flat); their number is how deep they
   * nest, which fspl bounds.
   */
  const levels = new Float64Array(MAX_DEPTH);
  let open = 0;
  /** Levels whose elements are all read, closed, and then the header's own containers. */
  const close = () => {
    while (open > 0 && levels[open - 1] === 0) open--;
    while (open === 0 && frames.length > 0 && frames[frames.length - 1]!.left === 0) frames.pop();
  };
  while (owed > 0) {
    // Inside a container none of the header's own: a run of scalars (integers, nil, booleans;
    // a byte string's elements are integers, below 128 as themselves, above after 0xcc), stepped
    // over at once. All the walk below does with each is count it and check the bytes left: a
    // 16 MiB byte string took it ~0.3 s element by element, 16 MiB of nils ~0.2 s (seconds in a
    // listing, which runs without V8's optimizing compiler).
    if (open > 0 && SCALAR[b[pos]!] !== undefined) {
      const from = pos;
      const left = levels[open - 1]!;
      let k = 0;
      for (let plain = 0; k < left; k++) {
        const t = b[pos];
        if (t !== undefined && t < 0x80) {
          pos += 1;
          // A long stretch of bytes below 128 (one element each, and there were as many bytes
          // left as elements owed): the rest of it is checked natively, a chunk at a time.
          if (++plain === ASCII_RUN) {
            for (;;) {
              const n = Math.min(left - k - 1, b.length - pos, ASCII_CHUNK);
              if (!asciiRun(b, pos, n)) break;
              pos += n;
              k += n;
            }
            plain = 0;
          }
        } else if (t !== undefined && SCALAR[t] !== undefined && pos + 1 + SCALAR[t] <= b.length) {
          pos += 1 + SCALAR[t];
          plain = 0;
        } else break;
        if (owed - k - 1 > b.length - pos) throw new PacketError('metadata declares more elements than it has bytes (a lying length)');
      }
      levels[open - 1] = left - k;
      owed -= k;
      if (pos > from) {
        close();
        continue;
      }
    }
    need(1);
    const start = pos;
    const t = b[pos++]!;
    owed--;
    // Where this element is: a key or a value of one of the header's own containers, or deeper.
    const inDeep = open > 0;
    const parent = inDeep ? undefined : frames[frames.length - 1];
    const isKey = parent !== undefined && parent.map && parent.left % 2 === 0;
    if (inDeep) levels[open - 1]!--;
    else if (parent) parent.left--;
    if (t === 0xca || t === 0xcb) throw new PacketError('metadata holds a floating-point number, which no field of a header is');
    const scalar = t <= 0x7f || t >= 0xe0 || (t >= 0xc0 && t <= 0xc3) || (t >= 0xcc && t <= 0xd3);
    if (!scalar && ++objects > MAX_OBJECTS) throw new PacketError(`metadata holds more than ${MAX_OBJECTS} arrays, maps and strings (far more than any sender writes)`);
    let elements = 0;
    let container: 'map' | 'array' | undefined;
    /** Where a string's bytes are. */
    let text: [number, number] | undefined;
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) {
      // fixint, nil, booleans: the type byte is all
    } else if (t <= 0x8f) {
      elements = (t & 0x0f) * 2;
      container = 'map';
    } else if (t <= 0x9f) {
      elements = t & 0x0f;
      container = 'array';
    } else if (t <= 0xbf) {
      need(t & 0x1f);
      text = [pos, t & 0x1f];
      pos += t & 0x1f;
    } else if (FIXED[t] !== undefined) {
      need(FIXED[t]);
      pos += FIXED[t];
    } else if (SIZED[t] !== undefined) {
      const [lenBytes, ext] = SIZED[t];
      const n = uint(lenBytes) + (ext ? 1 : 0);
      need(n);
      if (!ext) text = [pos, n]; // bin or str
      pos += n;
    } else if (COUNTED[t] !== undefined) {
      const [lenBytes, map] = COUNTED[t];
      elements = uint(lenBytes) * (map ? 2 : 1);
      container = map ? 'map' : 'array';
    } else {
      throw new PacketError(`metadata is not valid MessagePack (type byte 0x${t.toString(16)})`);
    }
    owed += elements;
    if (owed > b.length - pos) throw new PacketError('metadata declares more elements than it has bytes (a lying length)');

    if (isKey) {
      parent.key = keyName(b, parent.role, t, start, text);
      if (parent.key === STREAM_KEY && parent.role === 'metadata') streams++;
      else if (parent.key !== undefined && FIELDS[parent.role].includes(parent.key)) {
        if (parent.keys.has(parent.key)) throw new PacketError(`metadata has the field "${parent.key}" twice`);
        parent.keys.add(parent.key);
      }
    } else if (!inDeep && parent?.role === 'metadata' && fieldOfValue(parent) === 'cmd_type' && isSigned(t)) {
      // serde takes a variant's index only from an unsigned integer, as a field's number.
      throw new PacketError('cmd_type is a signed integer, which names no command type');
    } else if (container) {
      const role = inDeep ? undefined : childRole(parent);
      // As fspl counts: the metadata, the Command body and every container in them, but not
      // cmd_type's map (serde reads an enum's one entry without counting it).
      let depth = open + (role === 'cmd_type' ? 0 : 1);
      for (const f of frames) if (f.role !== 'cmd_type') depth++;
      if (depth > MAX_DEPTH) throw new PacketError(`metadata nests containers more than ${MAX_DEPTH} deep, which fspl refuses`);
      if (role === undefined) {
        if (elements > 0) levels[open++] = elements;
      } else {
        if (role === 'cmd_type' && container === 'map' && elements !== 2) throw new PacketError('cmd_type is not a known command type (a map of other than one entry)');
        frames.push({ role, map: container === 'map', count: elements, left: elements, keys: new Set(), key: undefined });
      }
    }
    close();
  }
  return { streamRepeated: streams > 1 };
}

/**
 * What a map key at `start` names in a struct of `role`: a field by its name (a str, or a bin of
 * the same bytes) or by its number, as serde reads them; undefined for a name or number that is
 * none of the struct's (fspl ignores it). Any other key is an error to fspl, and here.
 */
function keyName(b: Uint8Array, role: Role, t: number, start: number, text: [number, number] | undefined): string | undefined {
  // A name longer than any the header's maps know (fspool_stream) is none of them, as a string or not.
  if (text) return text[1] <= LONGEST_NAME ? latin1(b, text[0], text[1]) : undefined;
  // serde names a field by an unsigned number only: a signed one is an error to fspl, even >= 0.
  if (isSigned(t)) throw new PacketError('metadata names a field by a signed number');
  // Only a number below 256 can name a field (a struct has at most three): wider ones are
  // looked at no further than their high bytes, as a header of millions of them should cost.
  let n: number;
  if (t <= 0x7f) n = t;
  else if (t >= 0xcc && t <= 0xcf) {
    const last = start + FIXED[t]!;
    for (let i = start + 1; i < last; i++) if (b[i] !== 0) return undefined;
    n = b[last]!;
  } else throw new PacketError('metadata has a key that is neither a name nor a number where it names fields');
  return FIELDS[role][n];
}

const LONGEST_NAME = STREAM_KEY.length;

/** A negative fixint, or int 8 to 64 (whatever the value). */
const isSigned = (t: number) => t >= 0xe0 || (t >= 0xd0 && t <= 0xd3);

/** The field of the struct `parent` whose value was just reached (its key, or its place in an array). */
function fieldOfValue(parent: Frame): string | undefined {
  return parent.map ? parent.key : FIELDS[parent.role][parent.count - parent.left - 1];
}

/** The role of a container that is a value in `parent` (undefined: the metadata itself), if it is one of the header's own. */
function childRole(parent: Frame | undefined): Role | undefined {
  if (parent === undefined) return 'metadata';
  if (parent.role === 'metadata') return fieldOfValue(parent) === 'cmd_type' ? 'cmd_type' : undefined;
  if (parent.role === 'cmd_type') return parent.map && parent.key === 'Command' ? 'command' : undefined;
  return undefined;
}
