/**
 * `npm run report` (lib/report/results.ts) on a synthetic main-job report and
 * a study report beside it: the headline, notebook 08's findings, the stage
 * sections (their tables and text, not their progress bars), the study's
 * section and tables, the README's results block; and the refusal of a report
 * without a headline, with nothing written.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { rejectsOH, sandbox, throwsOH, untouched } from '../../helpers';
import { parseResultsArgs } from '../../../lib/report/results-cli';
import { STAGE_OUTPUTS, writeResults } from '../../../lib/report/results';
import { CELL_FILE, CELL_FORMAT } from '../../../lib/study/run';

const t0 = '2026-12-07T10:00:00.000Z', t1 = '2026-12-07T10:01:40.000Z';

/** An executed notebook: one cell per (id, outputs), timed from t0 to t1. */
function notebook(file: string, cells: { id: string; outputs: Record<string, string>[] }[]): void {
  const nb = {
    cells: cells.map((c) => ({
      id: c.id, cell_type: 'code', metadata: { execution: { 'iopub.execute_input': t0, 'shell.execute_reply': t1 } },
      outputs: c.outputs.map((data) => ({ output_type: 'display_data', data })),
    })),
  };
  fs.writeFileSync(file, JSON.stringify(nb));
}

function mainReport(): string {
  const report = sandbox();
  const evalDir = path.join(report, 'runs', 'eval-default');
  fs.mkdirSync(evalDir, { recursive: true });
  fs.writeFileSync(path.join(evalDir, 'eval-headline.md'), '| setting | NLL |\n|---|---:|\n| raster baseline | 4.8 |\n');
  fs.writeFileSync(path.join(evalDir, 'eval-headroom.csv'), 'setting,area\n');
  notebook(path.join(report, '08_evaluation.ipynb'), [{ id: 'c15', outputs: [{ 'text/markdown': 'In this run: raster wins.' }] }]);
  for (const s of STAGE_OUTPUTS) {
    notebook(path.join(report, `${s.notebook}.ipynb`), [{
      id: s.cell,
      outputs: [{ 'text/plain': `${s.notebook} progress [####] 100%` }, { 'text/html': `<table class="orderhead-table"><tr><td>${s.notebook} table</td></tr></table>` },
        { 'text/html': '<div class="plot">a figure</div>' }, { 'text/markdown': `${s.notebook} findings` }],
    }]);
  }
  return report;
}

function studyReport(): string {
  const report = sandbox();
  const dir = path.join(report, 'runs', 'study-default');
  for (const [cell, seconds] of [['K256-N100-s0', 1000], ['K256-N100-s1', 800]] as const) {
    fs.mkdirSync(path.join(dir, cell), { recursive: true });
    fs.writeFileSync(path.join(dir, cell, CELL_FILE), JSON.stringify({ format: CELL_FORMAT, cell: { name: cell }, seconds }));
    fs.mkdirSync(path.join(dir, cell, 'raster-only'));
    fs.writeFileSync(path.join(dir, cell, 'raster-only', 'manifest.json'), JSON.stringify({ starts: seconds === 800 ? [1, 2] : [1] }));
  }
  fs.writeFileSync(path.join(dir, 'study.json'), '{}');
  fs.writeFileSync(path.join(dir, 'study-crossover.md'), '| K | Δ |\n');
  fs.writeFileSync(path.join(dir, 'study-crossover.csv'), 'K,delta\n');
  notebook(path.join(report, '09_regime_study.ipynb'), [{ id: 'c20', outputs: [{ 'text/markdown': 'No crossover at any K.' }] }]);
  return report;
}

function repo(): string {
  const r = sandbox();
  fs.writeFileSync(path.join(r, 'README.md'), '# X\n\n<!-- results:begin -->\nold\n<!-- results:end -->\n\nrest\n');
  return r;
}

test('writeResults: headline, findings, the stages\' tables and text, the study from its own report, and the README block', async () => {
  const r = repo(), report = mainReport(), study = studyReport();
  await writeResults({ report, repo: r, noFigures: true, study });
  const md = fs.readFileSync(path.join(r, 'docs', 'results', 'README.md'), 'utf8');
  assert.match(md, /\| raster baseline \| 4\.8 \|/);
  assert.match(md, /In this run: raster wins\./);
  for (const s of STAGE_OUTPUTS) {
    assert.ok(md.includes(`### ${s.title}`), `no section ${s.title}`);
    assert.ok(md.includes(`${s.notebook} table`) && md.includes(`${s.notebook} findings`), `${s.notebook}: its table or text is missing`);
    assert.ok(!md.includes(`${s.notebook} progress`), 'a progress bar was copied');
  }
  assert.ok(!md.includes('a figure'), 'a non-table HTML output was copied');
  assert.match(md, /## The crossover study \(notebook 09\)/);
  assert.match(md, /2 cells finished; their recorded times add up to 0\.50 h of cell time \(K256-N100-s0 1000 s, K256-N100-s1 800 s\*\); notebook 09 itself took 100 s\. \*Resumed after a kill/);
  assert.match(md, /No crossover at any K\./);
  assert.match(md, /- \[study-crossover\.md\]\(study-crossover\.md\)/);
  assert.equal(fs.readFileSync(path.join(r, 'docs', 'results', 'study-crossover.csv'), 'utf8'), 'K,delta\n');
  assert.ok(fs.existsSync(path.join(r, 'docs', 'results', 'eval-headroom.csv')));
  const readme = fs.readFileSync(path.join(r, 'README.md'), 'utf8');
  assert.match(readme, /<!-- results:begin -->\n\| setting \| NLL \|/);
  assert.ok(readme.endsWith('<!-- results:end -->\n\nrest\n') && !readme.includes('\nold\n'));
});

test('writeResults: without a study the section is left out; a report without its headline is refused and nothing is written', async () => {
  const r = repo(), report = mainReport();
  await writeResults({ report, repo: r, noFigures: true });
  assert.ok(!fs.readFileSync(path.join(r, 'docs', 'results', 'README.md'), 'utf8').includes('crossover study'));
  const bare = mainReport();
  fs.rmSync(path.join(bare, 'runs', 'eval-default', 'eval-headline.md'));
  await untouched(r, () => rejectsOH(() => writeResults({ report: bare, repo: r, noFigures: true }), 'eval-headline.md', 'no headline'));
});

test('npm run report arguments: the report folder with or without --study, in any position; a missing, doubled or unknown argument is refused with the usage', () => {
  assert.deepEqual(parseResultsArgs(['reports/a']), { report: 'reports/a', noFigures: false });
  assert.deepEqual(parseResultsArgs(['reports/a', '--study', 'reports/s', '--no-figures']), { report: 'reports/a', study: 'reports/s', noFigures: true });
  assert.deepEqual(parseResultsArgs(['--study', 'reports/s', 'reports/a']), { report: 'reports/a', study: 'reports/s', noFigures: false });
  throwsOH(() => parseResultsArgs([]), 'no report folder given', 'usage: npm run report');
  throwsOH(() => parseResultsArgs(['reports/a', '--study']), '--study needs a folder');
  throwsOH(() => parseResultsArgs(['reports/a', '--study', '--no-figures']), '--study needs a folder');
  throwsOH(() => parseResultsArgs(['reports/a', '--study', 's1', '--study', 's2']), '--study is given twice');
  throwsOH(() => parseResultsArgs(['reports/a', 'reports/b']), '2 report folders given');
  throwsOH(() => parseResultsArgs(['reports/a', '--figures']), "unknown option '--figures'");
});
