/**
 * Curriculum Stage 2: the config of an oracle dataset (METHOD.md §6.2) and
 * its identity. The config says which backbone labels which images, how many
 * states per image, with which reading and weight (the primary labeling) and
 * which further labelings a subset of states gets for the agreement figures
 * (the compare labelings). The identity is what makes two datasets the same:
 * the config without its paths, plus the fingerprints of the backbone and of
 * the labelled tokens (manifest.ts records it and compares it on reopen).
 */
import { ensure, oneOf } from '../runtime/errors';
import { stage1Config } from '../backbone/stage1';
import { activeProfile, profileConfig, ProfileName } from '../runtime/profile';
import { Reading, READINGS, DEFAULT_ORACLE_BATCH, PRIMARY_READING } from './utility';
import { PRIMARY_WEIGHT, WeightName, WEIGHTS } from './weights';

/** One way of labelling a state: which reading of l_j(S), and which weight w for u_extrap. */
export interface OracleLabeling {
  reading: Reading;
  weight: WeightName;
}

/**
 * Everything that shapes an oracle dataset. Build one with
 * `oracleDatasetConfig(profile, { backbone, tokens })`; defaults in
 * ORACLE_DATASET_DEFAULTS, per-profile sizes in ORACLE_DATASET_PROFILES.
 */
export interface OracleDatasetConfig {
  /** Stage 1 checkpoint file (the frozen, order-robust backbone). Recorded with its fingerprint. */
  backbone: string;
  /** Tokenizer run folder (or its tokens.safetensors) holding the token cache. */
  tokens: string;
  /** Which split of the token cache to label. Default 'train' (the planner trains on it). */
  split: 'train' | 'test';
  /** Label the first `images` images of the split. */
  images: number;
  /** States per image; |S| cycles over 0 .. numBlocks-1 (see the module comment). Default 16. */
  statesPerImage: number;
  /** Block size in tokens; must equal the backbone's Stage 1 block size. Default 2 x 2. */
  blockH: number;
  blockW: number;
  /**
   * The primary reading of l_j(S) (METHOD.md §3). Default 'block-marginal':
   * in distribution and free of any reference order (utility.ts).
   */
  reading: Reading;
  /** The weight w(j, a) of the primary u_extrap. Default PRIMARY_WEIGHT (weights.ts), the one line that switches it. */
  weight: WeightName;
  /**
   * Further labelings of a subset of states (the images with index % compareEvery == 0), for
   * the agreement figures: the other reading, other weights. Entries equal to the primary are dropped.
   * Labelings of one reading share their backbone passes (build.ts), so another weight of a
   * reading already scored costs no backbone time.
   */
  compare: OracleLabeling[];
  /** Images i with i % compareEvery == 0 get the `compare` labelings too. Default 4. */
  compareEvery: number;
  /** Seed of the visible-set draws. */
  seed: number;
  /** Images per part file (the unit of resume and of sharding). Default 16. */
  imagesPerPart: number;
  /**
   * States per scoreStates call (the progress bar moves per call). States of a
   * part are scored sorted by |S|, so one call holds few sizes and the scorer
   * can pack states of equal |S| into one pass. Default 32.
   */
  statesPerCall: number;
  /** Sequences per batched pass inside the scorer (OracleConfig.batch). Default 64 (DEFAULT_ORACLE_BATCH). */
  passBatch: number;
  /**
   * Given states instead of the seeded random ones (states.ts): the on-policy
   * rounds (lib/planner/on-policy.ts) label the states their planner visits.
   * Absent for the Stage 2 dataset. Recorded in the identity by `source` and
   * a fingerprint of the sequences, so another planner's states are refused.
   */
  explicitStates?: OracleExplicitStates;
}

/** States given one by one: state s of image i is `sequences[i * statesPerImage + s]`, its visible blocks in reveal order. */
export interface OracleExplicitStates {
  /** Who chose these states, in words that change when they change (e.g. the rolling-out planner's weights fingerprint). */
  source: string;
  /** images * statesPerImage reveal sequences, each fewer than numBlocks distinct blocks. */
  sequences: number[][];
}

