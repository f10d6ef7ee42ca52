// fspool serve (many queues under one supervisor, src/serve/) and fspool status (one line per
// queue of its configuration). The configuration, its checks and the supervisor are loaded
// only by these commands: the others do not pay for them at start-up.
import { describe, FspoolError } from '../../errors.js';
import { log, printable } from '../../log.js';
import { rfc3339Local } from '../../packet/jobenv.js';
import { Queue } from '../../queue/queue.js';
import { checkProcessor, lackOfSpace } from '../../run/preflight.js';
import { type Status, VERDICT_EXIT } from '../../queue/status.js';
import { setQuiet } from '../../progress.js';
import type { ServeConfig } from '../../serve/settings.js';
import type { Subcommand } from '../options.js';
import { toJson } from '../json.js';
import { print } from './out.js';
import { json, stalledAfter, statusFields } from './queueState.js';

const config = {
  type: 'string',
  value: 'FILE',
  demandOption: true,
  requiresArg: true,
  describe: 'The configuration: TOML, one [queues.NAME] table per queue: its dir, its command (an array), and any queue-process option as a key in snake_case (README, "Many queues")',
} as const;

/** The configuration, or every problem with it said on stderr and exit status 2. */
async function load(file: string): Promise<ServeConfig | undefined> {
  const { ConfigProblems, loadConfig } = await import('../config.js');
  try {
    return loadConfig(file);
  } catch (e) {
    if (!(e instanceof ConfigProblems)) throw e;
    for (const line of e.message.split('\n')) log.error(line);
    process.exitCode = 2;
    return undefined;
  }
}

interface ServeArgs {
  config: string;
  check: boolean;
  'metrics-listen'?: string;
}

export const serve: Subcommand<ServeArgs> = {
  command: 'serve',
  describe: 'Process many queues, each in its order, under one supervisor (a daemon); SIGHUP reloads the configuration, SIGTERM stops',
  builder: (y) =>
    y
      .option('config', config)
      .option('check', { type: 'boolean', nargs: 0, default: false, describe: 'Only check the configuration and that its queues can be processed; exit 0, 1 (a queue cannot be processed) or 2 (bad configuration)' })
      .option('metrics-listen', {
        type: 'string',
        value: 'HOST:PORT',
        requiresArg: true,
        describe: 'Serve Prometheus metrics at http://HOST:PORT/metrics (instead of the configuration\'s metrics_listen); nothing is served unless one is given',
      })
      .example('$0 serve --config /etc/fspool/serve.toml', 'contrib/systemd/fspool-serve.service')
      .example('$0 serve --check --config /etc/fspool/serve.toml', 'check a configuration before a reload (systemctl reload fspool-serve)') as never,
  handler: async (a) => {
    // From here on a SIGHUP is a reload, never the end of serve (Node's default): one that
    // comes before the supervisor takes the signals is done once its queues have started.
    let hupBeforeRun = false;
    const hold = () => {
      hupBeforeRun = true;
    };
    process.on('SIGHUP', hold);
    const cfg = await load(a.config);
    if (!cfg) return;
    if (a['metrics-listen'] !== undefined) {
      const { metricsListen } = await import('../config.js');
      cfg.metricsListen = metricsListen(a['metrics-listen'], '--metrics-listen');
    }
    if (a.check) {
      let bad = 0;
      for (const q of cfg.queues) {
        try {
          // What a processor checks before its first job: that it could record what it does,
          // and that its command can be run; and before every job, that there is room.
          const queue = new Queue(q.dir).checkProcessable();
          checkProcessor(queue, q.opts);
          const cramped = lackOfSpace(queue);
          if (cramped) throw new FspoolError(`${cramped}; no job of queue ${q.dir} runs until there is`);
        } catch (e) {
          log.error(`[${q.name}] ${describe(e)}`);
          bad++;
        }
      }
      print(`${a.config}: ${cfg.queues.length} queue(s) (${cfg.queues.map((q) => q.name).join(', ')}), at most ${cfg.maxParallel} receiver(s) at once${bad ? `; ${bad} cannot be processed now` : ''}\n`);
      process.exitCode = bad ? 1 : 0;
      return;
    }
    // Progress lines of receivers running side by side would overwrite one another.
    setQuiet(true);
    const [{ Supervisor }, { ConfigProblems, loadConfig, metricsListen }, { serviceNotifier }] = await Promise.all([
      import('../../serve/supervisor.js'),
      import('../config.js'),
      import('../../serve/notify.js'),
    ]);
    const override = a['metrics-listen'];
    const supervisor = new Supervisor({
      reload: () => {
        const next = loadConfig(a.config);
        if (override !== undefined) next.metricsListen = metricsListen(override, '--metrics-listen');
        return next;
      },
      refused: (e) => (e instanceof ConfigProblems ? e.message.split('\n') : [describe(e)]),
      // prom-client is loaded only when metrics are to be served.
      metrics: async () => new (await import('../../serve/metrics.js')).Metrics({ counters: true }),
      notify: serviceNotifier(process.env.NOTIFY_SOCKET, log),
    });
    process.exitCode = await supervisor.run(cfg, () => {
      process.off('SIGHUP', hold);
      return hupBeforeRun;
    });
  },
};

