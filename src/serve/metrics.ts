// fspool's metrics in Prometheus' exposition format, made by prom-client (spec/serve.md,
// "Metrics"). The per-queue gauges are set from a queue's status (status.ts), the one that
// queue-status shows; the job counters are counted by serve from its receivers' runs.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RunReport } from '../run/context.js';
import { type Status, VERDICT_EXIT } from '../queue/status.js';

const VERDICTS = Object.keys(VERDICT_EXIT) as Array<keyof typeof VERDICT_EXIT>;

/** Job durations: from seconds (a small file) to a day (a large zfs receive). */
const DURATION_BUCKETS = [1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400];

type QueueGauge = Gauge<'queue'>;

export class Metrics {
  readonly registry = new Registry();
  private readonly nextSeq: QueueGauge;
  private readonly pending: QueueGauge;
  private readonly gap: QueueGauge;
  private readonly unreadable: QueueGauge;
  private readonly quarantined: QueueGauge;
  private readonly running: QueueGauge;
  private readonly lastSuccess: QueueGauge;
  private readonly lastFailure: QueueGauge;
  private readonly up: QueueGauge;
  private readonly state: Gauge<'queue' | 'state'>;
  private readonly jobs: Counter<'queue' | 'outcome'> | undefined;
  private readonly duration: Histogram<'queue'> | undefined;
  private readonly bytes: Counter<'queue'> | undefined;

  /**
   * `counters`: also the job counters, which only a running serve can count (queue-status
   * --prometheus prints the gauges alone). prom-client's default process metrics are left out:
   * some of their names fail `promtool check metrics` (gauges named *_total).
   */
  constructor(opts: { counters: boolean }) {
    const registers = [this.registry];
    const gauge = (name: string, help: string): QueueGauge => new Gauge({ name, help, labelNames: ['queue'], registers });
    this.nextSeq = gauge('fspool_queue_next_seq', 'The sequence number the queue runs next (nextseq)');
    this.pending = gauge('fspool_queue_pending_jobs', 'Readable jobs at or above the next seq: due or waiting');
    this.gap = gauge('fspool_queue_gap_seconds', 'How long the due seq has been waited for while later jobs are queued; 0 when none is missing');
    this.unreadable = gauge('fspool_queue_unreadable_files', 'Job files that cannot be read or decoded');
    this.quarantined = gauge('fspool_queue_quarantined_files', 'Jobs in quarantine, waiting for a person');
    this.running = gauge('fspool_queue_processor_running', '1 while a processor (serve, queue-process, fspl) holds the queue');
    this.lastSuccess = gauge('fspool_last_success_timestamp_seconds', 'When the last successful job of the queue ended (journal), in seconds since the epoch');
    this.lastFailure = gauge('fspool_last_failure_timestamp_seconds', 'When the last failed run of the queue ended (journal), in seconds since the epoch');
    this.up = gauge('fspool_queue_up', '1 when the queue could be read for these metrics; 0 when not (the directory is gone, not a queue, unreadable)');
    this.state = new Gauge({ name: 'fspool_queue_state', help: "The queue's verdict, as queue-status gives it: 1 for the one it is in", labelNames: ['queue', 'state'], registers });
    if (opts.counters) {
      this.jobs = new Counter({ name: 'fspool_jobs_total', help: 'Runs of receivers by how they ended (the outcomes of queue-history)', labelNames: ['queue', 'outcome'], registers });
      this.duration = new Histogram({ name: 'fspool_job_duration_seconds', help: 'How long runs of receivers took', labelNames: ['queue'], buckets: DURATION_BUCKETS, registers });
      this.bytes = new Counter({ name: 'fspool_payload_bytes_total', help: 'Payload bytes the receivers took', labelNames: ['queue'], registers });
    }
  }

  /**
   * The gauges of these queues, from their status now (undefined: it could not be read, and the
   * queue is only said to be down); queues not named lose theirs.
   */
  setStatus(statuses: Array<{ queue: string; status: Status | undefined }>, now = Date.now()): void {
    for (const g of [this.nextSeq, this.pending, this.gap, this.unreadable, this.quarantined, this.running, this.lastSuccess, this.lastFailure, this.up, this.state]) g.reset();
    for (const { queue, status: s } of statuses) {
      const l = { queue };
      this.up.set(l, s ? 1 : 0);
      if (!s) continue;
      for (const v of VERDICTS) this.state.set({ queue, state: v }, s.verdict === v ? 1 : 0);
      if (s.lastFailure) this.lastFailure.set(l, (s.lastFailure.endedAt ?? s.lastFailure.startedAt) / 1000);
      // An append-only queue has no next seq; a queue that never succeeded, no last success:
      // no sample rather than a made-up 0.
      if (s.nextSeq !== undefined) this.nextSeq.set(l, Number(s.nextSeq));
      this.pending.set(l, s.pending);
      this.gap.set(l, s.gap ? Math.max(0, (now - s.gap.since) / 1000) : 0);
      this.unreadable.set(l, s.unreadable.length);
      this.quarantined.set(l, s.quarantine.length);
      this.running.set(l, s.processor.pid !== undefined ? 1 : 0);
      if (s.lastSuccess) this.lastSuccess.set(l, (s.lastSuccess.endedAt ?? s.lastSuccess.startedAt) / 1000);
    }
  }

  /** A run of one of the queue's receivers ended. */
  ran(queue: string, r: RunReport): void {
    this.jobs?.inc({ queue, outcome: r.outcome });
    this.duration?.observe({ queue }, r.seconds);
    this.bytes?.inc({ queue }, r.bytes);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
