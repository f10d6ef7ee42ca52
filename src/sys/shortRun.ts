// A command that reads a queue once and ends (a listing, a status) runs its loops over the
// jobs once, for a fraction of a second. V8's optimizing compiler then costs more than it
// saves: queue-ls of 10,000 jobs spent as much CPU with it as without, and 4-7 MB more memory
// (the compiler's code pages and its zones, on a thread of their own; bench/README.md). Such a
// command turns it off for its process; the baseline compiler still compiles what runs. The
// commands that move payloads (processing, prepare, queue-payload) keep it: their loops run
// for minutes.
//
// V8 reads the flag each time it considers optimizing a function, so setting it at run time
// takes effect at once. Should a Node release refuse it, the command only runs as before.
export function shortRun(): void {
  try {
    (process.getBuiltinModule('node:v8') as typeof import('node:v8')).setFlagsFromString('--no-opt');
  } catch {
    /* the optimizing compiler stays on: slower to start, nothing else */
  }
}
