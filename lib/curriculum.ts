/**
 * The curriculum as folders: where every stage of a profile writes its runs
 * (one typed table, `curriculumRuns`), and what each stage reads from the
 * stages before it (`stageInputs`), loaded with errors that name the notebook
 * producing a missing input. Notebooks call these instead of building paths.
 *
 *   stage  notebook                   reads (made by)
 *   0      01_tokenizer               the images
 *   1      02_stage1_backbone         token cache, tokenizer (01)
 *   2      03_stage2_oracle           token cache, tokenizer; the random-phase block-RAR checkpoint (02)
 *   3      04_stage3_orderhead        token cache, tokenizer; the oracle dataset (03) and its backbone (02); then the on-policy rounds
 *   4      05_stage4_latent_planner   as Stage 3, and the frozen backbone's features (04)
 *   5      06_stage5_joint_tuning     token cache, oracle dataset, its backbone and features; the primary planner (04: primaryPlannerRun)
 *   6      07_stage6_adaptive_budget  token cache, tokenizer, oracle dataset; the Stage 5 tuned pair and its features (06)
 *   eval   08_evaluation              token cache, tokenizer, oracle dataset; each setting loads its own runs
 *   study  09_regime_study            token cache (the crossover study, not part of the main job: npm run study)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OrderHeadError } from './runtime/errors';
import { latestCheckpoint, loadCheckpoint } from './runtime/checkpoint';
import * as tf from '@tensorflow/tfjs';
import { budgetEpochs, budgetFromExtra } from './backbone/training-budget';
import { ProfileName } from './runtime/profile';
import { tokenizerRunDir } from './tokenizer/config';
import { loadTokenCache, TokenCache } from './tokenizer/cache';
import { loadTokenizer } from './tokenizer/train';
import { VqTokenizer } from './tokenizer/vq-tokenizer';
import { disposeGPT, GPT } from './backbone/gpt';
import { CONTINUATION_ARMS, ContinuationArm, trainingSeeds } from './backbone/stage1';
import { loadBackbone, selectedCheckpoint, Selection } from './backbone/stage1';
import { loadOracleDataset, OracleDataset } from './oracle/dataset';
import { randomPhaseCheckpoint } from './backbone/checkpoints';
import { PlannerFeatures } from './planner/features';
import { disposePlanner, LatentSteps, Planner } from './planner/orderhead';
import { bestPlannerCheckpoint, loadPlanner } from './planner/train';
import {
  FEATURES_FILE, JOINT_FEATURES_FILE, oracleStateFeatures, plannerRoot, PRIMARY_PLANNER, PRIMARY_STAGE3_RUN, Stage3Run, STAGE3_RUNS, stage3RunName,
  stage4RunName,
} from './planner/stages';
import { ON_POLICY_PLANNER_RUN, onPolicyConfig, onPolicyDirName, onPolicyFinished, onPolicyRoundDir } from './planner/on-policy';
import { loadJointPair } from './planner/joint';
import { loadRouter } from './planner/router-train';
import { Router, RouterShape } from './planner/router';
import { featureNetRunDir } from './eval/feature-net-config';
import { evalReportDir } from './eval/context';

/** The notebook of each stage: named by every error about a missing input. */
export const STAGE_NOTEBOOKS = {
  tokenizer: 'notebooks/01_tokenizer.ipynb',
  stage1: 'notebooks/02_stage1_backbone.ipynb',
  oracle: 'notebooks/03_stage2_oracle.ipynb',
  stage3: 'notebooks/04_stage3_orderhead.ipynb',
  stage4: 'notebooks/05_stage4_latent_planner.ipynb',
  joint: 'notebooks/06_stage5_joint_tuning.ipynb',
  router: 'notebooks/07_stage6_adaptive_budget.ipynb',
  eval: 'notebooks/08_evaluation.ipynb',
  /** Not part of the main job: the crossover study (lib/study), run by `npm run study`. */
  study: 'notebooks/09_regime_study.ipynb',
} as const;

