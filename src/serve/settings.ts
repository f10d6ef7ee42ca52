// What serve runs: its settings and one queue's, as the configuration file gives them once
// read and checked (src/cli/config.ts reads it; this layer only runs what it is given).
import type { DecodeContext } from '../codec/decode.js';
import type { ProcessOptions } from '../run/processor.js';

export interface QueueSettings {
  /** The queue's name in the configuration: its log lines' label and its metrics' `queue`. */
  name: string;
  dir: string;
  /** queue-process's options, as its command line would give them. */
  opts: ProcessOptions;
  stopTimeoutSeconds: number;
  /**
   * How the metrics' readings of the queue decode packet headers: apart from the processor's,
   * so that a scrape never waits behind the decoding of a running job.
   */
  readerDecode: DecodeContext;
  /** Equal for equal settings: a reload starts a queue's processor again only when it differs. */
  fingerprint: string;
}

/** An address to listen on, as given: nothing is bound that was not asked for. */
export interface Listen {
  host: string;
  port: number;
}

export interface ServeConfig {
  /** Receivers running at once, over all queues. */
  maxParallel: number;
  metricsListen: Listen | undefined;
  queues: QueueSettings[];
}

export const listenText = (l: Listen) => `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`;
