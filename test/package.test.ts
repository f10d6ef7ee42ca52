// The npm package as a user gets it: `npm pack`, then a global install into an empty prefix on
// a PATH with no compiler, so that only the prebuilt binaries can make it work; then the
// installed fspool runs a real job through every native binary (fspool's addon and
// fspool-exec, zstd-napi's and better-sqlite3's addons), and `man fspool` finds its page.
import { existsSync, readdirSync, readFileSync, realpathSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runSync, tempDir } from './helpers/cli.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
const npmCli = realpathSync(runSync('sh', ['-c', 'command -v npm']).stdout.toString().trim());

/** A PATH of node, npm and a shell only: no make, no g++, no python3. */
function bareBin(): string {
  const bin = tempDir('fspool-pkg-bin-');
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync(npmCli, join(bin, 'npm'));
  symlinkSync('/bin/sh', join(bin, 'sh'));
  return bin;
}

function npm(args: string[], env: NodeJS.ProcessEnv, cwd = ROOT) {
  const r = runSync(process.execPath, [npmCli, ...args], { env, cwd, timeoutMs: 300_000 });
  expect(r.code, `npm ${args.join(' ')}:\n${r.stderr}`).toBe(0);
  return r;
}

describe('npm package', () => {
  let tarball = '';
  const bare: NodeJS.ProcessEnv = {};

  beforeAll(() => {
    const dest = tempDir('fspool-pack-');
    const r = npm(['pack', '--pack-destination', dest, '--silent'], process.env);
    tarball = join(dest, r.stdout.toString().trim().split('\n').at(-1)!);
    // npm's own settings (cache, registry) from the environment `npm test` gives, if any.
    for (const [k, v] of Object.entries(process.env)) if (k === 'HOME' || /^npm_config_(cache|registry|userconfig)$/i.test(k)) bare[k] = v;
    bare.PATH = bareBin();
  }, 300_000);

  function install(extra: string[] = []): string {
    const prefix = tempDir('fspool-prefix-');
    // --prefer-offline: openpgp, the one dependency, from npm's cache when it is there.
    npm(['install', '-g', tarball, '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', ...extra], bare, prefix);
    return prefix;
  }

  /** A real job through every native binary: zstd, the state database, the lock, fspool-exec. */
  function realJob(prefix: string): void {
    const fspool = join(prefix, 'bin/fspool');
    const dir = tempDir();
    const run = (args: string[], input?: Buffer) => {
      const r = runSync(fspool, args, { cwd: dir, input, env: { ...process.env, PATH: `${bare.PATH}:/usr/bin:/bin` } });
      expect(r.code, `fspool ${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r.stdout.toString();
    };
    expect(run(['--version'])).toBe(`fspool ${pkg.version} (Filespooler 1.2 compatible)\n`);
    run(['queue-init', '-q', 'q']);
    const packet = runSync(fspool, ['prepare', '-s', '-', '-i', '-', '--zstd'], { cwd: dir, input: 'hello from the package\n' });
    expect(packet.code, packet.stderr).toBe(0);
    expect(packet.stdout.subarray(0, 4).toString('hex')).toBe('28b52ffd'); // a zstd frame
    run(['queue-write', '-q', 'q'], packet.stdout);
    expect(run(['queue-ls', '-q', 'q'])).toMatch(/^1 +\S+ +fspl-[0-9a-f-]+\.fspl$/m);
    expect(existsSync(join(dir, 'q/fspool/state.db'))).toBe(true);
    expect(run(['queue-process', '-q', 'q', 'sh', '--', '-c', 'tr a-z A-Z'])).toBe('HELLO FROM THE PACKAGE\n');
    expect(run(['queue-history', '-q', 'q'])).toMatch(/success/);
  }

  it('installs globally with no compiler, from the prebuilt binaries, and runs a real job', () => {
    const prefix = install();
    const installed = join(prefix, 'lib/node_modules/fspool');
    // Nothing was compiled, and no native dependency was installed: the prebuilt binaries run.
    expect(existsSync(join(installed, 'build'))).toBe(false);
    expect(readdirSync(join(installed, 'node_modules'))).toEqual(['openpgp']);
    realJob(prefix);

    // fspool(1), where `man` looks for it once the prefix's bin is on PATH (as npm sets it up).
    const env = { ...process.env, MANPATH: join(prefix, 'share/man'), MANWIDTH: '80' };
    const where = runSync('man', ['-w', 'fspool'], { env });
    expect(where.code, where.stderr).toBe(0);
    expect(realpathSync(where.stdout.toString().trim())).toBe(realpathSync(join(installed, 'dist/fspool.1')));
    const page = runSync('man', ['--warnings', 'fspool'], { env: { ...env, MAN_KEEP_FORMATTING: '' } });
    expect(page.code).toBe(0);
    expect(page.stderr).toBe(''); // groff's warnings: the page is well-formed roff
    const text = page.stdout.toString();
    expect(text).toMatch(/^NAME\n +fspool - ordered file spooler/m);
    for (const cmd of ['queue-process', 'prepare', 'stdin-process', 'queue-status']) expect(text).toContain(`fspool ${cmd}`);
    expect(text).toContain('--on-error');

    // The full license, then the note on Filespooler.
    const license = runSync(join(prefix, 'bin/fspool'), ['show-license']).stdout.toString();
    expect(license.startsWith(readFileSync(join(ROOT, 'LICENSE'), 'utf8'))).toBe(true);
    expect(license).toMatch(/shares no code with it/);
  }, 300_000);

  it('works when npm runs no install script (--ignore-scripts)', () => {
    realJob(install(['--ignore-scripts']));
  }, 300_000);
});