/** Run folder names the notebooks give the training calls of Stages 5 and 6 (under the planner root). */
export const JOINT_RUN_NAME = 'stage5-joint';
export const ROUTER_RUN_NAME = 'stage6-router';

/** One run folder of the curriculum. */
export interface RunFolder {
  /** The folder: `root/name`. */
  dir: string;
  /** Its parent and its name: what training calls that open the run take (`trainJointTuning(root, name, ...)`). */
  root: string;
  name: string;
  /** The notebook that writes it. */
  producedBy: string;
}

/** The Stage 1 arms of one training seed. */
export type Stage1Arms = { 'block-rar': RunFolder; raster: RunFolder } & Record<ContinuationArm, RunFolder>;

/** Every run folder (and the summary files) of one profile's curriculum. */
export interface CurriculumRuns {
  runRoot: string;
  profile: ProfileName;
  /** Stage 0: tokenizer checkpoints and the token cache (`<runRoot>/tokenizer-<profile>`). */
  tokenizer: RunFolder;
  /** Stage 1: the parent of both backbone runs (`<runRoot>/stage1-<profile>`). */
  stage1Root: string;
  /**
   * Stage 1 and the matched-budget contest (METHOD.md §6): the raster-only
   * baseline; the block-RAR run (random phase to C, then annealed to raster);
   * the continuations from C that need the planner or run beside Stage 5
   * (kept random, annealed to the planner's orders, annealed to a fixed order).
   */
  stage1: Stage1Arms;
  /**
   * The same arms for every training seed of the profile (STAGE1_SEEDS), in
   * `<stage1Root>/seed<k>/<arm>`; the first is `stage1` (seed 0, the primary:
   * its C is the backbone of the oracle and the planner).
   */
  stage1Seeds: { seed: number; arms: Stage1Arms }[];
  /** Stage 2: the oracle dataset (`<runRoot>/oracle-<profile>`). */
  oracle: RunFolder;
  /** Stages 3-6: the parent of every planner run, and where the feature caches and summaries go (`<runRoot>/planner-<profile>`). */
  planner: string;
  /** Stage 3: one run per STAGE3_RUNS key (`stage3-<key>`). */
  stage3: Record<string, RunFolder>;
  /**
   * The on-policy rounds after Stage 3 (lib/planner/on-policy.ts), started from PRIMARY_STAGE3_RUN: their folder
   * (`on-policy-<primary>`: states, features, held-out rollouts) and each round's planner run (`round-<k>/planner`, k = 1..R
   * of the profile's onPolicyConfig); the last is the primary planner once the rounds finished (primaryPlannerRun).
   */
  onPolicy: RunFolder;
  onPolicyRounds: RunFolder[];
  /** Stage 4: the R curriculum from PRIMARY_STAGE3_RUN, one run per R (`stage4-<primary>-R<R>`). */
  stage4: Record<Exclude<LatentSteps, 0>, RunFolder>;
  /** Stage 5: the tuned backbone and planner (`stage5-joint`), and the control tuned on raster orders (`stage5-joint-raster`). */
  joint: RunFolder;
  jointRaster: RunFolder;
  /** Stage 6: the router (`stage6-router`). */
  router: RunFolder;
  /** The feature network of the evaluation (`<runRoot>/featurenet-<profile>`). */
  featureNet: RunFolder;
  /** The evaluation report (`<runRoot>/eval-<profile>`). */
  eval: RunFolder;
  /** Files the stages write beside their runs. */
  files: {
    stage3Metrics: string;
    /** The on-policy rounds' summary (rounds, before/after table); written when every round finished. */
    onPolicySummary: string;
    stage4Metrics: string;
    stage4Nll: string;
    stage5Summary: string;
    /** The planner-order cache (planner-orders.ts) and the contest's summary (arms, budgets, the fixed order). */
    plannerOrders: string;
    contest: string;
    stage6Summary: string;
    /** The evaluation's per-setting cache folder and its outcomes. */
    evalCache: string;
    evalOutcomes: string;
  };
}