interface StatusArgs {
  config: string;
  json: boolean;
  'stalled-after': number;
}

const localMs = (ms: number | null | undefined) => (ms === null || ms === undefined ? '-' : rfc3339Local(BigInt(Math.floor(ms / 1000))));

/** A duration, short: 45s, 12m, 3h, 2d. */
function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

type Row = { name: string; dir: string; status?: Status; error?: string };

function statusLine(r: Row, now: number): string[] {
  const s = r.status;
  if (!s) return [r.name, 'failing', '-', '-', '-', '-', '-'];
  const running = s.processor.current ? `job ${s.processor.current.seq} since ${localMs(s.processor.current.startedAt)}` : s.processor.pid !== undefined ? `idle (pid ${s.processor.pid})` : '-';
  return [
    r.name,
    s.verdict,
    s.nextSeq === undefined ? '-' : String(s.nextSeq),
    String(s.pending),
    s.gap ? `seq ${s.gap.seq}, ${ago(now - s.gap.since)}` : '-',
    localMs(s.lastSuccess?.endedAt ?? s.lastSuccess?.startedAt),
    running,
  ];
}

export const status: Subcommand<StatusArgs> = {
  command: 'status',
  describe: "Show every queue of serve's configuration, one line each; the exit status is the worst of queue-status's (0, 3 stalled, 4 failing)",
  builder: (y) =>
    y
      .option('config', config)
      .option('json', json)
      .option('stalled-after', stalledAfter('a queue'))
      .example('$0 status --config /etc/fspool/serve.toml', '')
      .example('$0 status --config /etc/fspool/serve.toml --json | jq -r \'.queues[] | select(.state != "healthy") | .name\'', 'the queues that need a look') as never,
  handler: async (a) => {
    const cfg = await load(a.config);
    if (!cfg) return;
    const { readStatus } = await import('../../serve/status.js');
    const now = Date.now();
    const rows: Row[] = await Promise.all(
      cfg.queues.map(async (q) => {
        try {
          return { name: q.name, dir: q.dir, status: (await readStatus(q.dir, q.opts.decode, a['stalled-after'])).status };
        } catch (e) {
          if (!(e instanceof FspoolError) && !(e as NodeJS.ErrnoException).code) throw e;
          return { name: q.name, dir: q.dir, error: describe(e) };
        }
      }),
    );
    // A queue that cannot be read needs a person as much as a failing one.
    const exit = Math.max(0, ...rows.map((r) => (r.status ? VERDICT_EXIT[r.status.verdict] : VERDICT_EXIT.failing)));
    if (a.json) {
      const queues = rows.map((r) =>
        r.status
          ? { name: r.name, queue: r.dir, ...statusFields(r.status) }
          : { name: r.name, queue: r.dir, state: 'failing', exit_code: VERDICT_EXIT.failing, reasons: [`cannot be read: ${r.error}`] },
      );
      print(`${toJson({ version: 1, kind: 'status', config: a.config, exit_code: exit, queues })}\n`);
    } else {
      const table = [['QUEUE', 'STATE', 'NEXT', 'PENDING', 'GAP', 'LAST SUCCESS', 'RUNNING'], ...rows.map((r) => statusLine(r, now))];
      const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
      let text = table.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]! + 2))).join('').trimEnd()).join('\n') + '\n';
      // Why, under the table: a queue's line stays one line.
      const why = rows.flatMap((r) => (r.error ? [`${r.name}: cannot be read: ${r.error}`] : (r.status?.reasons ?? []).map((x) => `${r.name}: ${x}`)));
      if (why.length > 0) text += `\n${why.join('\n')}\n`;
      print(text.split('\n').map(printable).join('\n'));
    }
    process.exitCode = exit;
  },
};
