#!/bin/bash
# Reproduction of an fspool bug found by the soak (spec/reliability.md, "Found"), since fixed
# (a file whose header could not be read is read again at the next pass); kept as a regression
# check: the watch runs job 1 and "nextseq = 2" follows. The bug: under queue-process --watch,
# a job file whose header could not be read ONCE (a decoder that failed transiently, or the
# fd-reuse race of fd-reuse-race.sh) is never read again while the watch runs: JobIndex.refresh()
# (src/run/processQueue.ts) reads only names it has not seen, and keeps the failed entry. The
# queue stalls at that seq ("seq 1 not found, and 1 unreadable job file(s) could hold it" at every
# rescan) until fspool is restarted, although the header cache (state-db.md) deliberately never
# caches a failure so that it is read again. A fresh run processes the job at once.
set -u
F=${FSPOOL:-$(cd "$(dirname "$0")/../.." && pwd)/bin/fspool}
D=$(mktemp -d /tmp/fspool-watchunread-XXXXXX)
cd "$D" || exit 1
"$F" queue-init -q q
echo hello | "$F" prepare -s - -i - > q/jobs/fspl-1.fspl
cat > decoder.sh <<'EOS'
# fails the first time only
if [ ! -e "$D/failed-once" ]; then : > "$D/failed-once"; echo "transient failure" >&2; exit 1; fi
exec cat
EOS
export D
echo "--- queue-process --watch --rescan 1, for 6 seconds:"
timeout 6 "$F" queue-process -q q --watch --rescan 1 -d "sh $D/decoder.sh" sh -- -c 'echo "RAN job $FSPL_SEQ"'
echo "--- exit $? (124: still waiting when timeout stopped it); nextseq = $(cat q/nextseq)"
echo "--- a fresh run:"
"$F" queue-process -q q -d "sh $D/decoder.sh" sh -- -c 'echo "RAN job $FSPL_SEQ"'
echo "--- nextseq = $(cat q/nextseq)"
rm -rf "$D"
