/**
 * The crossover study (METHOD.md §6.9): where, if anywhere, does order-robust
 * training (block-RAR) overtake raster-only as the generator's unique images K
 * and its compute N change? Epochs over the K images are
 *
 *   epochs = N · batch / K
 *
 * so a small K at a large N is many epochs (the regime where RAR's random
 * orders act as data augmentation) and K = 'all' at the default N is a
 * fraction of one epoch (the regime of the main run, where raster won).
 *
 * One cell is (K, N, seed); its four arms (STUDY_ARMS) are the matched-budget
 * contest of §6.7 on the cell's K images: raster-only (N steps), the block-RAR
 * run annealed to raster (its N/2 checkpoint is C), and from C kept random and
 * annealed to one fixed non-raster order. Every arm is validation-selected
 * (selectedCheckpoint) and scored once on the same test images.
 *
 * The grid: every K of `uniqueImages` at every N, except where
 * `uniqueImagesAt` lists the K of one N. The default runs N = 100 at five K
 * (256 to 'all': 0.11 to 25 epochs) and N = 300 only at K = 256 and 1,024
 * (75 and 18.75 epochs): N = 300 at the larger K would land on epochs the
 * N = 100 row already covers (4.7, 1.2 and 0.33 against its 6.25, 1.56 and
 * 0.39), and would more than double the study's time.
 *
 * The default study's time, on our 2-core machine (two shards, one per core):
 *   training   seeds 2 × (5 K at N 100 + 2 K at N 300) × 3 N (raster N, block-RAR N, two continuations N/2 each)
 *              = 6,600 steps of the small model at batch 64: at 1.2 s a step on an idle core (notebook 02's timing)
 *              66 min over 2 cores; measured with the main job beside it, 1.8 to 3.3 s a step
 *   selection  evalEvery = N/10: per cell 10 + 10 + 5 + 5 scorings of the 512 validation images, 14 cells
 *   test       4 arms × 500 test images × 14 cells
 *   measured   a cell of N = 100 took 920 to 2,030 s beside other jobs (docs/results/README.md gives the whole study's time).
 * The smoke study: the tiny model, N 4 at five K from 16 to 'all' and N 8 at two, 2 seeds, validation every N/2: seconds.
 *
 * A study folder is one set of cell settings (everything but the grid, see
 * studyCellSettings): a grid that grows (another K, N or seed) reuses the
 * cells already finished there.
 */
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { ensure } from '../runtime/errors';
import { canonicalJson } from '../runtime/checkpoint';
import { ConfigOverrides, profileConfig, ProfileName } from '../runtime/profile';
import { BlockGeometry, spiralInBlockOrder } from '../order';
import { continuationConfig, Stage1Config, stage1Config } from '../backbone/stage1';
import { regimeEpochs } from '../backbone/regime';

/** The arms of every cell, in training order: the two from scratch first (the second makes C), then the two from C. */
export const STUDY_ARMS = ['raster-only', 'annealed-raster', 'kept-random', 'annealed-fixed'] as const;
export type StudyArm = (typeof STUDY_ARMS)[number];

/** What each arm is, in words (tables, figures, the notebook). */
export const STUDY_ARM_LABELS: Readonly<Record<StudyArm, string>> = {
  'raster-only': 'raster-only: N steps of token raster from scratch (the reference)',
  'annealed-raster': 'annealed to raster: block-RAR, random phase to C at N/2, then annealed to token raster',
  'kept-random': 'kept random: C + N/2 steps at r = 1, read in random block orders',
  'annealed-fixed': 'annealed to a fixed order: C + N/2 steps annealed to the fixed block order, read in it',
};

/** The named fixed orders the fixed-order arm can anneal to. */
export const FIXED_ORDERS = { 'spiral-in': spiralInBlockOrder } as const satisfies Record<string, (geo: BlockGeometry) => number[]>;
export type FixedOrderName = keyof typeof FIXED_ORDERS;

export interface StudyConfig {
  /** K values: the generator's unique training images of each cell (regime.ts), or 'all' (the whole pool). */
  uniqueImages: (number | 'all')[];
  /** The K values of one N where they differ from uniqueImages (key: N, as JSON keys are strings); an N the study does not run is not read. */
  uniqueImagesAt: Record<string, (number | 'all')[]>;
  /** N values: optimizer steps of every arm (the continuations are N/2 steps from C at N/2). Multiples of 4 and of `selections`. */
  steps: number[];
  /** Training seeds: all arms of one seed draw the same images at every step (stage1Draws), so their differences are paired. At least 2. */
  seeds: number[];
  /** The test split's first `testImages` images: every arm of every cell is scored on them, once, after selection. */
  testImages: number;
  /** The fixed non-raster block order of the annealed-fixed arm (FIXED_ORDERS). */
  fixedOrder: FixedOrderName;
  /** Validation scorings per N steps: evalEvery = N / selections (a continuation is scored selections/2 times). */
  selections: number;
  /** Bootstrap replicates of every interval (seedImageInterval). */
  bootstrapReps: number;
  /** Fields of every cell's Stage 1 config beyond its profile's (e.g. size, microBatch); K, N, seed and the cadences are the study's. */
  stage1: Partial<Stage1Config>;
}

