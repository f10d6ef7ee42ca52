// fspool serve: many queues in one process, each processed by its own QueueProcessor
// (runner.ts) in watch mode, side by side (spec/serve.md). The supervisor owns the process's
// signals and hands them on: SIGTERM and SIGINT to every queue's Stopper, SIGHUP to a reload of
// the configuration. It moves no payload byte itself: a raw payload goes to its receiver as
// the job file's fd, a decoded one is decoded off the main thread (spec/serve.md, "No shared
// byte path").
import { createServer, type Server } from 'node:http';
import { describe, FspoolError } from '../errors.js';
import { log as rootLog, type Logger } from '../log.js';
import type { StopSignal } from '../run/stop.js';
import type { Metrics } from './metrics.js';
import { QueueRunner } from './runner.js';
import { listenText, type Listen, type QueueSettings, type ServeConfig } from './settings.js';
import { type Notify, reloadingState } from './notify.js';
import { Slots } from './slots.js';
import type { Status } from '../queue/status.js';
import { readStatus } from './status.js';
import { os } from '../sys/lazy.js';

/** How long a scrape waits for another writer of a queue's header cache. */
const SCRAPE_BUSY_MS = 100;

/**
 * How long a scrape waits for one queue's status (Prometheus gives a scrape 10 s by default):
 * a queue whose files take longer to read (a decoder that hangs, many passphrase-derived keys)
 * is said down in this scrape, and the others are answered.
 */
const SCRAPE_QUEUE_WAIT_MS = 5_000;

export interface SupervisorOptions {
  /** Read the configuration again (SIGHUP); throws with every problem when it cannot be used. */
  reload: () => ServeConfig;
  /** Says what was wrong with a configuration a reload refused. */
  refused: (e: unknown) => string[];
  /** The metrics to serve at metrics_listen (made only when one is set). */
  metrics?: () => Promise<Metrics>;
  /** Tells the service manager READY, RELOADING, STOPPING (notify.ts); by default nothing. */
  notify?: Notify;
  log?: Logger;
}

export class Supervisor {
  private readonly log: Logger;
  private readonly notify: Notify;
  private readonly runners = new Map<string, QueueRunner>();
  private slots: Slots | undefined;
  private signal: StopSignal | undefined;
  /** The metrics server: the address configured, and the one bound (its port, when 0 was asked for). */
  private http: { server: Server; at: Listen; bound: Listen } | undefined;
  private metrics: Metrics | undefined;
  private scrape: Promise<string> | undefined;
  /** Queues whose state database the last scrape could not use (said once, until it can). */
  private readonly scrapeWithoutDb = new Set<string>();
  /** Each queue's status being read (and since when), shared by the scrapes that come until it is done. */
  private readonly statusReads = new Map<string, { reading: Promise<Status | undefined>; since: number }>();
  /** Queues a scrape gave up waiting for (said once, until one is read in time). */
  private readonly scrapeLate = new Set<string>();
  private reloading: Promise<void> = Promise.resolve();
  /** The configuration served, as last told the service manager. */
  private current: ServeConfig | undefined;

  constructor(private readonly opts: SupervisorOptions) {
    this.log = opts.log ?? rootLog;
    this.notify = opts.notify ?? (() => {});
  }

  /**
   * Serve until SIGTERM or SIGINT: the exit status, 128+N. Throws if metrics cannot be served.
   * `takeSignals`, called once this has taken the signals, lets go of whoever held SIGHUP before
   * and says whether one came meanwhile (a reload to do once the queues have started).
   */
  async run(config: ServeConfig, takeSignals: () => boolean): Promise<number> {
    this.slots = new Slots(config.maxParallel);
    // The signals are ours from here, before anything is awaited: by default SIGHUP (a reload
    // sent early) would end the process. One that comes before the queues start is done after.
    let started = false;
    let earlyHup = false;
    const onStop = (sig: NodeJS.Signals) => this.stop(sig as StopSignal);
    const onHup = () => {
      if (!started) earlyHup = true;
      else this.reloading = this.reloading.then(() => this.reload());
    };
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
    process.on('SIGHUP', onHup);
    if (takeSignals()) earlyHup = true;
    try {
      await this.listen(config.metricsListen);
      if (!this.signal) {
        this.apply(config);
        started = true;
        this.log.info(`serving ${config.queues.length} queue(s), at most ${config.maxParallel} receiver(s) at once`);
        this.ready(config);
        if (earlyHup) onHup();
      }
      await this.stopped();
      await Promise.all([...this.runners.values()].map((r) => r.done));
      await this.reloading;
      return 128 + os().constants.signals[this.signal!];
    } finally {
      process.off('SIGTERM', onStop);
      process.off('SIGINT', onStop);
      process.off('SIGHUP', onHup);
      await this.unlisten();
    }
  }

