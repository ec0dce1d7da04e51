/**
 * On-policy rounds after Stage 3 (METHOD.md §6.3.1), in the manner of DAgger
 * [Ross et al. 2011]: the Stage 3 planner is trained on prefixes of uniformly
 * random block orders (oracle/states.ts), but when it decodes it meets the
 * states of its *own* orders, which can differ systematically (an outside-in
 * planner sees rings of visible border blocks that random orders rarely make).
 * Each round labels the states the current planner visits and trains again on
 * everything labelled so far:
 *
 *   D_0 = the Stage 2 oracle states,  π_0 = the Stage 3 planner (run `from`)
 *   round k = 1..R:  roll π_{k-1} out on the planner's images, teacher-forced on their true tokens;
 *                    label the visited states with the same oracle;  D_k = D_{k-1} ∪ {(S, a*(S))};
 *                    π_k = Stage 3's training on D_k
 *
 * - Which images: the oracle dataset's own (the first images of the train
 *   split, which no backbone trains on: backbone/regime.ts), so a round's
 *   states of an image fall in the same train / val / test split (by image) as
 *   that image's random-order states. The held-out third of that split is
 *   labelled with the rest but unused: the before/after measurement rolls the
 *   planners out on test-split images instead (below).
 * - Which states: `statesPerImage` prefixes per image and rollout, of sizes
 *   |S| = 1 + ((i·k + s) mod (numBlocks − 2)) (onPolicySizes), cycling evenly
 *   over 1 .. numBlocks − 2. The empty state is left out (every order starts
 *   there, D_0 holds it for every image, and with all blocks unseen it is the
 *   dearest state to label) and so is the state with one block left (no choice).
 * - Labels: the oracle build itself (oracle/build.ts) on the visited states
 *   given as `explicitStates`: same backbone, reading and weight as D_0, same
 *   part files, manifest and merged file, so loadOracleDataset, the feature
 *   cache and plannerData read a round like the Stage 2 dataset.
 * - Training: each round *retrains from scratch* with Stage 3's config of
 *   `from` (same steps, seed and initialisation), not continuing π_{k-1}: then
 *   π_R and π_0 differ only in their data, and a gain cannot come from extra
 *   optimizer steps. Validation (checkpoint choice) is on D_k's val images.
 * - Measure: held-out top-1 and regret on the planners' *own* states, i.e.
 *   rollouts of π_0 and of π_R on the first `heldOutImages` images of the test
 *   split (no planner trains or selects on them), labelled by the same oracle;
 *   and on the Stage 3 held-out random-order states, so a regression there
 *   shows. Paired differences (π_R − π_0) with 95% bootstrap intervals over states.
 *
 * Folder (`<planner root>/on-policy-<from>`, curriculum.ts `runs.onPolicy`):
 *   round-<k>/planner-orders.json    π_{k-1}'s block orders (planner-orders.ts cache)
 *   round-<k>/states/                the labelled visited states (an oracle dataset folder)
 *   round-<k>/oracle-features.safetensors   their backbone features
 *   round-<k>/planner/               π_k's training run (train.ts)
 *   round-<k>/round.json             written when round k is finished: never redone
 *   held-out-<k>/                    π_k's rollouts on test-split images: orders, states, features
 * Every file is written atomically; a killed round resumes from its parts and
 * checkpoints; states of another planner, backbone or weight are refused.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ensure, OrderHeadError } from '../runtime/errors';
import { writeFileAtomic } from '../runtime/atomic';
import { latestCheckpoint } from '../runtime/checkpoint';
import { profileConfig, ProfileName } from '../runtime/profile';
import { Progress } from '../runtime/progress';
import { GPT } from '../backbone/gpt';
import { BlockGeometry } from '../order';
import { TokenCache } from '../tokenizer/cache';
import { OracleDataset, loadOracleDataset } from '../oracle/dataset';
import { OracleDatasetConfig } from '../oracle/dataset-config';
import { buildOracleDataset, OracleScorer } from '../oracle/build';
import { buildOracleDatasetParallel } from '../oracle/parallel';
import { mergeOracleDataset } from '../oracle/merge';
import { prepareOracleDataset, readOracleManifest } from '../oracle/manifest';
import { ORACLE_DATASET_FILE } from '../oracle/layout';
import { estimateCell, findingsSection } from '../stats/findings';
import { PlannerFeatures } from './features';
import { disposePlanner, Planner } from './orderhead';
import { buildPlannerOrders } from './planner-orders';
import { plannerPolicy } from './policy';
import { LoadedPlanner, loadPlanner, PlannerCheckpointConfig, PlannerData, plannerData, PlannerTrainConfig, plannerTrainConfig, splitByImage, trainPlanner } from './train';
import {
  evaluateChoosers, MetricsRow, oracleStateFeatures, PairedDifference, pairedDifference, pairedFinding, plannerChooser, PRIMARY_STAGE3_RUN,
  STAGE3_RUNS, verdict,
} from './stages';

const STAGE3_CELL = 'notebooks/04_stage3_orderhead.ipynb, the "Train" cell (oh.planner.trainStage3Runs)';
const ON_POLICY_CELL = 'notebooks/04_stage3_orderhead.ipynb, the "On-policy rounds" cell (oh.planner.runOnPolicyRounds)';

/** The on-policy folder of the rounds started from Stage 3 run `from`, under the planner root. */
export const onPolicyDirName = (from: string): string => `on-policy-${from}`;
/** Round k's folder (k = 1..R) inside the on-policy folder. */
export const onPolicyRoundDir = (dir: string, k: number): string => path.join(dir, `round-${k}`);
/** The training run of round k's planner π_k: `round-<k>/planner` (its best checkpoint is what later stages load). */
export const ON_POLICY_PLANNER_RUN = 'planner';
/** The held-out rollouts of π_k (k = 0: the Stage 3 planner). */
export const onPolicyHeldOutDir = (dir: string, k: number): string => path.join(dir, `held-out-${k}`);

