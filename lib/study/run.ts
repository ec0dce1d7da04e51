/**
 * Running the crossover study's cells (config.ts): each cell's four arms
 * trained with trainStage1 on the cell's K images, each validation-selected
 * (selectedCheckpoint), then scored once on the test images in the order it
 * is read in. A finished cell leaves `cell.json` (written atomically), so a
 * killed study resumes: finished cells are skipped, an unfinished arm resumes
 * from its newest checkpoint (trainStage1), and the results are identical to
 * an uninterrupted run (draws are seeded by (seed, step) alone).
 *
 *   <studyRoot>/study.json                      the study's identity (config, profile, tokenizer, model)
 *   <studyRoot>/K<k>-N<n>-s<seed>/cell-config.json   the cell's identity and its arms' Stage 1 configs
 *   <studyRoot>/K<k>-N<n>-s<seed>/<arm>/        the Stage 1 run folders (openRun records each config)
 *   <studyRoot>/K<k>-N<n>-s<seed>/cell.json     the results, once every arm is trained and scored
 *
 * Shards: runStudy runs the cells with index % count == shard.index, so
 * `count` processes (one per core: wasm is single-threaded) or machines share
 * a study; mergeStudy (merge.ts) reads their folders back together.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OrderHeadError, ensure } from '../runtime/errors';
import { writeFileAtomic } from '../runtime/atomic';
import { diffConfig, formatDifferences } from '../runtime/checkpoint';
import { ProfileName } from '../runtime/profile';
import { GPTConfig, seqLen } from '../backbone/config';
import { disposeGPT } from '../backbone/gpt';
import { exactNll } from '../backbone/nll';
import { regimeImages } from '../backbone/regime';
import {
  loadBackboneWithInfo, selectedCheckpoint, selectionCells, SelectionOrder, stage1Config, stage1Geometry, stage1ModelConfig, Stage1Config, TokenData,
  targetCells, trainStage1,
} from '../backbone/stage1';
import { randomPhaseCheckpoint } from '../backbone/checkpoints';
import { BlockGeometry } from '../order';
import { loadTokenCache, TokenCache } from '../tokenizer/cache';
import { tokenizerRunDir } from '../tokenizer/config';
import { dataSummary } from '../data/profile-data';
import { STAGE_NOTEBOOKS } from '../curriculum';
import {
  cellConfigs, cellEpochs, StudyArm, STUDY_ARMS, StudyCell, studyCells, studyCellSettings, StudyConfig, studyFingerprint, StudyIdentity,
} from './config';

export const CELL_FILE = 'cell.json';
export const CELL_CONFIG_FILE = 'cell-config.json';
export const STUDY_FILE = 'study.json';
export const CELL_FORMAT = 'orderhead-study-cell/1';

/** One arm's result in a cell. */
export interface ArmResult {
  /** The validation-selected checkpoint's step and validation NLL (bits/token, in the arm's own order). */
  selectedStep: number;
  validationBits: number;
  /** The order it was selected and tested in. */
  order: SelectionOrder;
  /** Mean test NLL (bits/token) and its per-image values, image i = test image i (paired across arms and seeds). */
  testBits: number;
  perImage: number[];
}

/** What cell.json holds. */
export interface CellResult {
  format: string;
  /** The study's fingerprint (studyFingerprint): merge refuses cells of two studies. */
  study: string;
  cell: { k: number | 'all'; n: number; seed: number; name: string };
  /** K resolved ('all' is the pool), the batch, and epochs = N · batch / K. */
  kImages: number;
  batch: number;
  epochs: number;
  arms: Record<StudyArm, ArmResult>;
  /** Wall seconds of the call that finished the cell (not compared by merge). */
  seconds: number;
}

/** The data a study trains and tests on: notebook 01's token cache. */
export interface StudyData {
  cache: Pick<TokenCache, 'train' | 'test' | 'grid' | 'codebookSize' | 'tokenizer'>;
  /** The dataset's classes (session.dataset.classes.length). */
  numClasses: number;
}

export interface StudyProgress {
  /** 'cell' when a cell starts, 'step' after each training step of an arm, 'done' when its cell.json is written, 'skip' for a finished one. */
  kind: 'cell' | 'step' | 'done' | 'skip';
  cell: StudyCell;
  arm?: StudyArm;
  step?: number;
  /** Steps of the cell's arms together (3N) and how many this call has run. */
  cellSteps?: number;
}

