/**
 * `npm run report -- <report folder>`: the results of one main-job report,
 * regenerated into `docs/results/` without retraining anything:
 *
 *   docs/results/README.md   what produced them (command, commit, dataset, profile, machine, wall time per
 *                            notebook), the headline table, the findings of notebook 08, what the stages
 *                            the headline rests on showed (STAGE_OUTPUTS), the crossover study, the figures
 *   docs/results/*.md|csv    the evaluation's tables, copied from <report>/runs/eval-<profile>/, and the
 *                            study's, copied from its study folder
 *   docs/results/fig-*.png   key plotly figures of notebooks 03, 06, 08 and 09, rendered from their HTML
 *                            exports by headless Chromium (the browser test's; ORDERHEAD_CHROMIUM)
 *
 * The crossover study (notebook 09, `npm run study`) runs apart from the main
 * job: it is read from `study` (a report folder holding runs/study-<profile>
 * and the executed 09_regime_study), by default the main job's own report.
 *
 * and the README's results section (between `<!-- results:begin -->` and
 * `<!-- results:end -->`) is replaced by the headline table and a link. Every
 * file is written atomically; a report without its headline is refused,
 * naming the notebook that makes it.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic } from '../runtime/atomic';
import { ensure, OrderHeadError } from '../runtime/errors';
import { ProfileName } from '../runtime/profile';
import { PROFILE_DEFAULT_DATA } from '../data/profile-data';
import { checkoutCommit } from '../runtime/paths';
import { readCell } from '../study/run';

const BEGIN = '<!-- results:begin -->', END = '<!-- results:end -->';

interface NotebookRun { name: string; seconds: number; start: string }

/** Wall time of an executed notebook: first cell's start to last cell's end (nbclient's execution timestamps). */
function notebookRun(file: string): NotebookRun | undefined {
  const nb = JSON.parse(fs.readFileSync(file, 'utf8')) as { cells: { metadata?: { execution?: Record<string, string> } }[] };
  const times = nb.cells.flatMap((c) => Object.values(c.metadata?.execution ?? {})).map((t) => Date.parse(t)).filter(Number.isFinite);
  if (!times.length) return undefined;
  const lo = Math.min(...times), hi = Math.max(...times);
  return { name: path.basename(file, '.ipynb'), seconds: (hi - lo) / 1000, start: new Date(lo).toISOString() };
}

type ExecutedCell = { id?: string; outputs?: { data?: Record<string, string | string[]> }[] };
const readCells = (file: string) => (JSON.parse(fs.readFileSync(file, 'utf8')) as { cells: ExecutedCell[] }).cells;
const joined = (v: string | string[]) => (Array.isArray(v) ? v.join('') : v);

/** The markdown the last cell of an executed notebook displayed (its "What this run showed"). */
function lastMarkdownOutput(file: string): string | undefined {
  const cells = readCells(file);
  for (let i = cells.length - 1; i >= 0; i--) {
    for (const o of cells[i].outputs ?? []) {
      const md = o.data?.['text/markdown'];
      if (md) return joined(md);
    }
  }
  return undefined;
}

/** The tables (HTML) and text (markdown) one cell of an executed notebook displayed, in order; progress bars and figures left out. */
function cellDisplays(file: string, id: string): string[] {
  const cell = readCells(file).find((c) => c.id === id);
  return (cell?.outputs ?? []).flatMap((o) => {
    const md = o.data?.['text/markdown'], html = o.data?.['text/html'];
    if (md) return [joined(md).trim()];
    return html && /^<table/.test(joined(html).trim()) ? [joined(html).trim()] : [];
  });
}

/** What the stages the headline rests on showed: a notebook's cell, its section title in docs/results. */
export const STAGE_OUTPUTS: readonly { notebook: string; cell: string; title: string }[] = [
  { notebook: '02_stage1_backbone', cell: 'c02val', title: 'The seeds and the checkpoints selected on validation (notebook 02)' },
  { notebook: '03_stage2_oracle', cell: 'c13q', title: 'Where the labels fall, against the count prior (notebook 03)' },
  { notebook: '04_stage3_orderhead', cell: 'c12-on-policy-run', title: 'The planner on its own states, before and after the on-policy rounds (notebook 04)' },
];

