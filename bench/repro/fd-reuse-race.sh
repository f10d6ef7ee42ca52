#!/bin/bash
# Reproduction of an fspool bug found by the soak (spec/reliability.md, "Found"), since fixed
# (the stream reader owns a descriptor of its own and reads by position); kept as a regression
# check: every scenario reports 0.
#
# Reading the header of a zstd or OpenPGP packet (a queue scan: queue-ls, queue-status, and
# queue-process whenever it looks at jobs/) streams the file through fdChunks() (src/sys/fd.ts),
# whose fs.read() calls run in libuv's thread pool with position null (the file offset). When
# the header has been found, Queue.readEncodedHeader() (src/queue/queue.ts) aborts the stream and
# closes the fd at once, while a read may still be queued. The next open() gets the same fd
# number, and the stray read then consumes up to 1 MiB from THAT file's offset.
#
#   A: queue-ls of 150 good zstd packets (no header cache): some are reported unreadable.
#   B: zstd packets arriving one at a time under `queue-process --watch --on-error delete`:
#      the due job is scanned, then opened to run: "empty input: no packet header", and the good
#      packet is deleted.
#   C: a raw packet arriving together with zstd packets: when a stray read hits it, its
#      200,000-byte payload reaches the receiver short or EMPTY, the receiver exits 0, the job is
#      journaled a success (bytes 200000) and deleted: silent loss. Timing-dependent (seen 15
#      times in 60 under load, 0 in other runs).
#
# Usage: bash bench/repro/fd-reuse-race.sh [A|B|C]...   (all three by default; ~1-2 min; KEEP=1 keeps the files)
set -u
F=${FSPOOL:-$(cd "$(dirname "$0")/../.." && pwd)/bin/fspool}
D=$(mktemp -d /tmp/fspool-fdrace-XXXXXX)
cd "$D" || exit 1
[ -n "${KEEP:-}" ] && echo "in $D (kept)" || trap 'cd /; rm -rf "$D"' EXIT

scenario_A() {
  "$F" queue-init -q a
  for i in $(seq 1 150); do head -c $((RANDOM * 4)) /dev/urandom | "$F" prepare -s a.seq -i - --zstd > "a/jobs/fspl-$i.fspl"; done
  local bad=0
  for it in $(seq 1 10); do
    rm -rf a/fspool
    n=$("$F" queue-ls -q a --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["unreadable"]))')
    echo "A: listing $it: $n of 150 good packets reported unreadable"
    [ "$n" -gt 0 ] && bad=$((bad + 1))
  done
  echo "A: $bad of 10 listings reported good packets as unreadable"
}

scenario_B() {
  local N=150
  "$F" queue-init -q b
  for i in $(seq 1 $N); do head -c 1000 /dev/urandom | "$F" prepare -s b.seq -i - --zstd > "b$i.fspl"; done
  "$F" queue-process -q b --watch --rescan 1 --on-error delete sh -- -c 'echo "$FSPL_SEQ $(wc -c)" >> b.applied' 2> b.err &
  local P=$!
  for i in $(seq 1 $N); do "$F" queue-write -q b < "b$i.fspl"; done
  while [ "$(cat b/nextseq)" -le $N ]; do sleep 0.5; done
  kill $P; wait $P
  echo "B: $(wc -l < b.applied) of $N good packets applied; $(grep -c 'failed: empty input' b.err) failed with 'empty input: no packet header' and were deleted"
}

scenario_C() {
  local N=40 Z=6
  "$F" queue-init -q c
  head -c 200000 /dev/urandom > c.big
  # Batches: one raw packet (200,000-byte payload), then Z small zstd packets with the next seqs.
  for i in $(seq 1 $N); do
    "$F" prepare -s c.seq -i c.big > "c-$i-raw.fspl"
    for k in $(seq 1 $Z); do head -c 1000 /dev/urandom | "$F" prepare -s c.seq -i - --zstd > "c-$i-z$k.fspl"; done
  done
  "$F" queue-process -q c --watch --rescan 1 sh -- -c 'echo "$FSPL_SEQ $FSPL_JOB_FILENAME $(cat | wc -c)" >> c.applied' 2> c.err &
  local P=$!
  mkdir c/stage
  for i in $(seq 1 $N); do
    for f in c-$i-*.fspl; do cp "$f" "c/stage/fspl-$f"; done
    mv c/stage/fspl-c-$i-*.fspl c/jobs/   # a batch arrives at once: its zstd headers are scanned, then the raw job runs
    sleep 0.3
  done
  while [ "$(cat c/nextseq)" -le $((N * (Z + 1))) ]; do sleep 0.5; done
  kill $P; wait $P
  echo "C: raw jobs whose 200000-byte payload reached the receiver short, journaled as successes: $(awk '$2 ~ /raw/ && $3 != 200000' c.applied | wc -l) of $N"
  awk '$2 ~ /raw/ && $3 != 200000 { print "C:   seq " $1 ": the receiver got " $3 " bytes" }' c.applied | head -3
  echo "C: good zstd packets that failed to decode when run: $(grep -c 'failed: empty input' c.err)"
}

for s in "${@:-A B C}"; do for x in $s; do "scenario_$x"; done; done
