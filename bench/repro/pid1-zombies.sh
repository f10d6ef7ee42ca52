#!/bin/bash
# Regression check for a defect found by the soak (spec/reliability.md, "Found"): when fspool is
# PID 1 of its PID namespace (a container started without an init: `docker run IMAGE fspool
# queue-process --watch ...`), every process orphaned in the namespace is its to reap. Were one
# left unreaped, each job would leave a zombie, and a --watch service would in time exhaust the
# container's pids limit, after which no receiver can start. fspool's spawner starts every child
# as fspool's own, and fspool reaps them all: this reports 0 zombies. (Under a real init, or
# systemd, orphans are reaped by it.)
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
