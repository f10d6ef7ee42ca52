// fspool(1), made by the build (scripts/build.mjs) from the model --help is laid out from
// (helpModel: what each subcommand's builder declares), in roff. Nothing here is written by
// hand but the page's frame: name, see also, license.
import { type CommandHelp, hints, type OptionHelp, type ProgramHelp } from './help.js';
import { helpModel } from './main.js';

/** Text for roff: backslashes escaped, no line taken for a request, minus signs for hyphens. */
function esc(text: string): string {
  const body = text.replace(/\\/g, '\\e').replace(/-/g, '\\-');
  return /^[.']/.test(body) ? `\\&${body}` : body;
}

/** Text as the argument of a macro (.B, .I, .SS), where a double quote would group words. */
function arg(text: string): string {
  return esc(text).replace(/"/g, '\\(dq');
}

/** `-q, --queuedir DIR` in bold, its text below. */
function option(o: OptionHelp): string[] {
  const short = o.aliases.find((a) => a.length === 1);
  const names = `${short ? `-${short}, ` : ''}--${o.key}`;
  return ['.TP', o.value ? `.BI "${arg(names)} " ${arg(o.value)}` : `.B ${arg(names)}`, esc(`${o.describe} ${hints(o)}`.trim())];
}

/** A list under a bold heading, in the man(7) way: .SS for a subcommand's parts. */
function part(heading: string, lines: string[]): string[] {
  return lines.length > 0 ? ['.PP', `.I ${esc(heading)}`, '.RS 4', ...lines, '.RE'] : [];
}

/** An example is a command line to copy: in bold, whole on its line; its text below. */
function example(e: { command: string; describe: string }): string[] {
  return ['.TP', '.nf', `.B ${arg(e.command)}`, '.fi', e.describe ? esc(e.describe) : '.br'];
}

function command(c: CommandHelp): string[] {
  return [
    `.SS ${arg(c.name)}`,
    '.nf',
    `.B ${arg(c.usage)}`,
    '.fi',
    '.PP',
    esc(c.describe),
    ...part(
      'Arguments',
      c.positionals.flatMap((p) => ['.TP', `.I ${arg(p.value ?? p.key)}`, esc(`${p.describe}${p.required ? ' [required]' : ''}`)]),
    ),
    ...part('Options', c.options.flatMap(option)),
    ...part('Examples', c.examples.flatMap(example)),
  ];
}

export function renderManPage(model: ProgramHelp, version: string): string {
  const page = [
    `.TH FSPOOL 1 "" "fspool ${esc(version)}" "User Commands"`,
    '.SH NAME',
    'fspool \\- ordered file spooler: Filespooler 1.2 compatible packets, queues and strictly sequential processing',
    '.SH SYNOPSIS',
    `.B ${arg(model.usage)}`,
    '.SH DESCRIPTION',
    esc(model.describe),
    '.PP',
    'The subcommands are listed below;',
    '.B fspool help',
    '.I SUBCOMMAND',
    'and',
    '.B fspool',
    '.I SUBCOMMAND',
    '\\-\\-help print the same.',
    '.SH OPTIONS',
    'Every subcommand takes these.',
    ...model.globals.flatMap(option),
    '.SH SUBCOMMANDS',
    ...model.commands.flatMap(command),
    '.SH EXIT STATUS',
    esc(model.epilog.replace(/^Exit status: /, '')),
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
  ];
  return `${page.join('\n')}\n`;
}

export async function manPage(version: string): Promise<string> {
  return renderManPage(await helpModel(), version);
}