  private stopWaiters: Array<() => void> = [];

  private stopped(): Promise<void> {
    return this.signal ? Promise.resolve() : new Promise((resolve) => this.stopWaiters.push(resolve));
  }

  /** SIGTERM, SIGINT: to every queue, as queue-process takes them (a second one interrupts). */
  stop(sig: StopSignal): void {
    const first = this.signal === undefined;
    this.signal ??= sig;
    if (first) {
      this.log.info(
        sig === 'SIGTERM'
          ? `${sig}: no new job starts; running jobs may finish for their queue's stop_timeout, then they are interrupted`
          : `${sig}: running jobs are interrupted; they stay queued`,
      );
      this.notify('STOPPING=1');
    } else this.log.info(`${sig}: running jobs are interrupted; they stay queued`);
    for (const r of this.runners.values()) r.stop(sig);
    for (const w of this.stopWaiters.splice(0)) w();
  }

  /** SIGHUP: read the configuration again; if it cannot be used, say why and keep the old one. */
  private async reload(): Promise<void> {
    if (this.signal) return;
    this.notify(reloadingState());
    let config: ServeConfig;
    try {
      config = this.opts.reload();
    } catch (e) {
      for (const p of this.opts.refused(e)) this.log.error(p);
      this.log.error('SIGHUP: the configuration was not reloaded; the old one stays');
      if (this.current) this.ready(this.current, 'the configuration was not reloaded (see the log); ');
      return;
    }
    if (this.signal) return;
    this.log.info(`SIGHUP: configuration reloaded: ${config.queues.length} queue(s), at most ${config.maxParallel} receiver(s) at once`);
    this.apply(config);
    const was = this.http?.at;
    const now = config.metricsListen;
    if ((was && listenText(was)) !== (now && listenText(now))) await this.relisten(now);
    if (!this.signal) this.ready(config);
  }

  /** READY=1 for the service manager, with what is served as its STATUS. */
  private ready(config: ServeConfig, news = ''): void {
    this.current = config;
    this.notify(`READY=1\nSTATUS=${news}serving ${config.queues.length} queue(s), at most ${config.maxParallel} receiver(s) at once`);
  }

  /**
   * Serve metrics at `now` instead: the new address is taken before the old one is let go, so
   * that one that cannot be had leaves them served where they were, as a reload that fails
   * leaves the old configuration. The same port on another host may clash with the old
   * socket: then the old one is let go first, and taken again if the new one still fails.
   */
  private async relisten(now: Listen | undefined): Promise<void> {
    const old = this.http;
    if (!now) return this.unlisten();
    try {
      await this.listen(now);
      if (old) await closeServer(old.server);
      return;
    } catch (e) {
      this.http = old;
      if (!old || old.bound.port !== now.port) {
        this.log.error(`${describe(e)}; ${old ? `metrics are still served at ${listenText(old.bound)}` : 'metrics are not served until a reload can listen'}`);
        return;
      }
    }
    await this.unlisten();
    try {
      await this.listen(now);
    } catch (e) {
      try {
        await this.listen(old.bound);
        this.http!.at = old.at;
        this.log.error(`${describe(e)}; metrics are still served at ${listenText(old.bound)}`);
      } catch {
        this.log.error(`${describe(e)}; metrics are not served until a reload can listen`);
      }
    }
  }