export interface RunStudyOptions {
  /** The study folder (studyRoot(runRoot, profile)). */
  root: string;
  profile: ProfileName;
  config: StudyConfig;
  data: StudyData;
  /** Run the cells with index % count == index; default { index: 0, count: 1 }. */
  shard?: { index: number; count: number };
  onProgress?: (p: StudyProgress) => void;
  /** Stop after this many cells of the shard are worked on (tests: a partial run). */
  maxCells?: number;
  /** Stop each arm after this many steps in this call (tests: an arm killed mid-run); the cell is then not finished. */
  maxSteps?: number;
}

export interface RunStudyResult {
  /** The cells of this shard, finished ones with their results. */
  cells: { cell: StudyCell; result?: CellResult }[];
  /** Cells finished by this call, and skipped as finished before. */
  trained: number;
  skipped: number;
}

/** `index/count`, e.g. "0/2", as a shard; errors name `where`. */
export function parseShard(text: string, where = '--shard'): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  ensure(m, `'${text}' is not a shard`, where, 'write it as i/n, e.g. 0/2 and 1/2 for two processes');
  const shard = { index: Number(m[1]), count: Number(m[2]) };
  checkShard(shard, where);
  return shard;
}

function checkShard(s: { index: number; count: number }, where: string): void {
  ensure(Number.isInteger(s.count) && s.count >= 1 && Number.isInteger(s.index) && s.index >= 0 && s.index < s.count, `shard ${s.index}/${s.count}`, where,
    'use an index from 0 to count − 1, e.g. 0/2 and 1/2');
}

/** The model and block grid every cell of a study trains: the profile's Stage 1 config (with study.stage1) on the token grid. */
export function studySetup(profile: ProfileName, config: StudyConfig, data: StudyData): { model: GPTConfig; geo: BlockGeometry } {
  const base = stage1Config(profile, 'raster', config.stage1);
  const model = stage1ModelConfig(base, data.cache.grid, data.cache.codebookSize, data.numClasses);
  return { model, geo: stage1Geometry(base, model) };
}

/** The study's identity for `data` (what its fingerprint hashes). */
export function studyIdentity(profile: ProfileName, config: StudyConfig, data: StudyData): StudyIdentity {
  return {
    profile, study: studyCellSettings(config), tokenizer: data.cache.tokenizer.fingerprint, trainImages: data.cache.train.n, testImages: data.cache.test.n,
    model: studySetup(profile, config, data).model,
  };
}