export interface OnPolicyConfig {
  /** DAgger rounds R after Stage 3. Default 2 (default profile); smoke 1; full 3. */
  rounds: number;
  /**
   * Visited states labelled per image and rollout, of sizes cycling over 1 .. numBlocks − 2
   * (onPolicySizes); at most numBlocks − 2. Default 8 (of the 14 such sizes on a 4x4 block grid).
   */
  statesPerImage: number;
  /** Test-split images on which π_0 and π_R are rolled out for the before/after measurement. Default 64; smoke 4; full 256. */
  heldOutImages: number;
  /** The Stage 3 run π_0 comes from; its label and target are kept. Default PRIMARY_STAGE3_RUN. */
  from: string;
  /** Every round's training: Stage 3's config of `from`, unchanged (each round retrains from scratch, see the module comment). */
  train: PlannerTrainConfig;
  /** Labelling threads (one wasm backend each; 1 = this thread, with the loaded backbone). Default 2; smoke 1. */
  workers: number;
  /** Images per rollout call. Default 256. */
  rolloutBatch: number;
  /** Bootstrap resamples of the before/after intervals. Default 1000. */
  bootstrapReps: number;
}

/** The on-policy config of a profile (overrides on top). */
export function onPolicyConfig(profile: ProfileName, overrides: Partial<OnPolicyConfig> = {}): OnPolicyConfig {
  const run = STAGE3_RUNS.find((r) => r.key === (overrides.from ?? PRIMARY_STAGE3_RUN));
  ensure(run, `unknown Stage 3 run '${overrides.from}'`, 'onPolicy.from', `use one of: ${STAGE3_RUNS.map((r) => r.key).join(', ')}`);
  const defaults: OnPolicyConfig = {
    rounds: 2, statesPerImage: 8, heldOutImages: 64, from: run.key, train: plannerTrainConfig(profile, { label: run.label, target: run.target }),
    workers: 2, rolloutBatch: 256, bootstrapReps: 1000,
  };
  return profileConfig(defaults, {
    smoke: { rounds: 1, heldOutImages: 4, workers: 1 },
    default: {},
    full: { rounds: 3, heldOutImages: 256 },
  }, profile, overrides, validateOnPolicyConfig);
}