function folder(dir: string, producedBy: string): RunFolder {
  return { dir, root: path.dirname(dir), name: path.basename(dir), producedBy };
}

/** Every run folder of a profile's curriculum under `runRoot` (the notebook passes session.runRoot and session.profile). */
export function curriculumRuns(runRoot: string, profile: ProfileName): CurriculumRuns {
  const stage1Root = path.join(runRoot, `stage1-${profile}`);
  const planner = plannerRoot(runRoot, profile);
  const inPlanner = (name: string, producedBy: string) => folder(path.join(planner, name), producedBy);
  const evalDir = evalReportDir(runRoot, profile);
  const onPolicy = inPlanner(onPolicyDirName(PRIMARY_STAGE3_RUN), STAGE_NOTEBOOKS.stage3);
  const arms = (seed: number): Stage1Arms => {
    const dir = path.join(stage1Root, `seed${seed}`);
    return {
      'block-rar': folder(path.join(dir, 'block-rar'), STAGE_NOTEBOOKS.stage1),
      raster: folder(path.join(dir, 'raster'), STAGE_NOTEBOOKS.stage1),
      ...Object.fromEntries(CONTINUATION_ARMS.map((arm) => [arm, folder(path.join(dir, arm), STAGE_NOTEBOOKS.joint)])) as Record<ContinuationArm, RunFolder>,
    };
  };
  const stage1Seeds = trainingSeeds(profile).map((seed) => ({ seed, arms: arms(seed) }));
  return {
    runRoot, profile,
    tokenizer: folder(tokenizerRunDir(runRoot, profile), STAGE_NOTEBOOKS.tokenizer),
    stage1Root,
    stage1: stage1Seeds[0].arms,
    stage1Seeds,
    oracle: folder(path.join(runRoot, `oracle-${profile}`), STAGE_NOTEBOOKS.oracle),
    planner,
    stage3: Object.fromEntries(STAGE3_RUNS.map((r) => [r.key, inPlanner(stage3RunName(r.key), STAGE_NOTEBOOKS.stage3)])),
    onPolicy: onPolicy,
    onPolicyRounds: Array.from({ length: onPolicyConfig(profile).rounds }, (_, k) =>
      folder(path.join(onPolicyRoundDir(onPolicy.dir, k + 1), ON_POLICY_PLANNER_RUN), STAGE_NOTEBOOKS.stage3)),
    stage4: {
      1: inPlanner(stage4RunName(PRIMARY_STAGE3_RUN, 1), STAGE_NOTEBOOKS.stage4),
      2: inPlanner(stage4RunName(PRIMARY_STAGE3_RUN, 2), STAGE_NOTEBOOKS.stage4),
      4: inPlanner(stage4RunName(PRIMARY_STAGE3_RUN, 4), STAGE_NOTEBOOKS.stage4),
    },
    joint: inPlanner(JOINT_RUN_NAME, STAGE_NOTEBOOKS.joint),
    jointRaster: inPlanner(`${JOINT_RUN_NAME}-raster`, STAGE_NOTEBOOKS.joint),
    router: inPlanner(ROUTER_RUN_NAME, STAGE_NOTEBOOKS.router),
    featureNet: folder(featureNetRunDir(runRoot, profile), `${STAGE_NOTEBOOKS.router} or ${STAGE_NOTEBOOKS.eval}`),
    eval: folder(evalDir, STAGE_NOTEBOOKS.eval),
    files: {
      stage3Metrics: path.join(planner, 'stage3-metrics.json'),
      onPolicySummary: path.join(planner, 'on-policy-summary.json'),
      stage4Metrics: path.join(planner, 'stage4-metrics.json'),
      stage4Nll: path.join(planner, 'stage4-nll.json'),
      stage5Summary: path.join(planner, 'stage5-summary.json'),
      plannerOrders: path.join(planner, 'planner-orders.json'),
      contest: path.join(stage1Root, 'contest.json'),
      stage6Summary: path.join(planner, 'stage6-summary.json'),
      evalCache: path.join(evalDir, 'cache'),
      evalOutcomes: path.join(evalDir, 'eval-outcomes.json'),
    },
  };
}