export const STUDY_DEFAULTS: StudyConfig = {
  uniqueImages: [256, 1024, 4096, 16384, 'all'], uniqueImagesAt: {}, steps: [100, 300], seeds: [0, 1], testImages: 500, fixedOrder: 'spiral-in',
  selections: 10, bootstrapReps: 1000, stage1: {},
};

/** The study of a profile; the default's arithmetic is in this file's comment. */
export function studyConfig(profile: ProfileName, overrides: ConfigOverrides<StudyConfig> = {}): StudyConfig {
  return profileConfig<StudyConfig>(STUDY_DEFAULTS, {
    smoke: { uniqueImages: [16, 32, 64, 128, 'all'], uniqueImagesAt: { 8: [16, 32] }, steps: [4, 8], seeds: [0, 1], testImages: 16, selections: 2, bootstrapReps: 200 },
    default: { uniqueImagesAt: { 300: [256, 1024] } },
    full: { steps: [1000, 3000], seeds: [0, 1, 2], testImages: 2000 },
  }, profile, overrides, validateStudyConfig);
}

/** A list field's values once each: a value given twice would train the same cells twice and count their seeds twice. */
function once<T>(values: readonly T[], field: string): void {
  const seen = new Set<string>();
  for (const v of values) {
    const key = String(v);
    ensure(!seen.has(key), `${key} is given twice (${values.join(', ')})`, `study.${field}`,
      `list each value once: ${[...new Set(values.map(String))].join(', ')}`);
    seen.add(key);
  }
}

export function validateStudyConfig(cfg: StudyConfig): void {
  const list = (v: unknown, field: string, what: string) =>
    ensure(Array.isArray(v) && v.length > 0, `has no values (${JSON.stringify(v)})`, `study.${field}`, `give at least one ${what}`);
  const kList = (ks: (number | 'all')[], field: string) => {
    list(ks, field, "K (a whole number of images or 'all')");
    for (const k of ks) {
      ensure(k === 'all' || (Number.isInteger(k) && k >= 1), `K ${JSON.stringify(k)}`, `study.${field}`,
        "use whole numbers of images (at least one batch) or 'all'");
    }
    once(ks, field);
  };
  kList(cfg.uniqueImages, 'uniqueImages');
  ensure(typeof cfg.uniqueImagesAt === 'object' && cfg.uniqueImagesAt !== null && !Array.isArray(cfg.uniqueImagesAt),
    `uniqueImagesAt is ${JSON.stringify(cfg.uniqueImagesAt)}`, 'study.uniqueImagesAt', 'give an object from N to its K values, e.g. { "300": [256, 1024] }, or {}');
  ensure(Number.isInteger(cfg.selections) && cfg.selections >= 2, `selections ${cfg.selections}`, 'study.selections',
    'use a whole number >= 2: the validation scorings per N steps (evalEvery = N / selections)');
  list(cfg.steps, 'steps', 'N');
  for (const n of cfg.steps) {
    // C must be a checkpoint (checkpointEvery = N/4 puts one at N/2), and validation must land on N itself.
    ensure(Number.isInteger(n) && n >= 4 && n % 4 === 0 && n % cfg.selections === 0, `N ${n}`, 'study.steps',
      `use multiples of 4 and of selections (${cfg.selections}): checkpoints every N/4 put C at N/2, validation runs every N/selections`);
  }
  once(cfg.steps, 'steps');
  for (const [n, ks] of Object.entries(cfg.uniqueImagesAt)) {
    ensure(Number.isInteger(Number(n)) && Number(n) >= 1, `lists K for N '${n}'`, `study.uniqueImagesAt.${n}`, 'key it by a number of steps N, e.g. "300"');
    kList(ks, `uniqueImagesAt.${n}`);
  }
  list(cfg.seeds, 'seeds', 'training seed');
  for (const s of cfg.seeds) ensure(Number.isInteger(s) && s >= 0, `seed ${s}`, 'study.seeds', 'use whole numbers 0 or more');
  once(cfg.seeds, 'seeds');
  ensure(cfg.seeds.length >= 2, `only ${cfg.seeds.length} training seed (${cfg.seeds.join(', ')})`, 'study.seeds',
    'give at least 2 seeds: the interval resamples seeds, and one seed hides the variation between training runs');
  ensure(Number.isInteger(cfg.testImages) && cfg.testImages >= 1, `testImages ${cfg.testImages}`, 'study.testImages',
    'use a whole number of test images, at least 1');
  ensure(Object.prototype.hasOwnProperty.call(FIXED_ORDERS, cfg.fixedOrder), `fixedOrder '${cfg.fixedOrder}'`, 'study.fixedOrder',
    `use one of ${Object.keys(FIXED_ORDERS).join(', ')}`);
  ensure(Number.isInteger(cfg.bootstrapReps) && cfg.bootstrapReps >= 2, `bootstrapReps ${cfg.bootstrapReps}`, 'study.bootstrapReps', 'use 1000 (200 in smoke)');
  ensure(typeof cfg.stage1 === 'object' && cfg.stage1 !== null, 'stage1 is not an object', 'study.stage1', 'pass Stage 1 fields to override, or {}');
  for (const f of ['uniqueImages', 'steps', 'seed', 'warmup', 'checkpointEvery', 'evalEvery', 'orderMode', 'annealTo', 'fixedOrder'] as const) {
    ensure(!(f in cfg.stage1), `stage1.${f} is set, but the study sets it per cell and arm`, `study.stage1.${f}`,
      f === 'uniqueImages' || f === 'steps' || f === 'seed' ? `list it in study.${f === 'seed' ? 'seeds' : f} instead` : 'remove it');
  }
}

