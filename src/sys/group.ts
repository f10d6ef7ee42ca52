// Receivers and decoders run in process groups of their own (spawned detached), so that a
// signal reaches a shell script's children too, not only the script.

/** Signal a whole process group; a group that is already gone is not an error. */
export function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
}