/** Defaults of every field but the paths. */
export const ORACLE_DATASET_DEFAULTS: Omit<OracleDatasetConfig, 'backbone' | 'tokens'> = {
  split: 'train',
  images: 256,
  statesPerImage: 16,
  blockH: 2,
  blockW: 2,
  reading: PRIMARY_READING,
  weight: PRIMARY_WEIGHT,
  // The other two readings with the primary's weight (what changed, reading by reading), w = 1 for
  // block-marginal and teacher-forced (the limits METHOD.md §3 derives are for w = 1), and every
  // weight of the primary reading: notebook 03's label-position table sets each against its count
  // prior (METHOD.md §3.2). compareLabelings drops the primary and repeats. Labelings of one
  // reading share their backbone passes (build.ts): the block-marginal ones reuse the primary's,
  // teacher-forced/uniform those of teacher-forced/primary's weight, so the compare images are
  // scored under two readings whatever the number of weights.
  compare: [
    { reading: 'teacher-forced', weight: PRIMARY_WEIGHT },
    { reading: 'one-step', weight: PRIMARY_WEIGHT },
    { reading: 'block-marginal', weight: 'uniform' },
    { reading: 'teacher-forced', weight: 'uniform' },
    ...WEIGHTS.map((weight) => ({ reading: PRIMARY_READING, weight })),
  ],
  compareEvery: 4,
  seed: 0,
  imagesPerPart: 16,
  statesPerCall: 32,
  passBatch: DEFAULT_ORACLE_BATCH,
};

/**
 * Per-profile sizes. smoke: 8 images (128 states) in a few seconds (CI).
 * default: 384 images (6,144 states, plus 7 compare labelings of the 1,536
 * states of every 4th image from 3,072 compare scorings: the teacher-forced
 * and one-step readings; the block-marginal ones reuse the primary's passes).
 * Before the passes were shared, 4 compare labelings took 6,144 scorings and
 * the build ran at 23.8 primary states/s with the `small` backbone on our
 * 2-core machine on 2 worker threads, idle (bench, 24 images), and 20.4 in the
 * default run of 2026-12-02 while other jobs shared the machine: about 5
 * minutes. Shared passes, 7 compare labelings, measured 2026-12-07 on one
 * thread beside other jobs (load 9 on the 2 cores), 8 images of this config
 * with a random-init `small` backbone: 25.2-25.6 s, against 29.3-34.1 s for
 * the former build with its 4 (old and new builds interleaved). full: 4x default.
 */
export const ORACLE_DATASET_PROFILES: Record<ProfileName, Partial<OracleDatasetConfig>> = {
  smoke: { images: 8, statesPerImage: 16, imagesPerPart: 2, compareEvery: 2 },
  default: { images: 384, statesPerImage: 16, imagesPerPart: 16, compareEvery: 4 },
  full: { images: 1536, statesPerImage: 16, imagesPerPart: 32, compareEvery: 4 },
};

/** The config of a profile for a backbone checkpoint and a tokenizer run, with overrides on top. */
export function oracleDatasetConfig(
  profile: ProfileName = activeProfile(),
  paths: { backbone: string; tokens: string },
  overrides: Partial<OracleDatasetConfig> = {},
): OracleDatasetConfig {
  const cfg = profileConfig({ ...ORACLE_DATASET_DEFAULTS, ...paths }, ORACLE_DATASET_PROFILES, profile, overrides, validateOracleDatasetConfig);
  // The planner's images are the first plannerImages of the train split, which no backbone trains on (backbone/regime.ts).
  const share = stage1Config(profile, 'block-rar').plannerImages;
  ensure(cfg.split !== 'train' || cfg.images <= share, `oracle.images ${cfg.images} is more than the ${share} train-split images left to the planner`,
    'oracle.images', `use at most ${share} (stage1.plannerImages of the ${profile} profile): more would label images the backbones train on`);
  return cfg;
}

