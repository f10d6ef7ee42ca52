// yargs checks the arguments of each of its own API calls (argsert: are the types of what a
// program passes to .option(), .command(), ... those documented?), parsing a usage string for
// every call: ~10 ms of each fspool start, a tenth of it (bench/README.md, "Cold start"). The
// calls it checks are fspool's command definitions, fixed in the source and run by every test
// of the CLI, never user input. The bundle maps yargs' imports of its argsert.js here
// (scripts/build.mjs).
export function argsert(): void {}