/** Write `file` (JSON) when absent; when present, refuse a different content, naming the folder, the field and the fix. Nothing is overwritten. */
function claimJson(file: string, value: unknown, what: string): void {
  if (fs.existsSync(file)) {
    let stored: unknown;
    try {
      stored = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new OrderHeadError(`cannot read the ${what} (${(err as Error).message})`, file,
        'delete the damaged file: the cell is checked again and resumes from its arms\' checkpoints');
    }
    const diffs = diffConfig(stored, value);
    if (diffs.length) {
      throw new OrderHeadError(`the folder holds ${what} of another config: ${formatDifferences(diffs, 'stored', 'now')}`, path.dirname(file),
        `use another study folder (--root, or another run root) for this config, or restore ${diffs[0].path} to ${JSON.stringify(diffs[0].stored)} ` +
          'to continue it; nothing here was changed');
    }
    return;
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeFileAtomic(file, `${JSON.stringify(value, null, 1)}\n`);
}

/** The cell's result, if its cell.json exists (and belongs to this study). */
export function readCell(cellDir: string): CellResult | undefined {
  const file = path.join(cellDir, CELL_FILE);
  if (!fs.existsSync(file)) return undefined;
  let cell: CellResult;
  try {
    cell = JSON.parse(fs.readFileSync(file, 'utf8')) as CellResult;
  } catch (err) {
    throw new OrderHeadError(`cannot read the cell's results (${(err as Error).message})`, file,
      'delete it: the next run of the study scores the cell again from its selected checkpoints');
  }
  ensure(cell.format === CELL_FORMAT, `is not a study cell (format ${String(cell.format)})`, file,
    `remove it, or point the study at a folder runStudy wrote (format ${CELL_FORMAT})`);
  return cell;
}

/**
 * Train, select and score the cells of one shard of a study (every cell
 * when unsharded). Cells are checked first: every K against the train split
 * (regimeImages: larger than the pool or smaller than a batch is refused
 * before anything is written), the test images against the test split, and
 * the study folder against its study.json.
 */
export function runStudy(o: RunStudyOptions): RunStudyResult {
  const shard = o.shard ?? { index: 0, count: 1 };
  checkShard(shard, 'runStudy(shard)');
  const { cache } = o.data;
  const cells = studyCells(o.config);
  ensure(o.config.testImages <= cache.test.n, `testImages ${o.config.testImages} is more than the test split's ${cache.test.n} images`, 'study.testImages',
    `use at most ${cache.test.n}`);
  const identity = studyIdentity(o.profile, o.config, o.data);
  const { geo } = studySetup(o.profile, o.config, o.data);
  const configsOf = (cell: StudyCell) => cellConfigs(o.profile, o.config, cell, geo);
  for (const cell of cells) {
    const cfg = configsOf(cell)['raster-only'];
    regimeImages(cache.train.n, cfg, cfg.batch, 'study');
  }
  const fingerprint = studyFingerprint(identity);
  claimJson(path.join(o.root, STUDY_FILE), { fingerprint, ...identity }, 'a study');
  const mine = cells.filter((c) => c.index % shard.count === shard.index);
  const out: RunStudyResult = { cells: [], trained: 0, skipped: 0 };
  let worked = 0;
  for (const cell of mine) {
    const dir = path.join(o.root, cell.name);
    const done = readCell(dir);
    if (done) {
      ensure(done.study === fingerprint, `holds the results of another study (fingerprint ${done.study}, this study ${fingerprint})`, path.join(dir, CELL_FILE),
        'use another study folder for this config; nothing here was changed');
      out.cells.push({ cell, result: done });
      out.skipped++;
      o.onProgress?.({ kind: 'skip', cell });
      continue;
    }
    if (o.maxCells !== undefined && worked >= o.maxCells) { out.cells.push({ cell }); continue; }
    worked++;
    const result = runCell(dir, cell, configsOf(cell), identity, fingerprint, o);
    out.cells.push({ cell, result });
    if (result) out.trained++;
  }
  return out;
}

/** The arms of one cell: trained (or resumed), selected, scored; cell.json when all four are done. Undefined when an arm stopped early (maxSteps). */
function runCell(dir: string, cell: StudyCell, arms: Record<StudyArm, Stage1Config>, identity: StudyIdentity, fingerprint: string,
  o: RunStudyOptions): CellResult | undefined {
  const t0 = Date.now();
  const identityOfCell = { study: fingerprint, profile: identity.profile, cell: { k: cell.k, n: cell.n, seed: cell.seed }, arms };
  claimJson(path.join(dir, CELL_CONFIG_FILE), identityOfCell, 'a cell');
  o.onProgress?.({ kind: 'cell', cell, cellSteps: 3 * cell.n });
  const { cache } = o.data;
  const data: TokenData = { ...cache.train, tokenizer: cache.tokenizer.fingerprint };
  const model = identity.model as GPTConfig;
  const train = (arm: StudyArm, from?: string): boolean => {
    const res = trainStage1(dir, arm, arms[arm], data, model, {
      maxSteps: o.maxSteps, onStep: (step) => o.onProgress?.({ kind: 'step', cell, arm, step }),
    }, from);
    disposeGPT(res.model);
    return res.steps >= arms[arm].steps;
  };
  const rasterDone = train('raster-only');
  const rarDone = train('annealed-raster');
  const half = Math.round(arms['annealed-raster'].annealStart * cell.n);
  // C exists once the block-RAR run has passed N/2; before that (a stopped run) the continuations wait for the next call.
  if (!hasCheckpointC(path.join(dir, 'annealed-raster'), half)) return undefined;
  const from = randomPhaseCheckpoint(path.join(dir, 'annealed-raster'));
  const keptDone = train('kept-random', from);
  const fixedDone = train('annealed-fixed', from);
  if (!(rasterDone && rarDone && keptDone && fixedDone)) return undefined;

  const test = testSplit(cache, o.config.testImages);
  const kImages = regimeImages(cache.train.n, arms['raster-only'], arms['raster-only'].batch, 'study').k;
  const result: CellResult = {
    format: CELL_FORMAT, study: fingerprint, cell: { k: cell.k, n: cell.n, seed: cell.seed, name: cell.name },
    kImages, batch: arms['raster-only'].batch, epochs: cellEpochs(cell.n, arms['raster-only'].batch, kImages),
    arms: Object.fromEntries(STUDY_ARMS.map((arm) => [arm, scoreArm(path.join(dir, arm), arms[arm], test, model)])) as Record<StudyArm, ArmResult>,
    seconds: (Date.now() - t0) / 1000,
  };
  writeFileAtomic(path.join(dir, CELL_FILE), `${JSON.stringify(result)}\n`);
  o.onProgress?.({ kind: 'done', cell });
  return result;
}

/** Whether the block-RAR run has its random-phase checkpoint C at step `half`; C at another step would start the continuations elsewhere. */
function hasCheckpointC(runDir: string, half: number): boolean {
  const dir = path.join(runDir, 'checkpoints');
  if (!fs.existsSync(dir)) return false;
  const steps = fs.readdirSync(dir).map((f) => /^stage1-step(\d+)-r1\.00\.safetensors$/.exec(f)).filter((m) => m).map((m) => Number(m![1]));
  if (!steps.length || Math.max(...steps) < half) return false;
  ensure(Math.max(...steps) === half, `the newest random-phase checkpoint is at step ${Math.max(...steps)}, not at N/2 = ${half}`, dir,
    'the study puts C at N/2 (checkpoints every N/4, annealing from N/2): delete the cell folder and run the study again');
  return true;
}

/** The test split's first `n` images as token data (the test split is read here only, once per arm). */
function testSplit(cache: StudyData['cache'], n: number): { data: TokenData; images: Int32Array } {
  return { data: { ...cache.test, tokenizer: cache.tokenizer.fingerprint }, images: Int32Array.from({ length: n }, (_, i) => i) };
}

/**
 * The selected checkpoint of one arm, scored on the test images in the
 * order the arm is read in (selectionOrder): token raster, random block
 * orders seeded by the image alone (the same for every arm and seed), or the
 * fixed order. Per-image bits per token, paired by image.
 */
export function scoreArm(runDir: string, cfg: Stage1Config, test: { data: TokenData; images: Int32Array }, model: GPTConfig): ArmResult {
  const { model: m, selected } = loadBackboneWithInfo(selectedCheckpoint(runDir, 'runStudy (lib/study)'), model as unknown as Partial<GPTConfig>);
  try {
    ensure(selected, 'the selected checkpoint records no selection', runDir, 'delete the arm folder and run the study again (trainStage1 records it)');
    const geo = stage1Geometry(cfg, model);
    const cells = selectionCells(cfg, test.data, geo, targetCells(cfg, test.data, geo, `study arm ${runDir}`), test.images);
    const T = seqLen(model);
    const nll = exactNll(m, cells.grids, cells.classes, cells.cells);
    const perImage = Array.from(nll.perImage, (v) => v / (T * Math.LN2));
    return { selectedStep: selected.step, validationBits: selected.validationBits, order: cells.order, testBits: nll.bitsPerToken, perImage };
  } finally {
    disposeGPT(m);
  }
}

/**
 * The study's data from a run root: notebook 01's token cache of the profile
 * (`<runRoot>/tokenizer-<profile>`) and the dataset's classes. A missing cache
 * names the notebook that makes it.
 */
export function studyData(runRoot: string, profile: ProfileName, numClasses = dataSummary(profile).classes.length): StudyData {
  const dir = tokenizerRunDir(runRoot, profile);
  try {
    return { cache: loadTokenCache(dir), numClasses };
  } catch (err) {
    if (!(err instanceof OrderHeadError)) throw err;
    throw new OrderHeadError(`${err.problem} (the token cache the crossover study reads, made by ${STAGE_NOTEBOOKS.tokenizer})`, err.where,
      `run ${STAGE_NOTEBOOKS.tokenizer} in the ${profile} profile first (npm run study runs notebooks 00-01 when no report has a token cache), ` +
      'or point --root / ORDERHEAD_RUN_ROOT at the runs folder of a report that has one');
  }
}
