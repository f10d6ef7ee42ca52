// The two functions of node:assert that yargs calls (for its own invariants). The bundle maps
// 'assert' here (scripts/build.mjs): loading node:assert costs ~10 ms of start-up, a tenth of
// fspool's whole budget.
export class AssertionError extends Error {
  override name = 'AssertionError';
}

export function strictEqual(actual: unknown, expected: unknown, message?: string): void {
  if (!Object.is(actual, expected)) throw new AssertionError(message ?? `expected ${String(actual)} to be ${String(expected)}`);
}

export function notStrictEqual(actual: unknown, expected: unknown, message?: string): void {
  if (Object.is(actual, expected)) throw new AssertionError(message ?? `expected ${String(actual)} not to be ${String(expected)}`);
}
