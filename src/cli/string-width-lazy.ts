// string-width, loaded on first call. The bundle maps yargs' and cliui's imports of
// 'string-width' here (scripts/build.mjs): its modules compile Unicode-property regular
// expressions when imported, ~10 ms of start-up, and yargs needs them only to lay out help
// text. esbuild turns this require() of the real module into a lazy initialiser.
declare const require: (id: string) => { default: (s: string, options?: object) => number };

let real: ((s: string, options?: object) => number) | undefined;

export default function stringWidth(s: string, options?: object): number {
  real ??= require('string-width').default;
  return real(s, options);
}