function machine(): string {
  const cpu = /model name\s*:\s*(.+)/.exec(fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '')?.[1] ?? os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} cores (${cpu.trim()}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.type()} ${os.release()}, Node ${process.versions.node}`;
}

/** Render the plotly figures of an HTML export to PNG files, one per figure; returns the files written. */
async function renderFigures(html: string, outDir: string, prefix: string, pick: (title: string) => boolean): Promise<{ file: string; title: string }[]> {
  const { chromium } = await import('playwright-core');
  const exe = process.env.ORDERHEAD_CHROMIUM || '/usr/bin/chromium';
  ensure(fs.existsSync(exe), `no Chromium at ${exe}`, 'npm run report (figures)', 'install it (apt-get install chromium; scripts/setup.sh does) or set ORDERHEAD_CHROMIUM');
  const browser = await chromium.launch({ executablePath: exe, headless: true, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
  const out: { file: string; title: string }[] = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    await page.goto(`file://${path.resolve(html)}`, { waitUntil: 'load', timeout: 120_000 });
    await page.waitForFunction(() => document.querySelectorAll('.js-plotly-plot').length > 0, undefined, { timeout: 60_000 }).catch(() => undefined);
    const plots = await page.$$('.js-plotly-plot');
    let k = 0;
    for (const el of plots) {
      const title = (await el.evaluate((e) => e.querySelector('.gtitle')?.textContent ?? '')) || `figure ${k + 1}`;
      if (!pick(title)) continue;
      const file = path.join(outDir, `${prefix}-${String(++k).padStart(2, '0')}.png`);
      const tmp = `${file}.tmp-${process.pid}.png`;
      await el.screenshot({ path: tmp });
      fs.renameSync(tmp, file);
      out.push({ file, title });
    }
  } finally {
    await browser.close();
  }
  return out;
}

export interface ResultsOptions {
  /** The report folder of a main job (reports/<profile>-<time>/). */
  report: string;
  /** The repository (docs/results and README.md are written there). */
  repo: string;
  /** Skip the PNG figures (no Chromium). */
  noFigures?: boolean;
  /** The report folder holding the crossover study (runs/study-<profile>, 09_regime_study); default `report`. */
  study?: string;
}