/** Check every field; errors name the field (`oracle.images`) and the fix. */
export function validateOracleDatasetConfig(cfg: OracleDatasetConfig): void {
  const int = (name: keyof OracleDatasetConfig, min: number) => {
    const v = cfg[name] as unknown as number;
    ensure(Number.isInteger(v) && v >= min, `must be a whole number >= ${min}, got ${JSON.stringify(v)}`, `oracle.${name}`, `set ${name} to a whole number >= ${min}`);
  };
  ensure(typeof cfg.backbone === 'string' && cfg.backbone.length > 0, 'no backbone checkpoint given', 'oracle.backbone',
    'pass the Stage 1 checkpoint file (randomPhaseCheckpoint(stage1RunDir) picks the last r = 1.00 one)');
  ensure(typeof cfg.tokens === 'string' && cfg.tokens.length > 0, 'no token cache given', 'oracle.tokens',
    'pass the tokenizer run folder (tokenizerRunDir(runRoot, profile))');
  oneOf(cfg.split, ['train', 'test'] as const, 'oracle.split');
  int('images', 1);
  int('statesPerImage', 1);
  int('blockH', 1);
  int('blockW', 1);
  oneOf(cfg.reading, READINGS, 'oracle.reading');
  oneOf(cfg.weight, WEIGHTS, 'oracle.weight');
  ensure(Array.isArray(cfg.compare), 'must be a list of { reading, weight }', 'oracle.compare', "pass [] or e.g. [{ reading: 'one-step', weight: 'uniform' }]");
  cfg.compare.forEach((c, i) => {
    oneOf(c?.reading, READINGS, `oracle.compare[${i}].reading`);
    oneOf(c?.weight, WEIGHTS, `oracle.compare[${i}].weight`);
  });
  int('compareEvery', 1);
  int('seed', 0);
  int('imagesPerPart', 1);
  int('statesPerCall', 1);
  int('passBatch', 1);
  const ex = cfg.explicitStates;
  if (ex !== undefined) {
    ensure(typeof ex?.source === 'string' && ex.source.length > 0, 'has no source', 'oracle.explicitStates.source',
      'say who chose the states (lib/planner/on-policy.ts passes the planner fingerprint)');
    const want = cfg.images * cfg.statesPerImage;
    ensure(Array.isArray(ex.sequences) && ex.sequences.length === want && ex.sequences.every((q) => Array.isArray(q) && q.every(Number.isInteger)),
      `must be ${want} lists of block indices (images x statesPerImage), got ${Array.isArray(ex.sequences) ? ex.sequences.length : typeof ex.sequences}`,
      'oracle.explicitStates.sequences', 'give one reveal sequence per (image, state), image after image');
  }
}

/** The compare labelings that differ from the primary, without repeats, in the given order. */
export function compareLabelings(cfg: Pick<OracleDatasetConfig, 'reading' | 'weight' | 'compare'>): OracleLabeling[] {
  const seen = new Set([`${cfg.reading}/${cfg.weight}`]);
  const out: OracleLabeling[] = [];
  for (const c of cfg.compare) {
    const key = `${c.reading}/${c.weight}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push({ reading: c.reading, weight: c.weight });
    }
  }
  return out;
}

/** What makes two datasets the same: the config without paths, plus the content fingerprints. */
export interface OracleDatasetIdentity extends Omit<OracleDatasetConfig, 'backbone' | 'tokens' | 'compare' | 'explicitStates'> {
  compare: OracleLabeling[];
  /** Present only for given states: who chose them and sha256 (16 hex) of the sequences (the manifest's config holds them). */
  explicitStates?: { source: string; fingerprint: string };
  /** sha256 (16 hex) of the backbone checkpoint file. */
  backboneFingerprint: string;
  /** sha256 (16 hex) of the labelled split's tokens and labels. */
  tokensFingerprint: string;
  gridH: number;
  gridW: number;
}
