#!/bin/bash
# Reproduction of an fspool issue found in issue 6 (spec/reliability.md, "Found"), FIXED in 9ab609d
# (as PID 1, fspool reaps the guardians it dismissed; since then there are no guardians: one
# spawner per fspool process starts every child as fspool's own, and fspool reaps them all);
# kept as a regression check: fixed, it reports 0 zombies. The issue: when fspool is PID 1 of
# its PID namespace (a container started without an init: `docker run IMAGE fspool queue-process
# --watch ...`), every job leaves a zombie. fspool-exec double-forks each receiver's guardian
# (native/fspool_exec.c) so that it is reparented to init, and here init is fspool, which never
# reaps it. A --watch service would eventually exhaust the container's pids limit, after which
# no receiver can start. (Under a real init, or systemd, they are reaped: no issue.)
# Needs root (unshare --pid).
set -u
F=${FSPOOL:-$(cd "$(dirname "$0")/../.." && pwd)/bin/fspool}
D=$(mktemp -d /tmp/fspool-pid1-XXXXXX)
cd "$D" || exit 1
"$F" queue-init -q q
echo 1 > seq
for i in $(seq 1 20); do echo x | "$F" prepare -s seq -i - > "q/jobs/fspl-$i.fspl"; done
unshare --fork --pid --mount-proc "$F" queue-process -q q --watch true 2>/dev/null &
U=$!
while [ "$(cat q/nextseq)" -le 20 ]; do sleep 0.2; done
sleep 1
P=$(pgrep -P $U)
echo "20 jobs run by fspool as PID 1 of a PID namespace (pid $P outside it)"
echo "its zombie children: $(ps --ppid "$P" -o stat=,comm= | grep -c '^Z')"
ps --ppid "$P" -o pid=,stat=,comm= | head -3
kill "$P"; wait $U 2>/dev/null
rm -rf "$D"