/** Regenerate docs/results from a report folder; returns the files written. */
export async function writeResults(o: ResultsOptions): Promise<string[]> {
  const report = path.resolve(o.report);
  ensure(fs.existsSync(report), 'no such report folder', report, 'pass the folder scripts/main.sh printed (reports/<profile>-<time>/)');
  const evalDirs = fs.existsSync(path.join(report, 'runs')) ? fs.readdirSync(path.join(report, 'runs')).filter((d) => d.startsWith('eval-')) : [];
  ensure(evalDirs.length === 1, `found ${evalDirs.length} evaluation folders under runs/`, report, 'run notebooks/08_evaluation.ipynb on this report first (scripts/run-notebooks.sh --out <report> --only 08)');
  const evalDir = path.join(report, 'runs', evalDirs[0]);
  const profile = evalDirs[0].slice('eval-'.length);
  const headline = path.join(evalDir, 'eval-headline.md');
  if (!fs.existsSync(headline)) throw new OrderHeadError('the report has no headline table', headline, 'rerun notebooks/08_evaluation.ipynb on this report (it writes eval-headline.md)');
  const out = path.join(o.repo, 'docs', 'results');
  fs.mkdirSync(out, { recursive: true });
  const written: string[] = [];
  const put = (name: string, text: string) => { const f = path.join(out, name); writeFileAtomic(f, text); written.push(f); };
  for (const f of fs.readdirSync(evalDir).filter((f) => /^eval-.*\.(md|csv)$/.test(f))) put(f, fs.readFileSync(path.join(evalDir, f), 'utf8'));
  const runs = fs.readdirSync(report).filter((f) => /^\d\d_.*\.ipynb$/.test(f)).sort().map((f) => notebookRun(path.join(report, f))).filter((r): r is NotebookRun => !!r);
  const total = runs.reduce((a, r) => a + r.seconds, 0);
  const nb08 = path.join(report, '08_evaluation.ipynb');
  const findings = fs.existsSync(nb08) ? lastMarkdownOutput(nb08) : undefined;
  const stages = STAGE_OUTPUTS.flatMap((s) => {
    const file = path.join(report, `${s.notebook}.ipynb`);
    const shown = fs.existsSync(file) ? cellDisplays(file, s.cell) : [];
    return shown.length ? [`### ${s.title}`, '', ...shown.flatMap((x) => [x, ''])] : [];
  });
  const study = studySection(path.resolve(o.study ?? o.report), profile, o.repo, put);
  const figures: { file: string; title: string }[] = [];
  if (!o.noFigures) {
    for (const [dir, nb, prefix, pick] of [
      [report, '03_stage2_oracle', 'fig-03', (t: string) => /position/i.test(t)],
      [report, '06_stage5_joint_tuning', 'fig-06', (t: string) => /Mean position/.test(t)],
      [report, '08_evaluation', 'fig-08', (t: string) => /Δ NLL against|FID|recogniz|remaining|future/i.test(t)],
      [study?.report, '09_regime_study', 'fig-09', (t: string) => /Δ NLL/.test(t)],
    ] as const) {
      const html = dir && path.join(dir, `${nb}.html`);
      if (html && fs.existsSync(html)) figures.push(...await renderFigures(html, out, prefix, pick));
    }
    written.push(...figures.map((f) => f.file));
  }
  const state = reportState(report);
  const commits = reportCommits(state, runs.map((r) => r.name));
  const commit = commits.length ? `${commits.map((c) => `\`${c}\``).join(', ')} (the commit${commits.length > 1 ? 's' : ''} the notebooks ran at, from report-state.json)`
    : `\`${checkoutCommit(o.repo)}\` (the checkout npm run report ran in: the report does not record its own)`;
  const data = reportData(state, profile as ProfileName);
  const dataCommand = data === PROFILE_DEFAULT_DATA[profile as ProfileName] ? '' : `ORDERHEAD_DATA=${data} `;
  const head = fs.readFileSync(headline, 'utf8');
  const md = [
    `# Results of the latest ${profile} run`,
    '',
    `Regenerated by \`npm run report -- ${path.relative(o.repo, report) || report}\` from the report folder of one main job; nothing here is typed by hand.`,
    '',
    '| | |', '|---|---|',
    `| command | \`${dataCommand}ORDERHEAD_PROFILE=${profile} bash scripts/main.sh\` (notebooks 00-08, headless) |`,
    `| commit | ${commit} |`,
    `| profile | ${profile} |`,
    `| dataset | ${data} (ORDERHEAD_DATA of the main job, from its report-state.json) |`,
    `| machine | ${machine()} |`,
    `| started | ${runs[0]?.start ?? 'unknown'} |`,
    `| wall time | ${(total / 60).toFixed(1)} min over ${runs.length} notebooks: ${runs.map((r) => `${r.name.slice(0, 2)} ${Math.round(r.seconds)} s`).join(', ')} |`,
    '',
    head.trim(),
    '',
    '## What the run showed (notebook 08)',
    '',
    findings?.trim() ?? '(notebook 08 has no findings output)',
    '',
    ...(stages.length ? ['## What the stages under it showed', '', ...stages] : []),
    ...(study ? study.lines : []),
    ...(figures.length ? ['## Figures', '', ...figures.flatMap((f) => [`**${f.title}**`, '', `![${f.title}](${path.basename(f.file)})`, ''])] : []),
    '## Tables', '',
    ...fs.readdirSync(evalDir).filter((f) => /^eval-.*\.md$/.test(f)).map((f) => `- [${f}](${f})`),
    ...(study ? study.tables.map((f) => `- [${f}](${f})`) : []),
    '',
  ].join('\n');
  put('README.md', md);
  const readme = path.join(o.repo, 'README.md');
  const text = fs.readFileSync(readme, 'utf8');
  if (text.includes(BEGIN) && text.includes(END)) {
    const section = `${BEGIN}\n${head.trim()}\n\nFrom the default run of ${runs[0]?.start?.slice(0, 10) ?? 'unknown date'} (${(total / 60).toFixed(0)} min on ${os.cpus().length} cores); findings, figures and every table: [docs/results/](docs/results/README.md).\n${END}`;
    writeFileAtomic(readme, text.slice(0, text.indexOf(BEGIN)) + section + text.slice(text.indexOf(END) + END.length));
    written.push(readme);
  }
  return written;
}

