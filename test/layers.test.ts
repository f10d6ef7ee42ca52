// The layers of src/ (README, "Development"): the data's way through the program. A module may
// import its own layer and the ones below, never one above, and no import may lead back to
// where it started. Read from the sources, type-only imports included.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { expect, it } from 'vitest';
import { ROOT } from './helpers/cli.js';

const SRC = join(ROOT, 'src');

/** Lower first. The top-level modules (log, errors, progress) sit with sys/, at the bottom. */
const RANK: Record<string, number> = { sys: 0, '.': 0, packet: 1, codec: 2, queue: 3, outbox: 3, send: 4, run: 4, serve: 5, cli: 6 };

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : /\.(ts|cjs)$/.test(n) ? [p] : [];
  });
}

const layerOf = (file: string) => {
  const parts = relative(SRC, file).split('/');
  return parts.length === 1 ? '.' : parts[0]!;
};

const imports = new Map<string, string[]>();
for (const f of sources(SRC)) {
  const text = readFileSync(f, 'utf8');
  imports.set(
    f,
    [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)].map((m) => resolve(dirname(f), m[1]!).replace(/\.js$/, '.ts')),
  );
}

it('every layer of src/ is known', () => {
  const unknown = [...imports.keys()].map(layerOf).filter((l) => RANK[l] === undefined);
  expect([...new Set(unknown)]).toEqual([]);
});

it('imports point down: no module imports a layer above its own', () => {
  const up: string[] = [];
  for (const [from, tos] of imports) {
    for (const to of tos) if (RANK[layerOf(to)]! > RANK[layerOf(from)]!) up.push(`${relative(SRC, from)} -> ${relative(SRC, to)}`);
  }
  expect(up).toEqual([]);
});

it('no import leads back to where it started', () => {
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    path.push(f);
    for (const t of imports.get(f) ?? []) {
      if (state.get(t) === 'open') cycles.push(path.slice(path.indexOf(t)).map((x) => relative(SRC, x)).join(' -> '));
      else if (!state.has(t)) visit(t);
    }
    path.pop();
    state.set(f, 'done');
  };
  for (const f of imports.keys()) if (!state.has(f)) visit(f);
  expect(cycles).toEqual([]);
});
