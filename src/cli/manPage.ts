// fspool(1), made by the build from the yargs definitions that make --help (main.ts): the help
// of the program and of each command, unwrapped, laid out in roff. Nothing here is written by
// hand but the page's frame (name, see also, license).
import { commandLine } from './main.js';

/** What `fspool ARGS --help` prints, without wrapping (one line per option and example). */
export async function helpText(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    commandLine(args)
      .wrap(null)
      .exitProcess(false)
      .parse(args, {}, (err, _argv, output) => (err ? reject(err) : resolve(output)));
  });
}

interface Section {
  /** "Options", "Examples"…; '' for the text before the first heading. */
  heading: string;
  lines: string[];
}

/** yargs' help: paragraphs, then "Heading:" lines each followed by indented entries. */
function sections(help: string): Section[] {
  const out: Section[] = [{ heading: '', lines: [] }];
  for (const line of help.split('\n')) {
    const heading = /^(\S[^:]*):$/.exec(line);
    if (heading) out.push({ heading: heading[1]!, lines: [] });
    else out.at(-1)!.lines.push(line);
  }
  return out;
}

/** Text for roff: backslashes escaped, no line taken for a request, hyphens kept as hyphens. */
function esc(text: string): string {
  const body = text.replace(/\\/g, '\\e').replace(/-/g, '\\-');
  return /^[.']/.test(body) ? `\\&${body}` : body;
}

/** An entry of a help section: "  -q, --queuedir  The path…  [string]" → term and text. */
function entry(line: string): [string, string] | undefined {
  const m = /^ {2,}(\S(?:.*?\S)?)(?: {2,}(.*\S))?\s*$/.exec(line);
  return m ? [m[1]!, m[2] ?? ''] : undefined;
}

/** Indented entries as tagged paragraphs (but those in `skip`); other lines as paragraphs of text. */
function body(s: Section, example: boolean, skip: Set<string>): string[] {
  const out: string[] = [];
  let para: string[] = [];
  const flush = () => {
    if (para.length > 0) out.push('.PP', ...para.map(esc));
    para = [];
  };
  for (const line of s.lines) {
    const e = line.startsWith('  ') ? entry(line) : undefined;
    if (e && skip.has(e[0])) continue;
    if (e) {
      flush();
      // An example is a command line to copy: in bold, on one line, never filled.
      if (example) out.push('.TP', '.nf', `.B ${esc(e[0])}`, '.fi', e[1] ? esc(e[1]) : '.br');
      else out.push('.TP', `.B ${esc(e[0])}`, e[1] ? esc(e[1]) : '.br');
    } else if (line.trim() === '') flush();
    else para.push(line.trim());
  }
  flush();
  return out;
}

/**
 * One command's help (or the program's), its usage line as the title; the entries in `skip`
 * (the program's own options, which every command's help repeats) are left out.
 */
function commandSection(help: string, title: (usage: string) => string[], skip = new Set<string>()): string[] {
  const [head, ...rest] = sections(help.trimEnd());
  const lines = head!.lines.filter((l) => l.trim() !== '');
  const out = [...title(lines[0] ?? ''), ...body({ heading: '', lines: ['', ...lines.slice(1)] }, false, skip)];
  for (const s of rest) {
    const b = body(s, s.heading === 'Examples', skip);
    if (b.length > 0) out.push('.PP', `.I ${esc(s.heading)}`, '.RS 4', ...b, '.RE');
  }
  return out;
}

/** The terms of the program's own options ("-l, --log-level"…). */
function globalOptions(help: string): Set<string> {
  const opts = sections(help).find((s) => s.heading === 'Options');
  return new Set(opts?.lines.flatMap((l) => entry(l)?.[0] ?? []));
}

/** The names of the commands, from the program's "Commands:" section. */
function commandNames(help: string): string[] {
  const cmds = sections(help).find((s) => s.heading === 'Commands');
  if (!cmds) throw new Error('fspool --help has no "Commands:" section to make the man page from');
  return cmds.lines.flatMap((l) => {
    const e = entry(l);
    return e ? [e[0].split(/\s+/)[1]!] : [];
  });
}

export async function manPage(version: string): Promise<string> {
  const top = await helpText(['--help']);
  const names = commandNames(top);
  const global = globalOptions(top);
  const page = [
    `.TH FSPOOL 1 "" "fspool ${esc(version)}" "User Commands"`,
    '.SH NAME',
    'fspool \\- ordered file spooler: Filespooler 1.2 compatible packets, queues and strictly sequential processing',
    '.SH SYNOPSIS',
    ...commandSection(top, (usage) => [`.B ${esc(usage)}`, '.SH DESCRIPTION']),
    '.SH COMMANDS',
    'Each command has the options of the program (\\-l, \\-\\-quiet, \\-h, \\-V) besides its own;',
    '.B fspool',
    '.I command',
    '\\-\\-help prints the same text.',
  ];
  for (const name of names) {
    const help = await helpText([name, '--help']);
    if (!help.startsWith(`fspool ${name}`)) {
      // yargs' own completion command prints its script for --help: it is in the list above only.
      if (name === 'completion') continue;
      throw new Error(`fspool ${name} --help printed no usage line to make the man page from:\n${help}`);
    }
    page.push(...commandSection(help, (usage) => [`.SS ${esc(usage)}`], global));
  }
  page.push(
    '.SH SEE ALSO',
    '.BR fspl (1).',
    'README.md (set-up, examples, transports, differences from fspl) and spec/ (the packet format,',
    'queue layout, processing, locking and JSON output in detail), in the directory fspool is',
    'installed in:',
    '.B $(npm root \\-g)/fspool',
    'after a global install.',
    '.SH LICENSE',
    'MIT;',
    '.B fspool show\\-license',
    'prints it.',
  );
  return `${page.join('\n')}\n`;
}