export function validateOnPolicyConfig(cfg: OnPolicyConfig): void {
  for (const [k, min] of [['rounds', 1], ['statesPerImage', 1], ['heldOutImages', 1], ['workers', 1], ['rolloutBatch', 1], ['bootstrapReps', 10]] as const) {
    ensure(Number.isInteger(cfg[k]) && cfg[k] >= min, `must be a whole number >= ${min}, got ${JSON.stringify(cfg[k])}`, `onPolicy.${k}`, `set ${k} to a whole number >= ${min}`);
  }
  ensure(STAGE3_RUNS.some((r) => r.key === cfg.from), `unknown Stage 3 run '${cfg.from}'`, 'onPolicy.from', `use one of: ${STAGE3_RUNS.map((r) => r.key).join(', ')}`);
}

/** |S| of visited state s (0-based) of image i: cycles over 1 .. numBlocks − 2 across images (see the module comment). */
export function onPolicySize(statesPerImage: number, numBlocks: number, image: number, s: number): number {
  return 1 + ((image * statesPerImage + s) % (numBlocks - 2));
}

/** The visited states of each image: prefixes of its block order (`orders[i*nb ..]`) of the onPolicySize sizes, image after image. */
export function onPolicySequences(orders: ArrayLike<number>, numBlocks: number, statesPerImage: number): number[][] {
  const n = orders.length / numBlocks, out: number[][] = [];
  for (let i = 0; i < n; i++) {
    const order = Array.from({ length: numBlocks }, (_, t) => orders[i * numBlocks + t]);
    for (let s = 0; s < statesPerImage; s++) out.push(order.slice(0, onPolicySize(statesPerImage, numBlocks, i, s)));
  }
  return out;
}

type ProgressFactory = (opts: { total: number; label: string }) => Progress;

/** What every round reads: the Stage 2 dataset D_0 with its features, the token cache and the frozen backbone that labelled D_0. */
export interface OnPolicyInputs {
  /** The on-policy folder (curriculum `runs.onPolicy.dir`). */
  dir: string;
  /** The Stage 3 run folder of π_0 (curriculum `runs.stage3[cfg.from].dir`). */
  stage3Run: string;
  ds: OracleDataset;
  features: PlannerFeatures;
  cache: TokenCache;
  backbone: GPT;
}

export interface OnPolicyOptions {
  progress?: ProgressFactory;
  /** Write the summary here when every round and measurement is done (curriculum `runs.files.onPolicySummary`). */
  summaryFile?: string;
  /** Stop after this many training steps per call of a round's training (tests: a kill mid-round). */
  maxSteps?: number;
  /** Stop after this many part files per labelling call (tests; one worker only). */
  maxParts?: number;
  /** Replace the oracle scorer (tests; one worker only). */
  scorer?: OracleScorer;
}

/** One finished round, as round.json records it. */
export interface OnPolicyRound {
  round: number;
  /** The planner that was rolled out (π_{k-1}): `planner <weights fingerprint> R=<R>`. */
  collectedBy: string;
  /** Visited states labelled in this round, and the training / validation states of D_k. */
  states: number;
  trainStates: number;
  valStates: number;
  steps: number;
  bestStep: number;
  bestValLoss: number;
  /** π_k's best checkpoint. */
  planner: string;
  /** Wall seconds of the call that finished each phase (a resumed phase counts only its last call). */
  seconds: { rollout: number; labelling: number; features: number; training: number };
}

/** π_0 against π_R on one set of held-out states. */
export interface OnPolicyComparison {
  states: string;
  n: number;
  images: number;
  before: MetricsRow;
  after: MetricsRow;
  /** after − before, per state: top-1 (higher is better) and regret (nats, lower is better). */
  top1: PairedDifference;
  regret: PairedDifference;
}

export interface OnPolicyResult {
  /** False when maxSteps / maxParts stopped the call; call again to continue. */
  finished: boolean;
  /** Where an unfinished call stopped. */
  stoppedIn?: string;
  rounds: OnPolicyRound[];
  /** Empty until every round is done. */
  comparison: OnPolicyComparison[];
  /** π_R's best checkpoint, once finished. */
  finalPlanner?: string;
  label: string;
  reading: string;
  weight: string;
  config: Omit<OnPolicyConfig, 'train'> & { steps: number };
  /** The held-out rollouts of π_0 and π_R, as their held-out.json records them. */
  heldOut: OnPolicyHeldOut[];
}