/** One cell of the study: its K, N and training seed; `index` is its place in studyCells (the shard rule reads it). */
export interface StudyCell {
  index: number;
  k: number | 'all';
  n: number;
  seed: number;
  /** `K<k>-N<n>-s<seed>`: the cell's folder under the study root. */
  name: string;
}

/** The K values of the grid at N: uniqueImagesAt's list for N, else uniqueImages. */
export const uniqueImagesAt = (cfg: Pick<StudyConfig, 'uniqueImages' | 'uniqueImagesAt'>, n: number): (number | 'all')[] =>
  cfg.uniqueImagesAt[String(n)] ?? cfg.uniqueImages;

/** Every cell, N outermost, then K, then seed: consecutive cells differ in seed, so shards by index % count share the work evenly. */
export function studyCells(cfg: StudyConfig): StudyCell[] {
  const out: StudyCell[] = [];
  for (const n of cfg.steps) {
    for (const k of uniqueImagesAt(cfg, n)) {
      for (const seed of cfg.seeds) out.push({ index: out.length, k, n, seed, name: `K${k}-N${n}-s${seed}` });
    }
  }
  return out;
}

/**
 * The Stage 1 config of each arm of a cell: the profile's Stage 1 config with
 * the cell's K, N and seed, warmup scaled with N as the profile scales it
 * (warmup / steps of the profile), a resume checkpoint every N/4 steps (so C
 * is the checkpoint at N/2) and validation every N / selections steps.
 */
export function cellConfigs(profile: ProfileName, study: StudyConfig, cell: Pick<StudyCell, 'k' | 'n' | 'seed'>, geo: BlockGeometry):
  Record<StudyArm, Stage1Config> {
  const base = stage1Config(profile, 'raster', study.stage1);
  const common: Partial<Stage1Config> = {
    ...study.stage1, uniqueImages: cell.k, steps: cell.n, seed: cell.seed,
    warmup: Math.max(1, Math.round((base.warmup * cell.n) / base.steps)), checkpointEvery: cell.n / 4, evalEvery: cell.n / study.selections,
  };
  return {
    'raster-only': stage1Config(profile, 'raster', common),
    'annealed-raster': stage1Config(profile, 'block-rar', common),
    'kept-random': continuationConfig(profile, 'kept-random', undefined, common),
    'annealed-fixed': continuationConfig(profile, 'annealed-fixed', FIXED_ORDERS[study.fixedOrder](geo), common),
  };
}

/** Epochs over the cell's K images: N · batch / K (K resolved: 'all' is the pool's size). */
export const cellEpochs = (n: number, batch: number, k: number): number => regimeEpochs(n, batch, k);

/** The study's folder under a run root: `<runRoot>/study-<profile>`. */
export const studyRoot = (runRoot: string, profile: ProfileName): string => path.join(runRoot, `study-${profile}`);

/** The fields that choose which cells a study has (the grid) and how it pools them; the rest of a StudyConfig says what every cell is. */
export const STUDY_GRID_FIELDS = ['uniqueImages', 'uniqueImagesAt', 'steps', 'seeds', 'bootstrapReps'] as const;
export type StudyCellSettings = Omit<StudyConfig, (typeof STUDY_GRID_FIELDS)[number]>;

/** What every cell of a study shares: the config without its grid, so a grown grid keeps the cells it has. */
export function studyCellSettings(cfg: StudyConfig): StudyCellSettings {
  const out: Record<string, unknown> = { ...cfg };
  for (const f of STUDY_GRID_FIELDS) delete out[f];
  return out as StudyCellSettings;
}

/** What makes one study folder: its profile, the cell settings, and the data and model every cell trains on. Cells of one study carry its fingerprint. */
export interface StudyIdentity {
  profile: ProfileName;
  study: StudyCellSettings;
  /** The tokenizer that made the tokens, and the split sizes. */
  tokenizer: string;
  trainImages: number;
  testImages: number;
  model: object;
}

/** A short hash of the study's identity (key order does not count). */
export function studyFingerprint(id: StudyIdentity): string {
  return createHash('sha256').update(canonicalJson(id)).digest('hex').slice(0, 16);
}