/** The run folders as table rows (what, folder, written by), in curriculum order. */
export function curriculumRunRows(runs: CurriculumRuns): { what: string; folder: string; 'written by': string }[] {
  const row = (what: string, f: RunFolder) => ({ what, folder: f.dir, 'written by': f.producedBy });
  return [
    row('tokenizer and token cache', runs.tokenizer),
    ...runs.stage1Seeds.flatMap(({ seed, arms }) => [
      row(`Stage 1 block-RAR backbone, seed ${seed}`, arms['block-rar']),
      row(`Stage 1 raster-only baseline, seed ${seed}`, arms.raster),
      ...CONTINUATION_ARMS.map((arm) => row(`continuation from C: ${arm}, seed ${seed}`, arms[arm])),
    ]),
    row('Stage 2 oracle dataset', runs.oracle),
    ...STAGE3_RUNS.map((r) => row(`Stage 3 planner: ${r.name}`, runs.stage3[r.key])),
    row('on-policy rounds: visited states, features, held-out rollouts', runs.onPolicy),
    ...runs.onPolicyRounds.map((f, k) => row(`on-policy planner, round ${k + 1}`, f)),
    ...([1, 2, 4] as const).map((R) => row(`Stage 4 planner, R = ${R}`, runs.stage4[R])),
    row('Stage 5 tuned backbone and planner (L_AR on planner orders)', runs.joint),
    row('Stage 5 control (L_AR on raster orders)', runs.jointRaster),
    row('Stage 6 router', runs.router),
    row('feature network (evaluation)', runs.featureNet),
    row('evaluation report', runs.eval),
  ];
}

// ---------------------------------------------------------------- loaders of one run folder

/** The best checkpoint of a planner run folder; the error names the notebook that trains it. */
export function plannerCheckpoint(run: RunFolder): string {
  return bestPlannerCheckpoint(run.dir, run.producedBy);
}

/**
 * The R = 0 planner run the later stages read (PRIMARY_PLANNER, lib/planner/stages.ts): the last on-policy
 * round's once every round of the profile finished (its summary says so), else the Stage 3 run PRIMARY_STAGE3_RUN.
 */
export function primaryPlannerRun(runs: CurriculumRuns): RunFolder {
  const last = runs.onPolicyRounds.at(-1);
  if (PRIMARY_PLANNER === 'on-policy' && last && onPolicyFinished(runs.files.onPolicySummary, runs.onPolicyRounds.length)) return last;
  return runs.stage3[PRIMARY_STAGE3_RUN];
}

/** The best planner of a planner run folder; with `backboneFingerprint`, refused unless it was trained on that backbone. */
export function loadRunPlanner(run: RunFolder, opts: { backboneFingerprint?: string } = {}): Planner {
  return loadPlanner(plannerCheckpoint(run), opts).planner;
}

/** The best checkpoint of a router run folder (Stage 6); the error names the notebook that trains the router. */
export function routerCheckpoint(run: RunFolder): string {
  const dir = path.join(run.dir, 'checkpoints');
  const best = latestCheckpoint(dir, 'best');
  if (!best) throw new OrderHeadError('no trained router here (no best-step*.safetensors)', run.dir, `run ${run.producedBy} in this profile first`);
  return best.path;
}

/** The trained router of a run folder (Stage 6); with `shape`, refused unless it fits that planner and block grid. */
export function loadRunRouter(run: RunFolder, opts: { shape?: Partial<RouterShape> } = {}): Router {
  return loadRouter(routerCheckpoint(run), opts);
}