/** One finished set of held-out rollouts (`held-out-<k>/held-out.json`). */
export interface OnPolicyHeldOut {
  /** k of the planner π_k that was rolled out. */
  planner: number;
  collectedBy: string;
  states: number;
  images: number;
  /** Wall seconds of the call that finished each phase. */
  seconds: { rollout: number; labelling: number; features: number };
}

/** What every labelling call shares: D_0's config (backbone, reading, weight, parts), the backbone and its file fingerprint, the token cache. */
export interface VisitedStatesContext {
  base: OracleDatasetConfig;
  backbone: GPT;
  backboneFingerprint: string;
  geo: BlockGeometry;
  cache: TokenCache;
  cfg: OnPolicyConfig;
  opts: OnPolicyOptions;
}

const sec = (t0: number): number => (performance.now() - t0) / 1000;

/**
 * Label the states planner `pl` visits on the first `images` images of
 * `split`: roll it out teacher-forced (planner-orders.ts, cached in
 * `<dir>/planner-orders.json`), take the onPolicySequences prefixes and run
 * the oracle build on them in `<dir>/states` with D_0's config (backbone,
 * reading, weight, parts), no compare labelings. Resumes a partial build;
 * a merged one is only checked and loaded. Refuses, before writing anything,
 * a states folder of another planner (`explicitStates.source`) and, through
 * the manifest, of another backbone, weight, reading or size. Returns no
 * `ds` when `maxParts` stopped the build.
 */
export async function labelVisitedStates(dir: string, pl: Planner, spec: { split: 'train' | 'test'; images: number; label: string }, ctx: VisitedStatesContext):
  Promise<{ ds?: OracleDataset; source: string; seconds: { rollout: number; labelling: number } }> {
  const { base, backbone, geo, cache, cfg, opts } = ctx;
  const k = cfg.statesPerImage, nb = geo.numBlocks;
  ensure(nb >= 3 && k <= nb - 2, `statesPerImage ${k} is more than the ${nb - 2} state sizes 1..${nb - 2} a rollout visits with a choice left`,
    'onPolicy.statesPerImage', `use at most ${Math.max(1, nb - 2)} (numBlocks − 2)`);
  const source = plannerPolicy(pl, backbone, geo).fingerprint!; // `planner <weights fingerprint> R=<R>`: a planner policy always has one
  const statesDir = path.join(dir, 'states');
  const split = spec.split === 'train' ? cache.train : cache.test;
  ensure(spec.images <= split.n, `asks for ${spec.images} images but the ${spec.split} split has ${split.n}`,
    spec.split === 'test' ? 'onPolicy.heldOutImages' : 'oracle.images', `use at most ${split.n}`);
  const dsCfg = (sequences: number[][]): OracleDatasetConfig => ({
    ...base, split: spec.split, images: spec.images, statesPerImage: k, compare: [], explicitStates: { source, sequences },
  });
  let sequences: number[][];
  let rollout = 0;
  if (fs.existsSync(path.join(statesDir, 'manifest.json'))) {
    // Checked before any rollout or write: a refusal leaves the folder as it was.
    const m = readOracleManifest(statesDir);
    const had = m.identity.explicitStates?.source;
    const again = `delete ${dir} and the rounds after it, then run ${ON_POLICY_CELL} again; or restore the planner, oracle dataset and config they were labelled with`;
    if (had !== source) {
      throw new OrderHeadError(`holds the states visited by ${had ?? 'no planner (uniformly random orders)'}, but this step labels those of ${source}`,
        `${statesDir} (explicitStates.source)`, `the planner that rolls out here changed since its states were labelled (Stage 3 or an earlier round was retrained): ${again}`);
    }
    const want = { split: spec.split, images: spec.images, statesPerImage: k };
    for (const f of ['split', 'images', 'statesPerImage'] as const) {
      ensure(m.config[f] === want[f], `was labelled with ${f} = ${m.config[f]}, this step uses ${want[f]}`, `${statesDir} (${f})`, again);
    }
    sequences = m.config.explicitStates!.sequences;
    prepareOracleDataset(statesDir, dsCfg(sequences)); // refuses another backbone, weight or reading (each field named); writes nothing
  } else {
    const t0 = performance.now();
    fs.mkdirSync(dir, { recursive: true });
    const rollBar = opts.progress?.({ total: spec.images, label: `${spec.label}: rollouts` });
    const { table } = await buildPlannerOrders({
      file: path.join(dir, 'planner-orders.json'), planner: pl, R: pl.cfg.latentSteps, backbone, backboneFingerprint: ctx.backboneFingerprint, geo,
      data: { ...split, tokenizer: cache.tokenizer.fingerprint }, images: Int32Array.from({ length: spec.images }, (_, i) => i), batch: cfg.rolloutBatch,
      onBatch: (done) => rollBar?.tick(done - rollBar.count),
    });
    rollBar?.done();
    rollout = sec(t0);
    sequences = onPolicySequences(table.blockOrders.subarray(0, spec.images * nb), nb, k);
  }
  const t1 = performance.now();
  if (fs.existsSync(path.join(statesDir, ORACLE_DATASET_FILE))) return { ds: loadOracleDataset(statesDir), source, seconds: { rollout, labelling: 0 } };
  const progress = opts.progress && ((o: { total: number; label: string }) => opts.progress!({ ...o, label: `${spec.label}: oracle` }));
  if (cfg.workers > 1 && opts.maxParts === undefined && opts.scorer === undefined) {
    await buildOracleDatasetParallel(statesDir, dsCfg(sequences), { workers: cfg.workers, progress });
  } else {
    const res = await buildOracleDataset(statesDir, dsCfg(sequences), { model: backbone, progress, maxParts: opts.maxParts, scorer: opts.scorer });
    if (res.written + res.skipped < res.shardParts) return { source, seconds: { rollout, labelling: sec(t1) } };
    mergeOracleDataset(statesDir);
  }
  return { ds: loadOracleDataset(statesDir), source, seconds: { rollout, labelling: sec(t1) } };
}

