/**
 * Reading a study back from one or more study folders: the shards a study ran
 * as (processes on one machine share a folder; other machines' folders are
 * copied here). Every cell must belong to one study (its fingerprint); a
 * cell found twice must hold the same results. Nothing is written to the
 * folders read.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OrderHeadError, ensure } from '../runtime/errors';
import { canonicalJson, diffConfig, formatDifferences } from '../runtime/checkpoint';
import { StudyCell, studyCells, studyCellSettings, StudyConfig, StudyIdentity } from './config';
import { CellResult, readCell, STUDY_FILE } from './run';

/** A study read back: its identity and fingerprint, the grid read, its finished cells in grid order, and its cells not finished in any folder. */
export interface StudyMerge {
  fingerprint: string;
  identity: StudyIdentity;
  /** The config whose grid was read (its cell settings are the folders'). */
  config: StudyConfig;
  /** The folders read. */
  roots: string[];
  cells: CellResult[];
  missing: StudyCell[];
}

function readStudyFile(root: string): { fingerprint: string } & StudyIdentity {
  const file = path.join(root, STUDY_FILE);
  ensure(fs.existsSync(file), 'is not a study folder (no study.json)', root,
    'pass folders that runStudy wrote (<run root>/study-<profile>, or a shard of it copied from another machine)');
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as { fingerprint: string } & StudyIdentity;
  } catch (err) {
    throw new OrderHeadError(`cannot read the study's identity (${(err as Error).message})`, file, 'copy the file again from the machine that ran the shard');
  }
}

/** Equal results: everything but the wall time of the call that finished the cell. */
const sameResult = (a: CellResult, b: CellResult) => canonicalJson({ ...a, seconds: 0 }) === canonicalJson({ ...b, seconds: 0 });

/**
 * The cells of `config`'s grid found in `roots`, together. Refused: folders of
 * two different studies (both named), a config whose cell settings are not the
 * folders', a cell of another study inside a folder, and a cell found in two
 * folders with different results (both named).
 */
export function mergeStudy(roots: readonly string[], config: StudyConfig): StudyMerge {
  ensure(roots.length > 0, 'no study folders given', 'mergeStudy(roots)', 'pass the study folder, and the shards copied from other machines');
  const abs = roots.map((r) => path.resolve(r));
  const ids = abs.map(readStudyFile);
  ids.forEach((id, i) => {
    ensure(id.fingerprint === ids[0].fingerprint,
      `holds study ${id.fingerprint}, but ${abs[0]} holds study ${ids[0].fingerprint} (another config, profile, tokenizer or model)`, abs[i],
      'merge only shards of one study: run every shard with the same profile, study config and token cache (copy runs/tokenizer-<profile> to each machine)');
  });
  const { fingerprint, ...identity } = ids[0];
  const diffs = diffConfig({ study: identity.study }, { study: studyCellSettings(config) });
  ensure(diffs.length === 0, `holds cells of other settings than the config read: ${formatDifferences(diffs, 'stored', 'config')}`,
    path.join(abs[0], STUDY_FILE), `read it with the config it was run with (restore ${diffs[0]?.path} to ${JSON.stringify(diffs[0]?.stored)}), or run this config in another folder`);
  const cells = studyCells(config);
  const found = new Map<string, { result: CellResult; dir: string }>();
  for (const root of abs) {
    for (const cell of cells) {
      const dir = path.join(root, cell.name);
      const result = readCell(dir);
      if (!result) continue;
      ensure(result.study === fingerprint, `holds a cell of study ${result.study}, not of this folder's study ${fingerprint}`, dir,
        'remove the cell folder (it was made with another config) and run the study again');
      const seen = found.get(cell.name);
      if (seen && !sameResult(seen.result, result)) {
        throw new OrderHeadError(`cell ${cell.name} is in two folders with different results (${seen.dir} and ${dir})`, dir,
          'keep one of the two (delete the other cell folder): the same cell run twice should agree, so check which machine ran it with other code');
      }
      if (!seen) found.set(cell.name, { result, dir });
    }
  }
  return {
    fingerprint, identity, config, roots: abs,
    cells: cells.filter((c) => found.has(c.name)).map((c) => found.get(c.name)!.result),
    missing: cells.filter((c) => !found.has(c.name)),
  };
}