/** The checkpoint a Stage 1 arm reports: its best on the validation images (selectedCheckpoint); the error names the notebook that trains it. */
export function stage1SelectedCheckpoint(run: RunFolder): string {
  return selectedCheckpoint(run.dir, run.producedBy);
}

/**
 * The training budget and the validation selection of every backbone of the
 * contest (raster-only, the block-RAR run annealed to raster, the
 * continuations), for every training seed: the budget from each run's last
 * resume checkpoint, the selected step and its validation NLL from its
 * best-step file. Runs not trained yet are left out.
 */
export function contestBudgetRows(runs: CurriculumRuns): ContestBudgetRow[] {
  return runs.stage1Seeds.flatMap(({ seed, arms }) => {
    const named: [string, RunFolder][] = [['raster-only', arms.raster], ['block-rar: random phase, annealed to raster', arms['block-rar']],
      ...CONTINUATION_ARMS.map((a): [string, RunFolder] => [a, arms[a]])];
    return named.flatMap(([name, run]) => {
      const last = latestCheckpoint(path.join(run.dir, 'checkpoints'), 'stage1');
      if (!last) return [];
      const b = budgetFromExtra(checkpointExtra(last.path), last.path);
      const best = latestCheckpoint(path.join(run.dir, 'checkpoints'), 'best');
      const sel = best ? (checkpointExtra(best.path).selected as Selection) : undefined;
      return [{
        backbone: name, seed, steps: b.steps, batch: b.batch, 'unique images': b.trainImages, 'tokens seen': b.tokensSeen, epochs: budgetEpochs(b),
        'selected step': sel ? sel.step : NaN, 'validation bits/token': sel ? sel.validationBits : NaN, 'selected in': sel ? sel.order : 'n/a', runs: b.runs.join(' → '),
      }];
    });
  });
}

/** A checkpoint's `extra` (its weights are loaded with it and freed at once). */
function checkpointExtra(file: string): Record<string, unknown> {
  const ck = loadCheckpoint(file);
  tf.dispose(Object.values(ck.weights));
  return ck.extra as Record<string, unknown>;
}

export interface ContestBudgetRow {
  backbone: string; seed: number; steps: number; batch: string; 'unique images': number; 'tokens seen': number; epochs: number;
  'selected step': number; 'validation bits/token': number; 'selected in': string; runs: string;
}

