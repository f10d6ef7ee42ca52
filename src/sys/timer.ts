// Timers for durations the user gives: any number of seconds, however large. Node's setTimeout
// takes at most 2^31-1 ms (24.8 days) and silently fires after 1 ms beyond that, which turned a
// 30-day --timeout into killing every receiver at once.

const MAX_DELAY_MS = 2 ** 31 - 1;

export interface Timer {
  clear(): void;
}

/** Call `fn` once, `seconds` from now, for any finite `seconds` >= 0; never before this returns. */
export function after(seconds: number, fn: () => void): Timer {
  const due = Date.now() + seconds * 1000;
  let t: NodeJS.Timeout;
  const arm = () => {
    const left = Math.max(0, due - Date.now());
    // Long waits go in steps Node can take, each re-measured against the clock.
    t = setTimeout(left > MAX_DELAY_MS ? arm : fn, Math.min(left, MAX_DELAY_MS));
  };
  arm();
  return { clear: () => clearTimeout(t) };
}

/** A promise that resolves `seconds` from now (any finite `seconds`). */
export function sleepSeconds(seconds: number): Promise<void> {
  return new Promise((resolve) => after(seconds, resolve));
}