/**
 * The crossover study's section, from the report folder holding it: its
 * findings (notebook 09's last output), its tables (copied), and how long its
 * cells took (each cell.json's seconds: the wall time of the call that
 * finished it; a cell resumed after a kill, one whose arms' manifests log
 * more than one start, counts only that call and is marked). Undefined when
 * the folder has no study.
 */
function studySection(studyReport: string, profile: string, repo: string, put: (name: string, text: string) => void):
  { report: string; lines: string[]; tables: string[] } | undefined {
  const dir = path.join(studyReport, 'runs', `study-${profile}`);
  if (!fs.existsSync(path.join(dir, 'study.json'))) return undefined;
  const tables = fs.readdirSync(dir).filter((f) => /^study.*\.(md|csv)$/.test(f));
  for (const f of tables) put(f, fs.readFileSync(path.join(dir, f), 'utf8'));
  const starts = (arm: string) => {
    try {
      return (JSON.parse(fs.readFileSync(path.join(arm, 'manifest.json'), 'utf8')) as { starts?: unknown[] }).starts?.length ?? 0;
    } catch {
      return 0; // no manifest: an arm that never started
    }
  };
  const cells = fs.readdirSync(dir).map((d) => path.join(dir, d)).flatMap((d) => {
    const cell = fs.statSync(d).isDirectory() ? readCell(d) : undefined;
    return cell ? [{ ...cell, resumed: fs.readdirSync(d).some((a) => starts(path.join(d, a)) > 1) }] : [];
  });
  const nb09 = path.join(studyReport, '09_regime_study.ipynb');
  const run = fs.existsSync(nb09) ? notebookRun(nb09) : undefined;
  const seconds = cells.reduce((a, c) => a + c.seconds, 0);
  return {
    report: studyReport,
    tables: tables.filter((f) => f.endsWith('.md')),
    lines: [
      '## The crossover study (notebook 09)', '',
      `Regenerated from \`${path.relative(repo, dir) || dir}\` (\`npm run study\`, run apart from the main job). ` +
        `${cells.length} cells finished; their recorded times add up to ${(seconds / 3600).toFixed(2)} h of cell time ` +
        `(${cells.map((c) => `${c.cell.name} ${Math.round(c.seconds)} s${c.resumed ? '*' : ''}`).join(', ')})${run ? `; notebook 09 itself took ${Math.round(run.seconds)} s` : ''}.` +
        (cells.some((c) => c.resumed) ? ' *Resumed after a kill: the time is that of the last call only.' : ''),
      '',
      (fs.existsSync(nb09) ? lastMarkdownOutput(nb09)?.trim() : undefined) ?? '(notebook 09 has not run on this study yet)',
      '',
    ],
  };
}

/** What results.ts reads of a report's report-state.json (scripts/report-state.ts writes it); empty for an older report without one. */
interface ReportStateFields { data?: unknown; notebooks?: Record<string, { commit?: unknown }> }

function reportState(report: string): ReportStateFields {
  try {
    return JSON.parse(fs.readFileSync(path.join(report, 'report-state.json'), 'utf8')) as ReportStateFields;
  } catch {
    return {}; // no state file: an older report
  }
}

/** The commits the report's notebooks ran at, in notebook order, each once (none for an older report). */
function reportCommits(state: ReportStateFields, notebooks: string[]): string[] {
  return [...new Set(notebooks.map((n) => state.notebooks?.[n]?.commit).filter((c): c is string => typeof c === 'string'))];
}

/** The dataset key a report was made on, else the profile's default dataset (a report of an older runner). */
function reportData(state: ReportStateFields, profile: ProfileName): string {
  return typeof state.data === 'string' && state.data !== '' ? state.data : PROFILE_DEFAULT_DATA[profile];
}
