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

/** A web ReadableStream (what openpgp.js reads) that pulls from `src`. */
export function toWebStream(src: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const it = src[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const r = await it.next();
      if (r.done) controller.close();
      else controller.enqueue(r.value);
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