/** What notebook 06 recorded about the contest: checkpoint C, the fixed order and the budgets; the error names notebook 06. */
export function contestSummary(runs: CurriculumRuns): { checkpointC: string; fixedOrder: number[]; plannerOrders: string; orderImages: number; budgets: ReturnType<typeof contestBudgetRows> } {
  const file = runs.files.contest;
  if (!fs.existsSync(file)) throw new OrderHeadError('no contest summary here (the continuations from C have not been trained)', file, `run ${STAGE_NOTEBOOKS.joint} in this profile first`);
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

// ---------------------------------------------------------------- stage inputs

/** Everything a stage can read from earlier stages. Each stage gets the subset STAGE_READS names. */
export interface StageInputValues {
  /** The token cache (train and test token grids, labels) of notebook 01. */
  cache: TokenCache;
  /** The trained tokenizer of notebook 01 (decodes tokens to images). */
  tokenizer: VqTokenizer;
  /** The last random-phase (r = 1) checkpoint of the block-RAR run of notebook 02: the backbone the oracle labels with. */
  backbonePath: string;
  /** The oracle dataset of notebook 03 (its geometry is `ds.geo`). */
  ds: OracleDataset;
  /** The frozen backbone that labelled the oracle dataset (its manifest names the file). */
  backbone: GPT;
  /**
   * Backbone features of every oracle state, as the stage's planner reads them: the frozen backbone's
   * (cached by notebook 04) in Stages 4 and 5, the Stage 5 tuned backbone's (cached by notebook 06) in Stage 6.
   */
  features: PlannerFeatures;
  /** The Stage 3 run the later stages build on (PRIMARY_STAGE3_RUN): its label and target (the on-policy rounds keep both). */
  primaryRun: Stage3Run;
  /** The primary planner (notebook 04; primaryPlannerRun: the on-policy one when its rounds finished), checked against the oracle's backbone. */
  planner: Planner;
  /** The Stage 5 tuned backbone and planner (notebook 06). */
  pair: ReturnType<typeof loadJointPair>;
}

export type StageInputName = keyof StageInputValues;

/** What each stage reads from the stages before it, in loading order (cheap checks before the features, which may need computing). */
export const STAGE_READS = {
  /** 02_stage1_backbone */
  stage1: ['cache', 'tokenizer'],
  /** 03_stage2_oracle */
  stage2: ['cache', 'tokenizer', 'backbonePath'],
  /** 04_stage3_orderhead */
  stage3: ['cache', 'tokenizer', 'ds', 'backbone'],
  /** 05_stage4_latent_planner */
  stage4: ['cache', 'tokenizer', 'ds', 'backbone', 'features'],
  /** 06_stage5_joint_tuning */
  stage5: ['cache', 'ds', 'backbone', 'primaryRun', 'planner', 'features'],
  /** 07_stage6_adaptive_budget */
  stage6: ['cache', 'tokenizer', 'ds', 'primaryRun', 'pair', 'features'],
  /** 08_evaluation (each setting loads its own backbone and planner, so a missing one marks only that setting) */
  eval: ['cache', 'tokenizer', 'ds'],
} as const satisfies Record<string, readonly StageInputName[]>;

export type StageName = keyof typeof STAGE_READS;

/** One loaded input: what it is, where it came from, which notebook made it. */
export interface StageInputSource {
  input: StageInputName;
  /** The input in words (STAGE_INPUT_LABELS). */
  what: string;
  from: string;
  'made by': string;
}

/** What stage `S` reads, loaded; plus the run folders and where each input came from. */
export type StageInputs<S extends StageName> = Pick<StageInputValues, (typeof STAGE_READS)[S][number]> & {
  stage: S;
  runs: CurriculumRuns;
  sources: StageInputSource[];
};

/** In words, for errors and tables. */
export const STAGE_INPUT_LABELS: Record<StageInputName, string> = {
  cache: 'token cache',
  tokenizer: 'tokenizer',
  backbonePath: 'random-phase block-RAR checkpoint',
  ds: 'oracle dataset',
  backbone: "oracle dataset's backbone",
  features: 'backbone features of the oracle states',
  primaryRun: 'primary Stage 3 run',
  planner: 'primary planner (on-policy rounds, else Stage 3)',
  pair: 'Stage 5 tuned backbone and planner',
};

/** The notebook of each stage that reads inputs. */
const READER_NOTEBOOKS: Record<StageName, string> = {
  stage1: STAGE_NOTEBOOKS.stage1, stage2: STAGE_NOTEBOOKS.oracle, stage3: STAGE_NOTEBOOKS.stage3, stage4: STAGE_NOTEBOOKS.stage4,
  stage5: STAGE_NOTEBOOKS.joint, stage6: STAGE_NOTEBOOKS.router, eval: STAGE_NOTEBOOKS.eval,
};

/**
 * Load what `stage` reads from the earlier stages of `session`'s profile
 * (STAGE_READS). A missing or unreadable input fails with an OrderHeadError
 * naming the file, the input and the notebook that produces it. Tensors
 * loaded before a failing input are disposed.
 */
export function stageInputs<S extends StageName>(session: { runRoot: string; profile: ProfileName }, stage: S): StageInputs<S> {
  const runs = curriculumRuns(session.runRoot, session.profile);
  const got: Partial<StageInputValues> = {};
  const sources: StageInputSource[] = [];
  const reader = path.basename(READER_NOTEBOOKS[stage], '.ipynb');
  const from = <T>(input: StageInputName, producedBy: string, load: () => T, where: (value: T) => string): T => {
    let value: T;
    try {
      value = load();
    } catch (err) {
      if (!(err instanceof OrderHeadError)) throw err;
      const notebook = path.basename(producedBy.split(' ')[0]);
      throw new OrderHeadError(`${err.problem} (the ${STAGE_INPUT_LABELS[input]} that ${reader} reads, made by ${producedBy})`, err.where,
        err.fix.includes(notebook) ? err.fix : `run ${producedBy} in the ${session.profile} profile first (or: ${err.fix})`);
    }
    sources.push({ input, what: STAGE_INPUT_LABELS[input], from: where(value), 'made by': producedBy });
    return value;
  };
  const get = <K extends StageInputName>(k: K): StageInputValues[K] => {
    if (got[k] === undefined) got[k] = load[k]() as StageInputValues[K];
    return got[k] as StageInputValues[K];
  };
  const load: { [K in StageInputName]: () => StageInputValues[K] } = {
    cache: () => from('cache', runs.tokenizer.producedBy, () => loadTokenCache(runs.tokenizer.dir), (c) => c.path),
    tokenizer: () => from('tokenizer', runs.tokenizer.producedBy, () => loadTokenizer(runs.tokenizer.dir), (t) => t.source.checkpoint ?? runs.tokenizer.dir),
    backbonePath: () => from('backbonePath', runs.stage1['block-rar'].producedBy, () => randomPhaseCheckpoint(runs.stage1['block-rar'].dir), (f) => f),
    ds: () => from('ds', runs.oracle.producedBy, () => loadOracleDataset(runs.oracle.dir), (d) => d.dir),
    backbone: () => {
      const file = get('ds').manifest.backbone.path;
      return from('backbone', runs.stage1['block-rar'].producedBy, () => loadBackbone(file), () => file);
    },
    features: () => {
      // Stage 6 plans with the Stage 5 tuned backbone, whose features notebook 06 cached under their own name.
      const joint = stage === 'stage6';
      const fileName = joint ? JOINT_FEATURES_FILE : FEATURES_FILE;
      const backbone = joint ? get('pair').backbone : get('backbone');
      const ds = get('ds'), cache = get('cache');
      return from('features', joint ? runs.joint.producedBy : runs.stage3[PRIMARY_STAGE3_RUN].producedBy,
        () => oracleStateFeatures(runs.planner, ds, cache, backbone, { fileName }).features, () => path.join(runs.planner, fileName));
    },
    primaryRun: () => STAGE3_RUNS.find((r) => r.key === PRIMARY_STAGE3_RUN)!,
    planner: () => {
      const run = primaryPlannerRun(runs);
      const fingerprint = get('ds').manifest.backbone.fingerprint;
      return from('planner', run.producedBy, () => loadPlanner(plannerCheckpoint(run), { backboneFingerprint: fingerprint }), (l) => l.path).planner;
    },
    pair: () => from('pair', runs.joint.producedBy, () => loadJointPair(runs.joint.dir), (p) => `${p.backbonePath} + ${p.plannerPath}`),
  };
  try {
    for (const k of STAGE_READS[stage] as readonly StageInputName[]) get(k);
  } catch (err) {
    if (got.backbone) disposeGPT(got.backbone);
    if (got.planner) disposePlanner(got.planner);
    if (got.pair) { disposeGPT(got.pair.backbone); disposePlanner(got.pair.planner); }
    throw err;
  }
  const picked = Object.fromEntries((STAGE_READS[stage] as readonly StageInputName[]).map((k) => [k, got[k]]));
  return { ...picked, stage, runs, sources } as unknown as StageInputs<S>;
}
