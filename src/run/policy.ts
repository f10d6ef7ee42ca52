// The decisions of processing, as pure functions of what happened and the options: how a
// receiver's exit is judged, whether a failed job runs again and after what pause, what is
// done with a job after its last run, and how long a watch waits before trying a failing job
// again. No I/O here; test/policy.test.ts checks them without processes.
import { type Action, FAILURES, type RunFacts } from '../queue/journal.js';
import type { Delivery } from './deliver.js';
import type { ReceiverExit } from './receiver.js';

/** How a job's run ended: its verdict and what the journal records of it. */
export type Outcome = (
  /** `partial`: the command exited 0 without reading all of its input. */
  | { ok: true; note?: string; partial?: boolean }
  /**
   * `fatal`: the run cannot go on, and the job is not to blame (the command cannot run, the job
   * file changed under it): stop the whole run, the job kept, whatever --on-error says.
   */
  | { ok: false; reason: string; fatal?: boolean; interrupted?: NodeJS.Signals }
) & { facts?: RunFacts };

export type OnError = 'retry' | 'delete' | 'leave' | 'quarantine';

export interface ErrorPolicy {
  onError: OnError;
  neverDelete: boolean;
  /** Runs again after a failure, counted over every run the journal knows. */
  retries: number;
  /** Pause before the k-th retry of a run: backoff × 2^(k-1) seconds. */
  backoffSeconds: number;
}

const E2BIG = 7;

/**
 * exec's E2BIG is the packet's doing when the packet brought a large share of the request (its
 * params and variables): then its job fails like any bad packet. Otherwise the processor's own
 * command line and environment are too large, which no job can fix.
 */
export const PACKET_SHARE = 64 * 1024;

/**
 * How a receiver's run ended. `unread`: payload bytes left in the job file (zero-copy) or in the
 * stdin pipe, -1 when not known; `packetBytes`: what the packet added to the receiver's argv and environment.
 */
export function judge(exit: ReceiverExit, delivery: Delivery | undefined, unread: number, packetBytes: number): Outcome {
  const how = { exitCode: exit.code ?? undefined, signal: exit.signal ?? undefined };
  if (exit.startError && exit.startErrno === E2BIG && packetBytes > PACKET_SHARE) {
    return { ok: false, reason: `cannot run command: the packet's params and variables (${packetBytes} bytes) make its argument list too long (E2BIG)`, facts: { kind: 'bad-packet' } };
  }
  if (exit.startError) return { ok: false, fatal: true, reason: `cannot run command: ${exit.startError}`, facts: { kind: 'cannot-start' } };
  if (delivery?.failure) return { ok: false, reason: `${delivery.failure}; receiver killed before end of input`, facts: { kind: 'decoder-failure', ...how } };
  if (exit.timedOut) {
    return { ok: false, reason: `timed out; command ${exit.signal ? `killed by ${exit.signal}` : `exited with status ${exit.code}`}`, facts: { kind: 'timeout', ...how } };
  }
  if (exit.signal) return { ok: false, reason: `command killed by ${exit.signal}`, facts: { kind: 'signal', ...how } };
  if (exit.code !== 0) {
    const early = delivery?.early || unread > 0;
    return { ok: false, reason: `command exited with status ${exit.code}${early ? ' before reading all of its input' : ''}`, facts: { kind: early ? 'early-exit' : 'exit-code', ...how } };
  }
  if (delivery?.early) return { ok: true, partial: true, note: 'command exited 0 before reading all of its input', facts: { kind: 'success', ...how } };
  if (unread > 0) return { ok: true, partial: true, note: `command exited 0 leaving ${unread} payload bytes unread`, facts: { kind: 'success', ...how } };
  return { ok: true, facts: { kind: 'success', ...how } };
}

/** Outcomes that count as the job failing (toward --retries and quarantine). */
export const isFailure = (o: Outcome): boolean => !o.ok && !o.fatal && !o.interrupted && FAILURES.includes(o.facts?.kind ?? 'error');

/**
 * Pause before the next try of a job that just failed, or undefined if it is not tried again
 * in this run: `failures` is how many times the journal has seen it fail, this time included;
 * `retry` is the number of this retry in the run (1 for the first).
 */
export function retryPause(p: ErrorPolicy, outcome: Outcome, failures: number, retry: number, stopping: boolean): number | undefined {
  if (!isFailure(outcome) || stopping || failures > p.retries) return undefined;
  return p.backoffSeconds * 2 ** (retry - 1);
}

/** What becomes of a job after its last run; undefined when it was interrupted (it stays queued). */
export function decide(outcome: Outcome, p: Pick<ErrorPolicy, 'onError' | 'neverDelete'>): Action | undefined {
  if (outcome.ok) return p.neverDelete ? 'keep' : 'delete';
  if (outcome.interrupted) return undefined;
  if (outcome.fatal) return 'stop';
  switch (p.onError) {
    case 'retry':
      return 'stop';
    case 'delete':
      return p.neverDelete ? 'keep' : 'delete';
    case 'leave':
      return 'keep';
    case 'quarantine':
      return 'quarantine';
  }
}

/** What a job's end means for the run: go on to the next job, or end the run (and why). */
export type RunEffect = { next: true } | { next: false; interrupted: true } | { next: false; error: string };

/** The run's course after a job whose last run had `outcome`, and the lines that report it. */
export function conclude(outcome: Outcome, label: string, p: Pick<ErrorPolicy, 'onError'>): { effect: RunEffect; lines: Array<['info' | 'warn' | 'error', string]> } {
  if (outcome.ok) {
    // A receiver that leaves bytes unread (tar stops at its end-of-archive blocks) has still
    // given its verdict: worth a line, not a warning.
    const lines: Array<['info' | 'warn' | 'error', string]> = outcome.note ? [['info', `${label}: ${outcome.note}`]] : [];
    return { effect: { next: true }, lines: [...lines, ['info', `${label} succeeded`]] };
  }
  if (outcome.interrupted) {
    return { effect: { next: false, interrupted: true }, lines: [['warn', `${label} interrupted by ${outcome.interrupted}; it stays queued and runs again next time`]] };
  }
  if (outcome.fatal) return { effect: { next: false, error: `${label}: ${outcome.reason}; job kept` }, lines: [] };
  const lines: Array<['info' | 'warn' | 'error', string]> = [['error', `${label} failed: ${outcome.reason}`]];
  if (p.onError === 'retry') {
    return { effect: { next: false, error: `stopping at ${label}: it failed and --on-error is retry; it stays queued and runs again next time` }, lines };
  }
  return { effect: { next: true }, lines };
}

/** The longest a watch waits before trying a failing job again. */
export const WATCH_BACKOFF_MAX = 3600;
/** The first wait, when --backoff is 0. */
export const WATCH_BACKOFF_MIN = 10;

/**
 * How long a watch waits before its next pass after `failed` passes in a row ended at a
 * failing job: from --backoff (or 10 s), doubling, at most an hour.
 */
export function watchBackoff(failed: number, backoffSeconds: number): number {
  if (failed <= 0) return 0;
  const base = backoffSeconds > 0 ? backoffSeconds : WATCH_BACKOFF_MIN;
  return Math.min(base * 2 ** (failed - 1), Math.max(base, WATCH_BACKOFF_MAX));
}
