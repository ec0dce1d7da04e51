/**
 * Issue 17's acceptance test: `ORDERHEAD_DATA=idx:<dir>` runs the whole smoke
 * main job (scripts/run-notebooks.sh --profile smoke, every notebook) on a
 * small synthetic idx set made here (tests/fixtures/idx-set.ts: four shape
 * classes named in classes.txt, 20x20 images, so the size rule pads them; 300
 * train and 64 test images, so the smoke profile's 512 / 128 are capped), with
 * that set's name and classes in the executed notebooks' outputs and no
 * Fashion-MNIST name or class anywhere in them.
 *
 * Slow (one smoke run: several minutes), so it runs only with
 * ORDERHEAD_DATA_MAIN_TEST=1, which scripts/test.sh sets.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { repoRoot } from '../../lib/runtime/paths';
import { listNotebooks, readState } from '../../scripts/report-state';
import { SHAPE_CLASSES, writeShapesSet } from '../fixtures/idx-set';

const ENABLED = process.env.ORDERHEAD_DATA_MAIN_TEST === '1';
const root = repoRoot();
const made: string[] = [];
after(() => { for (const d of made) fs.rmSync(d, { recursive: true, force: true }); });

/** Every output of a notebook as text (streams, plain text, HTML), cell by cell. */
function outputsText(file: string): string {
  const nb = JSON.parse(fs.readFileSync(file, 'utf8')) as { cells: { outputs?: Record<string, unknown>[] }[] };
  const parts: string[] = [];
  const add = (v: unknown) => parts.push(Array.isArray(v) ? v.join('') : String(v ?? ''));
  for (const c of nb.cells) {
    for (const o of c.outputs ?? []) {
      add(o.text);
      add(o.evalue);
      for (const [mime, v] of Object.entries((o.data ?? {}) as Record<string, unknown>)) if (mime.startsWith('text/')) add(v);
    }
  }
  return parts.join('\n');
}

test('ORDERHEAD_DATA=idx:<dir> runs the whole smoke main job on a synthetic idx set, with its name and classes in every notebook and no Fashion-MNIST', {
  skip: ENABLED ? false : 'slow (one smoke main job): set ORDERHEAD_DATA_MAIN_TEST=1 (scripts/test.sh does)',
  timeout: 30 * 60_000,
}, async (t) => {
  const sandbox = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-data-main-'));
  made.push(sandbox);
  const dir = writeShapesSet(path.join(sandbox, 'shapes-20px'), { side: 20, train: 300, test: 64 });
  const out = path.join(sandbox, 'report');
  const env: NodeJS.ProcessEnv = { ...process.env, ORDERHEAD_DATA: `idx:${dir}` };
  for (const k of ['ORDERHEAD_RUN_ROOT', 'ORDERHEAD_PROFILE', 'JPY_PARENT_PID']) delete env[k];
  const t0 = Date.now();
  const { code, log } = await new Promise<{ code: number | null; log: string }>((resolve, reject) => {
    const child = spawn('bash', ['scripts/run-notebooks.sh', '--profile', 'smoke', '--out', out], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d) => { text += String(d); });
    child.stderr.on('data', (d) => { text += String(d); });
    child.on('error', reject);
    child.on('exit', (c) => resolve({ code: c, log: text }));
  });
  t.diagnostic(`smoke main job on idx:${dir}: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  assert.equal(code, 0, `the smoke main job failed:\n${log}`);
  assert.match(log, /report finished/);
  assert.equal(readState(out)!.data, `idx:${dir}`, 'the report is filed under the dataset');

  const name = path.basename(dir);
  for (const f of listNotebooks(path.join(root, 'notebooks'))) {
    const text = outputsText(path.join(out, f));
    assert.ok(text.includes(name), `${f}: its outputs never name the dataset ${name}`);
    // The banner of every notebook lists the classes (plain substrings like 'ring' would match any 'string').
    assert.ok(text.includes(`4 classes: ${SHAPE_CLASSES.join(', ')}`), `${f}: its outputs never list the classes ${SHAPE_CLASSES.join(', ')}`);
    for (const bad of ['Fashion-MNIST', 'Fashion MNIST', 'T-shirt', 'Ankle boot']) assert.ok(!text.includes(bad), `${f}: an output says '${bad}'`);
  }
  // The profile's counts, capped at the set's size, and the size rule, said where the data is shown.
  const setup = outputsText(path.join(out, listNotebooks(path.join(root, 'notebooks'))[0]));
  assert.match(setup, /asks for 512 train images; capped at the dataset(?:'|&#39;)s 300/);
  assert.match(setup, /padded to 32x32/);
  // The samples per class are captioned with the set's classes (notebook 02).
  assert.match(outputsText(path.join(out, '02_stage1_backbone.ipynb')), new RegExp(`columns: ${SHAPE_CLASSES.join(', ')}`));
});