/**
 * Concatenate planner data sets (D ← D ∪ D_k): the same label, reading,
 * weight, backbone and feature width, rows in the given order.
 */
export function aggregatePlannerData(parts: readonly PlannerData[]): PlannerData {
  ensure(parts.length > 0, 'nothing to aggregate', 'aggregatePlannerData(parts)', 'pass the Stage 2 data and every round\'s data');
  const first = parts[0], f0 = first.features;
  for (const [i, p] of parts.entries()) {
    for (const k of ['label', 'reading', 'weight', 'backboneFingerprint'] as const) {
      ensure(p[k] === first[k], `part ${i} has ${k} '${p[k]}', part 0 '${first[k]}'`, `aggregatePlannerData(parts[${i}].${k})`,
        'label every part with the same oracle (backbone, reading, weight) and train on the same label');
    }
    ensure(p.features.numBlocks === f0.numBlocks && p.features.dim === f0.dim, `part ${i} has ${p.features.numBlocks} blocks of width ${p.features.dim}, ` +
      `part 0 ${f0.numBlocks} of width ${f0.dim}`, `aggregatePlannerData(parts[${i}].features)`, 'compute every part\'s features with the same backbone');
  }
  const cat = <A extends Float32Array | Int32Array | Uint8Array>(get: (p: PlannerData) => A): A => {
    const list = parts.map(get), out = new (list[0].constructor as new (n: number) => A)(list.reduce((a, x) => a + x.length, 0));
    let off = 0;
    for (const x of list) { out.set(x as never, off); off += x.length; }
    return out;
  };
  const features: PlannerFeatures = {
    n: parts.reduce((a, p) => a + p.features.n, 0), numBlocks: f0.numBlocks, dim: f0.dim, hidden: cat((p) => p.features.hidden),
    entropy: cat((p) => p.features.entropy), visible: cat((p) => p.features.visible), classId: cat((p) => p.features.classId),
  };
  return {
    features, utility: cat((p) => p.utility), aStar: cat((p) => p.aStar), size: cat((p) => p.size), image: cat((p) => p.image),
    label: first.label, reading: first.reading, weight: first.weight, backboneFingerprint: first.backboneFingerprint,
  };
}

/**
 * π_0: the best planner of the Stage 3 run, which must be finished and
 * trained on D_0's backbone, label, reading and weight. Without it the
 * rounds cannot start: the error names the run folder and the cell that trains it.
 */
