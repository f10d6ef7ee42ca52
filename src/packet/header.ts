// What a packet header says, independent of how it is written on the wire.

/** A request to run the processor's command, with the sender's params and FSPL_SET_ env. */
export interface CommandRequest {
  kind: 'Command';
  /** Byte strings: fspl carries arbitrary bytes, not text. */
  params: Buffer[];
  /** [key without the FSPL_SET_ prefix, value], in the sender's environment order. */
  env: Array<[Buffer, Buffer]>;
}

export type CmdType = CommandRequest | { kind: 'NOP' } | { kind: 'Fail' };

export interface Header {
  /** Sequence number, u64. */
  seq: bigint;
  /** Creation time: seconds since the epoch (i64) and nanoseconds (< 1e9). */
  ctimeSecs: bigint;
  ctimeNanos: number;
  cmd: CmdType;
  /**
   * fspool's own metadata key `fspool_stream` (spec/receipts.md): the stream id of a packet made
   * with --outbox, 32 lower-case hex digits. Absent in every packet fspl makes.
   */
  stream?: string;
}

/** fspool's metadata key naming a packet's stream (spec/receipts.md), and its only valid form. */
export const STREAM_KEY = 'fspool_stream';
export const STREAM_ID = /^[0-9a-f]{32}$/;

export const U64_MAX = (1n << 64n) - 1n;
export const I64_MIN = -(1n << 63n);
export const I64_MAX = (1n << 63n) - 1n;

/** A packet that is not a valid fspl packet. The message is one line, fit for the user. */
export class PacketError extends Error {
  override name = 'PacketError';
}
