// Running one command and measuring it.
//
// Every timed command runs under a small python3 helper (python's start-up is outside the
// timed window) that:
//   - starts the command with the given stdin/stdout/stderr files,
//   - takes wall time from just before the fork to the moment the child has exited,
//   - reaps it with wait4(2), which gives the child's CPU time and ru_maxrss. On Linux the
//     ru_maxrss of wait4 is the largest RSS of ANY single process in the child's waited-for
//     tree (the child, or e.g. the receiver it ran), so it is an upper bound on the child's own;
//   - optionally (poll) samples /proc/PID/status VmHWM (the child's own peak RSS, not its
//     children's) every 2 ms until the child has exited (seen with waitid(WNOWAIT), so the
//     sample is taken while its memory still exists). This is the number to use for "peak RSS
//     of the spooler"; growth in its last 2 ms of life would be missed.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const PY = String.raw`
import json, os, sys, time, subprocess
spec = json.loads(sys.argv[1])
def f(key, mode):
    p = spec.get(key)
    return open(p, mode) if p else subprocess.DEVNULL
fin, fout, ferr = f('stdin', 'rb'), f('stdout', 'wb'), f('stderr', 'wb')
poll = spec.get('poll')
hwm = 0
t0 = time.perf_counter_ns()
p = subprocess.Popen(spec['argv'], stdin=fin, stdout=fout, stderr=ferr, cwd=spec.get('cwd'), env=spec.get('env'))
if poll:
    path = '/proc/%d/status' % p.pid
    while True:
        try:
            with open(path, 'rb') as s:
                for line in s:
                    if line.startswith(b'VmHWM:'):
                        hwm = max(hwm, int(line.split()[1]))
                        break
        except OSError:
            pass
        if os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            break
        time.sleep(poll)
else:
    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
t1 = time.perf_counter_ns()
_, status, ru = os.wait4(p.pid, 0)
p.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({'code': p.returncode, 'wall_ns': t1 - t0, 'user_s': ru.ru_utime, 'sys_s': ru.ru_stime,
                  'tree_maxrss_kb': ru.ru_maxrss, 'hwm_kb': hwm if poll else None}))
`;

export const PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => existsSync(p)) ?? 'python3';

/**
 * Run argv once. opts: { stdin, stdout, stderr (paths; default /dev/null), cwd, env (the whole
 * environment; default: inherited), poll (bool) }.
 * Returns { code, ms, userS, sysS, treeMaxRssKb, hwmKb }.
 */
export function measure(argv, opts = {}) {
  const spec = {
    argv,
    stdin: opts.stdin ?? null,
    stdout: opts.stdout ?? null,
    stderr: opts.stderr ?? null,
    cwd: opts.cwd ?? null,
    env: opts.env ?? null,
    poll: opts.poll ? 0.002 : null,
  };
  const r = spawnSync(PYTHON, ['-c', PY, JSON.stringify(spec)], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`measuring helper failed: ${r.stderr || r.error}`);
  const j = JSON.parse(r.stdout);
  return {
    code: j.code,
    ms: j.wall_ns / 1e6,
    userS: j.user_s,
    sysS: j.sys_s,
    treeMaxRssKb: j.tree_maxrss_kb,
    hwmKb: j.hwm_kb,
  };
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function summarize(xs) {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}
