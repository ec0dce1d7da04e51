/**
 * Every notebook's code, type-checked against the compiled library in seconds:
 * a renamed or re-typed library export breaks here, not minutes into a
 * headless kernel run. The code cells of a notebook are concatenated into one
 * async function (tslab runs cells in one scope, with top-level await).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ts from 'typescript';
import { repoRoot } from '../../lib/runtime/paths';

const root = repoRoot();
const notebooks = fs.readdirSync(path.join(root, 'notebooks')).filter((f) => /^\d\d_.*\.ipynb$/.test(f)).sort();

test('every notebook type-checks against the library', () => {
  assert.ok(notebooks.length >= 9, `found ${notebooks.length} notebooks`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oh-nb-'));
  try {
    const files = notebooks.map((nb) => {
      const cells = JSON.parse(fs.readFileSync(path.join(root, 'notebooks', nb), 'utf8')).cells as { cell_type: string; source: string[] | string }[];
      const code = cells.filter((c) => c.cell_type === 'code').map((c) => (Array.isArray(c.source) ? c.source.join('') : c.source));
      const body = code.join('\n;\n').replace(/import \* as oh from '\.\.\/dist\/lib';/, '');
      const file = path.join(dir, nb.replace('.ipynb', '.ts'));
      fs.writeFileSync(file, `import * as oh from ${JSON.stringify(path.join(root, 'dist', 'lib'))};\nexport async function notebook(): Promise<void> {\n${body}\n}\n`);
      return file;
    });
    const program = ts.createProgram(files, {
      target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, esModuleInterop: true, skipLibCheck: true, noEmit: true, strict: false, types: ['node'],
      typeRoots: [path.join(root, 'node_modules', '@types')],
    });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const where = d.file && d.start !== undefined ? `${path.basename(d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start).line}` : '';
      return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
    assert.deepEqual(problems, []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