function stage3Planner(runDir: string, cfg: OnPolicyConfig, ds: OracleDataset): LoadedPlanner {
  const ckDir = path.join(runDir, 'checkpoints');
  const best = latestCheckpoint(ckDir, 'best');
  const last = latestCheckpoint(ckDir, 'planner');
  const fix = `train it first: run ${STAGE3_CELL} in this profile, then the on-policy cell`;
  if (!best) throw new OrderHeadError('an on-policy round needs the trained Stage 3 planner π_0, and this run folder has none (no best-step*.safetensors)', runDir, fix);
  let steps = NaN;
  try {
    steps = (JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8')) as PlannerCheckpointConfig).train.steps;
  } catch { /* no readable config: the step check below names the folder */ }
  ensure(last && last.step === steps, `the Stage 3 run is not finished (step ${last?.step ?? 0} of ${steps})`, runDir,
    `${fix.replace('train it first', 'finish it')}: π_0 must be its final best planner, or the rounds would be refused once it changes`);
  const loaded = loadPlanner(best.path, { backboneFingerprint: ds.manifest.backbone.fingerprint });
  const p = ds.labelings[0], c = loaded.config;
  const wrong = (['label', 'reading', 'weight'] as const).find((k) => c[k] !== ({ label: cfg.train.label, reading: p.reading, weight: p.weight })[k]);
  if (wrong) {
    disposePlanner(loaded.planner);
    throw new OrderHeadError(`the Stage 3 planner was trained with ${wrong} '${c[wrong]}', the rounds use '${wrong === 'label' ? cfg.train.label : p[wrong]}' ` +
      `(the oracle dataset's primary labeling and onPolicy.from)`, `${best.path} (${wrong})`,
      `retrain Stage 3 on this oracle dataset (${STAGE3_CELL}), or point onPolicy.from at the run trained with that ${wrong}`);
  }
  return loaded;
}

/**
 * The on-policy rounds (see the module comment): R rounds after Stage 3,
 * then the before/after measurement. Resumable and idempotent: a finished
 * round is read back from its round.json and checkpoints, never redone. The
 * backbone stays the caller's; every planner loaded here is disposed.
 */
export async function runOnPolicyRounds(inp: OnPolicyInputs, cfg: OnPolicyConfig, opts: OnPolicyOptions = {}): Promise<OnPolicyResult> {
  validateOnPolicyConfig(cfg);
  const { ds, cache, backbone, dir } = inp;
  const geo = ds.geo;
  const primary = ds.labelings[0];
  const grid = { blocksY: geo.blocksY, blocksX: geo.blocksX, numClasses: backbone.cfg.numClasses };
  const ctx: VisitedStatesContext = { base: ds.manifest.config, backbone, backboneFingerprint: ds.manifest.backbone.fingerprint, geo, cache, cfg, opts };
  const { train: _t, ...rest } = cfg;
  const result: OnPolicyResult = {
    finished: false, rounds: [], comparison: [], label: cfg.train.label, reading: primary.reading, weight: primary.weight,
    config: { ...rest, steps: cfg.train.steps }, heldOut: [],
  };
  const stop = (where: string): OnPolicyResult => ({ ...result, stoppedIn: where });
  const d0 = plannerData(ds, inp.features, cfg.train.label, cfg.train.reading);
  const pi0 = stage3Planner(inp.stage3Run, cfg, ds).planner;
  const planners: Planner[] = [pi0];
  const features = (sub: string, states: OracleDataset, label: string): { f: PlannerFeatures; seconds: number } => {
    const bar = opts.progress?.({ total: states.n, label: `${label}: features` });
    const r = oracleStateFeatures(sub, states, cache, backbone, { onBatch: (done) => bar?.tick(done - bar.count) });
    bar?.done();
    return { f: r.features, seconds: r.seconds };
  };
  try {
    const parts: PlannerData[] = [d0];
    for (let k = 1; k <= cfg.rounds; k++) {
      const roundDir = onPolicyRoundDir(dir, k), label = `on-policy round ${k}`;
      const states = await labelVisitedStates(roundDir, planners[k - 1], { split: ds.manifest.config.split, images: ds.manifest.config.images, label }, ctx);
      if (!states.ds) return stop(`round ${k}: labelling`);
      const feats = features(roundDir, states.ds, label);
      parts.push(plannerData(states.ds, feats.f, cfg.train.label, cfg.train.reading));
      const data = aggregatePlannerData(parts);
      const t0 = performance.now();
      const bar = opts.progress?.({ total: cfg.train.steps, label: `${label}: train` });
      const res = trainPlanner(roundDir, ON_POLICY_PLANNER_RUN, cfg.train, data, grid, {
        maxSteps: opts.maxSteps,
        onStep: (_s, m) => bar?.tick(1, m.valTop1 !== undefined ? { loss: m.loss, 'val top-1': m.valTop1 } : { loss: m.loss }),
      });
      bar?.done();
      planners.push(res.planner);
      if (res.steps < cfg.train.steps) return stop(`round ${k}: training (step ${res.steps} of ${cfg.train.steps})`);
      const split = splitByImage(data.image, cfg.train.heldOutEvery);
      result.rounds.push(record<OnPolicyRound>(path.join(roundDir, 'round.json'), () => ({
        round: k, collectedBy: states.source, states: states.ds!.n, trainStates: split.train.length, valStates: split.val.length,
        steps: res.steps, bestStep: res.bestStep, bestValLoss: res.bestValLoss, planner: res.bestPath,
        seconds: { ...states.seconds, features: feats.seconds, training: sec(t0) },
      })));
      // π_{k-1} is no longer needed (π_0 is kept for the measurement).
      if (k > 1) { disposePlanner(planners[k - 1]); planners[k - 1] = undefined as unknown as Planner; }
    }
    const piR = planners[cfg.rounds];
    // The before/after measurement on the planners' own held-out states.
    const own: { k: number; ds: OracleDataset; f: PlannerFeatures }[] = [];
    for (const k of [0, cfg.rounds]) {
      const sub = onPolicyHeldOutDir(dir, k), label = `held-out rollouts of π_${k}`;
      const s = await labelVisitedStates(sub, k === 0 ? pi0 : piR, { split: 'test', images: cfg.heldOutImages, label }, ctx);
      if (!s.ds) return stop(`held-out states of π_${k}: labelling`);
      const feats = features(sub, s.ds, label);
      result.heldOut.push(record<OnPolicyHeldOut>(path.join(sub, 'held-out.json'), () => ({
        planner: k, collectedBy: s.source, states: s.ds!.n, images: cfg.heldOutImages, seconds: { ...s.seconds, features: feats.seconds },
      })));
      own.push({ k, ds: s.ds, f: feats.f });
    }
    const R = cfg.rounds, reps = cfg.bootstrapReps;
    const compare = (states: string, data: PlannerData, rows: readonly number[]): OnPolicyComparison => {
      const [before, after] = evaluateChoosers(data, rows, [
        plannerChooser(pi0, data, rows, 0, `Stage 3 planner (π_0, ${cfg.from})`),
        plannerChooser(piR, data, rows, 0, `on-policy planner (π_${R}, after ${R} round${R > 1 ? 's' : ''})`),
      ], reps);
      return {
        states, n: before.summary.n, images: new Set(rows.map((r) => data.image[r])).size, before, after,
        top1: pairedDifference(before, after, 'correct', reps), regret: pairedDifference(before, after, 'regret', reps),
      };
    };
    const all = (d: OracleDataset) => Array.from({ length: d.n }, (_, i) => i);
    result.comparison = [
      ...own.map(({ k, ds: h, f }) => compare(`π_${k}'s own states (${k === 0 ? 'Stage 3' : 'on-policy'} planner; held-out test images)`,
        plannerData(h, f, cfg.train.label, cfg.train.reading), all(h))),
      compare('random-order states (the Stage 3 held-out set)', d0, splitByImage(d0.image, cfg.train.heldOutEvery).test),
    ];
    result.finished = true;
    result.finalPlanner = result.rounds[R - 1].planner;
    if (opts.summaryFile) writeOnPolicySummary(opts.summaryFile, result);
    return result;
  } finally {
    for (const p of planners) if (p) disposePlanner(p);
  }
}

/** The record of a finished step: written once (atomically) when the step first finishes, read back on every later call. */
function record<T>(file: string, make: () => T): T {
  if (!fs.existsSync(file)) writeFileAtomic(file, `${JSON.stringify(make(), null, 1)}\n`);
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

/** The summary JSON (no per-state arrays); rewritten only when its content changed, so a rerun of a finished run writes nothing. */
function writeOnPolicySummary(file: string, r: OnPolicyResult): void {
  const slim = (m: MetricsRow) => ({ setting: m.setting, summary: m.summary, ci: m.ci });
  const body = `${JSON.stringify({ ...r, comparison: r.comparison.map((c) => ({ ...c, before: slim(c.before), after: slim(c.after) })) }, null, 1)}\n`;
  if (fs.existsSync(file) && fs.readFileSync(file, 'utf8') === body) return;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeFileAtomic(file, body);
}

/** Whether the on-policy summary at `file` says R = `rounds` rounds finished (what PRIMARY_PLANNER's switch reads). */
export function onPolicyFinished(file: string, rounds: number): boolean {
  if (!fs.existsSync(file)) return false;
  try {
    const s = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<OnPolicyResult>;
    return s.finished === true && s.rounds?.length === rounds;
  } catch {
    return false;
  }
}

/** The before/after table: one row per set of held-out states, paired differences π_R − π_0 with 95% intervals. */
export function onPolicyTable(r: OnPolicyResult): Record<string, string | number>[] {
  const iv = (d: PairedDifference) => `${d.diff >= 0 ? '+' : ''}${d.diff.toFixed(3)} [${d.lo.toFixed(3)}, ${d.hi.toFixed(3)}]`;
  return r.comparison.map((c) => ({
    'held-out states': c.states, states: c.n, images: c.images,
    'top-1 before': Number(c.before.summary.top1.toFixed(3)), 'top-1 after': Number(c.after.summary.top1.toFixed(3)), 'Δ top-1 [95% CI]': iv(c.top1),
    'top-1 verdict': verdict(c.top1),
    'regret before': Number(c.before.summary.regret.toFixed(3)), 'regret after': Number(c.after.summary.regret.toFixed(3)), 'Δ regret [95% CI]': iv(c.regret),
    'regret verdict': verdict(c.regret, true),
  }));
}

/** What the rounds did, in a few lines: per set of held-out states, π_0 → π_R with the paired interval and its verdict. */
export function onPolicyFindings(r: OnPolicyResult, profile: ProfileName, stamp: string): string {
  if (!r.finished) return `The on-policy rounds are not finished (stopped in ${r.stoppedIn}); run the cell again to continue.`;
  const R = r.rounds.length, added = r.rounds.reduce((a, x) => a + x.states, 0);
  const rows = r.comparison.flatMap((c) => [
    pairedFinding(c.after.setting, `top-1 on ${c.states}`, c.before.setting, c.top1, 'higher is better'),
    pairedFinding(c.after.setting, `regret on ${c.states}`, c.before.setting, c.regret, 'lower is better', 'nats'),
  ]);
  const line = (c: OnPolicyComparison, i: number) =>
    `- On ${c.states}, ${c.n} states: top-1 ${c.before.summary.top1.toFixed(3)} → ${c.after.summary.top1.toFixed(3)} ` +
    `(Δ ${estimateCell(rows[2 * i])}: ${verdict(c.top1)}), regret ${c.before.summary.regret.toFixed(3)} → ${c.after.summary.regret.toFixed(3)} nats ` +
    `(Δ ${estimateCell(rows[2 * i + 1])}: ${verdict(c.regret, true)}).`;
  const lines = [
    `In this run (**${stamp}**), ${R} on-policy round${R > 1 ? 's' : ''} labelled ${added} states the planners visited (argmax ${r.label}, ` +
      `${r.reading}/${r.weight}); each round retrained from scratch on everything labelled so far:`,
    ...r.comparison.map(line),
  ];
  if (profile === 'smoke') lines.push('- *Smoke profile*: a tiny backbone and a few dozen states; these numbers exercise the pipeline, they are not evidence about the method.');
  return findingsSection(lines, []); // the before/after table beside it holds the same intervals
}