  /** Start added queues, give changed ones their new settings, end removed ones after their running job. */
  private apply(config: ServeConfig): void {
    this.slots!.resize(config.maxParallel);
    const wanted = new Map(config.queues.map((q) => [q.name, q]));
    for (const [name, runner] of this.runners) {
      if (!wanted.has(name) && runner.settings !== null) {
        runner.log.info('removed from the configuration: it ends once its running job is over');
        runner.configure(null);
      }
    }
    for (const q of config.queues) {
      const runner = this.runners.get(q.name);
      if (runner && !runner.finished) {
        if (runner.settings?.fingerprint !== q.fingerprint) {
          runner.log.info(runner.settings === null ? 'added again' : 'settings changed: they apply from its next job');
          runner.configure(q);
        }
        continue;
      }
      const started = new QueueRunner(q.name, q, { slots: this.slots!, ran: (queue, r) => this.metrics?.ran(queue, r) });
      this.runners.set(q.name, started);
      void started.done.then(() => {
        if (this.runners.get(q.name) === started && started.settings === null) this.runners.delete(q.name);
      });
    }
  }

  private async listen(at: Listen | undefined): Promise<void> {
    if (!at) return;
    this.metrics ??= await this.opts.metrics?.();
    const server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('fspool serves /metrics only\n');
        return;
      }
      this.metricsText().then(
        (text) => res.writeHead(200, { 'content-type': this.metrics!.contentType }).end(req.method === 'HEAD' ? undefined : text),
        (e) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${describe(e)}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new FspoolError(`cannot serve metrics at ${listenText(at)}: ${describe(e)}`)));
      server.listen({ host: at.host, port: at.port }, resolve);
    });
    const bound = server.address();
    const port = typeof bound === 'object' && bound ? bound.port : at.port;
    this.http = { server, at, bound: { host: at.host, port } };
    this.log.info(`metrics at http://${listenText(this.http.bound)}/metrics`);
  }

  private async unlisten(): Promise<void> {
    const h = this.http;
    this.http = undefined;
    if (h) await closeServer(h.server);
  }

  /** The metrics now: the queues' gauges from their status, read once for scrapes that come together. */
  private metricsText(): Promise<string> {
    this.scrape ??= (async () => {
      try {
        const queues = [...this.runners.values()].map((r) => r.settings).filter((s) => s !== null);
        const read = await Promise.all(
          queues.map(async (q) => {
            const status = await this.statusWithin(q, SCRAPE_QUEUE_WAIT_MS);
            if (status !== 'late') {
              this.scrapeLate.delete(q.name);
              return { queue: q.name, status };
            }
            if (!this.scrapeLate.has(q.name)) {
              this.scrapeLate.add(q.name);
              this.log.warn(`[${q.name}] its status took more than ${SCRAPE_QUEUE_WAIT_MS / 1000}s to read (its job files' headers: a decoder that hangs?): fspool_queue_up is 0 for it until a scrape reads it in time`);
            }
            return { queue: q.name, status: undefined };
          }),
        );
        this.metrics!.setStatus(read);
        return await this.metrics!.text();
      } finally {
        this.scrape = undefined;
      }
    })();
    return this.scrape;
  }

  /**
   * The queue's status, or 'late' once its read has taken `ms`: the read goes on, and the next
   * scrapes wait for that same read, as long as it has left of `ms`, rather than start another.
   */
  private async statusWithin(q: QueueSettings, ms: number): Promise<Status | undefined | 'late'> {
    let read = this.statusReads.get(q.name);
    if (!read) {
      read = { reading: this.readQueueStatus(q).finally(() => this.statusReads.delete(q.name)), since: Date.now() };
      this.statusReads.set(q.name, read);
    }
    const { reading, since } = read;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), Math.max(0, since + ms - Date.now()))));
    try {
      return await Promise.race([reading, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async readQueueStatus(q: QueueSettings): Promise<Status | undefined> {
    try {
      // A scrape runs on the supervisor's event loop: it waits briefly for a writer of the
      // header cache (headers it could not cache are read from their files), and says a
      // state database it cannot use once, not at every scrape.
      const { status } = await readStatus(q.dir, q.readerDecode, Infinity, { busyMs: SCRAPE_BUSY_MS, quiet: this.scrapeWithoutDb.has(q.name) });
      if (status.journal) this.scrapeWithoutDb.delete(q.name);
      else this.scrapeWithoutDb.add(q.name);
      return status;
    } catch (e) {
      this.log.debug(`[${q.name}] no status for the metrics: ${describe(e)}`);
      return undefined;
    }
  }
}

function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
