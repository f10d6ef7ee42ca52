#!/usr/bin/env bash
# A real run of fspool's main job on a throwaway queue: a sender prepares packets carrying tar
# streams, they arrive out of order, and queue-process applies them strictly in sequence.
set -euo pipefail
fspool="$(cd "$(dirname "$0")/.." && pwd)/bin/fspool"
work=$(mktemp -d "${TMPDIR:-/tmp}/fspool-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "receiver: create a queue"
"$fspool" queue-init -q queue
ls -l queue

say "sender: four snapshots of a directory, each a packet with a tar payload"
mkdir -p site outbox
for v in 1 2 3 4; do
  echo "version $v of the page, $(date -u +%T)" > site/index.html
  echo "change $v" >> site/CHANGES
  tar -C site -cf - . | FSPL_SET_VERSION=$v "$fspool" prepare -s sender.seq -i - > "outbox/packet-$v.fspl"
done
ls -l outbox
echo "next seq at the sender: $("$fspool" prepare-get-next -s sender.seq)"

receive='mkdir -p ../live && tar -C ../live -xf - && echo "applied seq $FSPL_SEQ (version $FSPL_SET_VERSION)" >> ../applied.log'

say "transport: packets 3 and 1 arrive first (3 is early)"
"$fspool" queue-write -q queue < outbox/packet-3.fspl
"$fspool" queue-write -q queue < outbox/packet-1.fspl
"$fspool" queue-ls -q queue

say "receiver: process. Seq 1 runs; seq 3 must wait for 2"
(cd queue && "$fspool" queue-process -q . sh -- -c "$receive")
echo "nextseq is now $(cat queue/nextseq)"

say "transport: 4 arrives, and 2 arrives twice (a duplicate delivery)"
"$fspool" queue-write -q queue < outbox/packet-4.fspl
"$fspool" queue-write -q queue < outbox/packet-2.fspl
"$fspool" queue-write -q queue < outbox/packet-2.fspl
"$fspool" queue-ls -q queue

say "receiver: process again. 2, 3, 4 run in order; the identical duplicate runs once"
(cd queue && "$fspool" queue-process -q . sh -- -c "$receive")

say "result"
cat applied.log
echo "--- live/index.html:"; cat live/index.html
echo "--- live/CHANGES:"; cat live/CHANGES
echo "--- jobs left in the queue: $(ls queue/jobs | wc -l); nextseq: $(cat queue/nextseq)"
[ "$(wc -l < applied.log)" -eq 4 ] && grep -q 'version 4' live/index.html && echo "demo OK"
