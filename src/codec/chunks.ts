// Payloads flow as async iterables of Buffers: each layer pulls from the one before, so
// backpressure is simply not asking for the next chunk, and an error is simply a throw.

/** The first `n` bytes (fewer if the input is shorter), and the whole input again. */
export async function peek(src: AsyncIterable<Buffer>, n: number): Promise<{ head: Buffer; all: AsyncIterable<Buffer> }> {
  const it = src[Symbol.asyncIterator]();
  const taken: Buffer[] = [];
  let have = 0;
  while (have < n) {
    const r = await it.next();
    if (r.done) break;
    taken.push(r.value);
    have += r.value.length;
  }
  async function* all(): AsyncGenerator<Buffer> {
    yield* taken;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
  return { head: Buffer.concat(taken).subarray(0, n), all: all() };
}

/**
 * The smallest chunk handed to openpgp.js, but for the last: its web streams cost per chunk, and
 * fed 1-byte chunks (a pipe can give chunks that small) openpgp.js 6.3.2 was seen to wait
 * forever decrypting a SEIPD v1 packet whose plaintext ends in bytes that are no packet.
 */
const MIN_WEB_CHUNK = 4096;

/**
 * A web ReadableStream (what openpgp.js reads) that pulls from `src`, in chunks of MIN_WEB_CHUNK
 * or more: of bytes, or of strings (armored text).
 */
export function toWebStream<T extends Uint8Array | string>(src: AsyncIterable<T>): ReadableStream<T> {
  const it = src[Symbol.asyncIterator]();
  const join = (parts: T[]) => (parts.length === 1 ? parts[0]! : typeof parts[0] === 'string' ? parts.join('') : Buffer.concat(parts as Uint8Array[])) as T;
  return new ReadableStream<T>({
    async pull(controller) {
      const parts: T[] = [];
      let n = 0;
      let done = false;
      while (n < MIN_WEB_CHUNK) {
        const r = await it.next();
        if (r.done) {
          done = true;
          break;
        }
        parts.push(r.value);
        n += r.value.length;
      }
      if (n > 0) controller.enqueue(join(parts));
      if (done) controller.close();
    },
    async cancel() {
      await it.return?.();
    },
  });
}

/** Read a web ReadableStream as Buffers. */
export async function* fromWebStream(rs: ReadableStream<Uint8Array | string>): AsyncGenerator<Buffer> {
  const reader = rs.getReader();
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) return;
      yield typeof r.value === 'string' ? Buffer.from(r.value, 'latin1') : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    }
  } finally {
    reader.releaseLock();
  }
}
