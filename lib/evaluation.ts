/**
 * Notebook 08's evaluation on a curriculum's runs: the settings of METHOD.md
 * §7 (contestSettings) and their evaluation on both cores
 * (evaluateSettingsOnWorkers).
 *
 * Why workers: a setting's evaluation is one long stream of small tfjs ops
 * (sampling, rollouts), which the engine's thread pool barely speeds up, and
 * 9 of the 13 settings read the backbone's state at every step (7 the
 * planner, 2 the backbone's own entropies). Two worker threads, each with
 * its own single-threaded engine, evaluate two settings at a time. They share
 * nothing but the evaluation cache (lib/eval/cache.ts): each finished setting
 * is written there, and the final pass in the calling thread loads every
 * setting from it, so the outcomes are those of evaluateSettings in one
 * thread (the cache's own guarantee), and a kill loses only the settings in flight.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { disposeGPT, GPT } from './backbone/gpt';
import { loadBackbone } from './backbone/stage1';
import { BlockGeometry } from './order';
import { OrderHeadError } from './runtime/errors';
import { backendReport } from './runtime/backend';
import { ProfileName } from './runtime/profile';
import { Progress } from './runtime/progress';
import { budgetPolicy } from './planner/budget';
import { disposePlanner } from './planner/orderhead';
import { disposeRouter } from './planner/router';
import { loadJointPair } from './planner/joint';
import { EvalConfig } from './eval/config';
import { EvalContext, RealFeatureStats } from './eval/context';
import { evalCacheFile, evalCacheIdentity, evalContextFingerprint, readEvalCache } from './eval/cache';
import { checkMatchedBudgets, UnmatchedBudgets } from './eval/budgets';
import { evaluateSettings, EvalSettingEvent, EvaluateSettingsOptions } from './eval/evaluate-settings';
import { SettingOutcome } from './eval/results';
import { GREEDY_ORACLE_BOUND, greedyOracleBoundCached, HeadroomBound, HeadroomConfig } from './eval/headroom';
import {
  annealedFixedSetting, annealedRasterSetting, blockRarRandomSetting, blockRarRasterSetting, entropyFirstSetting, EvalSetting, isMissing, MissingSetting,
  EvalSettingName, missingSetting, orderHeadSetting, rasterBaselineSetting, seededSettingBase, seededSettingName, SETTING_PRODUCERS, settingOrMissing,
} from './eval/settings';
import { contestSummary, CurriculumRuns, loadRunPlanner, loadRunRouter, primaryPlannerRun, RunFolder, stage1SelectedCheckpoint } from './curriculum';

/** What the settings are built on besides the run folders: C (the backbone every planner reads) and the block grid. */
export interface ContestInputs {
  /** Checkpoint C: the random-phase checkpoint the oracle dataset was labelled with (its manifest names it). */
  checkpointC: string;
  /** Its file fingerprint (planners are refused unless trained on it). */
  backboneFingerprint: string;
  geo: BlockGeometry;
}

/** The one setting allowed another budget, and why (the report prints it next to its row). */
export const CONTEST_UNMATCHED: UnmatchedBudgets = Object.freeze({
  'adaptive budget': 'the Stage 5 tuned pair: C plus the Stage 5 tuning steps, not the N steps of the contest',
});

/**
 * The settings of METHOD.md §7 on the runs of one curriculum, in the report's
 * order; a setting whose runs are missing is a MissingSetting naming the
 * notebook that makes them. With `only`, the other settings are not built
 * (nothing of theirs is loaded): a worker builds the one it evaluates.
 */
export function contestSettings(runs: CurriculumRuns, inputs: ContestInputs, only: (name: string) => boolean = () => true): (EvalSetting | MissingSetting)[] {
  const { geo } = inputs;
  const fingerprint = { backboneFingerprint: inputs.backboneFingerprint };
  const selected = (arm: RunFolder) => loadBackbone(stage1SelectedCheckpoint(arm));
  let C: GPT | undefined;
  const readsC = () => (C ??= loadBackbone(inputs.checkpointC)); // every planner reads C: it was trained on its features
  // R = 0 is the primary planner (the on-policy rounds' last, once they finished): the one notebook 06 annealed the planner arm to.
  const planner = (R: 0 | 1 | 2 | 4) => loadRunPlanner(R === 0 ? primaryPlannerRun(runs) : runs.stage4[R], fingerprint);
  const keptRandom = 'kept random (matched budget)';
  const fixedOrder = () => contestSummary(runs).fixedOrder;
  // The headline arms, once per training seed (each seed's own backbones; the planner and C are seed 0's).
  const seeded = ({ seed, arms }: CurriculumRuns['stage1Seeds'][number]): [string, () => EvalSetting][] => ([
    ['raster baseline', () => rasterBaselineSetting(selected(arms.raster))],
    ['annealed to raster', () => annealedRasterSetting(selected(arms['block-rar']))],
    ['block-RAR + random order', () => blockRarRandomSetting(selected(arms['kept-random']), geo, 0, `${keptRandom}, random block order`)],
    ['annealed to planner', () => orderHeadSetting(selected(arms['annealed-planner']), planner(0), geo, 0,
      'annealed to the planner\'s orders + the same planner (R = 0) reading C', readsC())],
    ['annealed to fixed order', () => annealedFixedSetting(selected(arms['annealed-fixed']), geo, fixedOrder(), `annealed to the planner's average order ${fixedOrder().join(' ')}`)],
  ] as [string, () => EvalSetting][]).map(([name, build]) => [seededSettingName(name, seed), build]);
  const primary = new Map(seeded(runs.stage1Seeds[0]));
  const all: [string, () => EvalSetting][] = [
    ['raster baseline', primary.get('raster baseline')!],
    ['annealed to raster', primary.get('annealed to raster')!],
    ['block-RAR + random order', primary.get('block-RAR + random order')!],
    ['block-RAR + raster order', () => blockRarRasterSetting(selected(runs.stage1['kept-random']), geo, `${keptRandom}, raster block order`)],
    // Seed 0 only, like the OrderHead settings: the headroom among valid orders on the planner's backbone (headroom.ts).
    ...(['lowest', 'highest'] as const).map((first): [string, () => EvalSetting] => [`block-RAR + ${first} entropy first`,
      () => entropyFirstSetting(selected(runs.stage1['kept-random']), geo, first, `${keptRandom}, ${first}-entropy block first (its own entropies)`)]),
    ...([0, 1, 2, 4] as const).map((R): [string, () => EvalSetting] => [`OrderHead R=${R}`,
      () => orderHeadSetting(selected(runs.stage1['kept-random']), planner(R), geo, R, `kept random + planner R = ${R} reading C`, readsC())]),
    ['annealed to planner', primary.get('annealed to planner')!],
    ['annealed to fixed order', primary.get('annealed to fixed order')!],
    ['adaptive budget', () => {
      const pair = loadJointPair(runs.joint.dir);
      const router = loadRunRouter(runs.router);
      return { name: 'adaptive budget', backbone: pair.backbone, geo, policy: budgetPolicy(pair.planner, router, pair.backbone, geo, 0), notes: 'Stage 5 tuned pair + Stage 6 router',
        release: () => { disposePlanner(pair.planner); disposeRouter(router); } };
    }],
    ...runs.stage1Seeds.slice(1).flatMap(seeded),
  ];
  return all.filter(([name]) => only(name)).map(([name, build]) => settingOrMissing(name, build, SETTING_PRODUCERS[seededSettingBase(name) as EvalSettingName]));
}

/**
 * The greedy oracle bound (lib/eval/headroom.ts) of the backbone the
 * OrderHead and entropy-first settings decode with (the kept-random run of
 * training seed 0, validation-selected), on the test images of `ctx`, read
 * from or written to `cacheDir`. Not a setting: it reads the true images, so
 * it has no samples and never reaches the headline. Without the kept-random
 * run it is a missing marker naming the notebook that trains it.
 */
export async function contestHeadroomBound(runs: CurriculumRuns, ctx: Pick<EvalContext, 'testTokens' | 'testLabels' | 'geo'>, cfg: EvalConfig,
  opts: { cacheDir: string; headroom?: Partial<HeadroomConfig>; onStep?: (done: number, total: number) => void }):
  Promise<{ bound: HeadroomBound | MissingSetting; source?: 'cached' | 'computed' }> {
  let m: GPT;
  try {
    m = loadBackbone(stage1SelectedCheckpoint(runs.stage1['kept-random']));
  } catch (err) {
    if (!(err instanceof OrderHeadError)) throw err;
    return { bound: missingSetting(GREEDY_ORACLE_BOUND, `${err.where}: ${err.problem}. Produced by ${SETTING_PRODUCERS['block-RAR + raster order']}; run it in this profile first.`) };
  }
  try {
    return await greedyOracleBoundCached(m, ctx.geo, { tokens: ctx.testTokens, labels: ctx.testLabels }, cfg, opts.cacheDir, opts.headroom, opts.onStep);
  } finally {
    disposeGPT(m);
  }
}

/** Where a worker finds what it rebuilds, and what it is handed as is (see evaluation-worker.ts). */
export interface EvaluationWorkerJob {
  runRoot: string;
  profile: ProfileName;
  inputs: ContestInputs;
  cfg: EvalConfig;
  cacheDir: string;
  allowUnmatched: UnmatchedBudgets;
  /** The calling thread's context, minus what is rebuilt from files (tokenizer, feature network). */
  context: { testTokens: Int32Array; testLabels: Int32Array; realStats: RealFeatureStats; tokenizerDir: string; featureNetDir: string };
  /** evalContextFingerprint of the calling thread's context: both threads key the cache alike. */
  contextFingerprint: string;
  backend: string;
}

export type EvaluationWorkerMessage =
  | { type: 'ready' }
  | { type: 'done'; name: string; seconds: number }
  | { type: 'error'; name?: string; problem: string; where?: string; fix?: string };

export interface EvaluateOnWorkersOptions extends EvaluateSettingsOptions {
  cacheDir: string;
  /** The curriculum the settings come from (contestSettings rebuilds each one in its worker). */
  runs: { runRoot: string; profile: ProfileName; inputs: ContestInputs };
  /** Worker threads (default 2, one per core); 1 or a single setting to compute evaluates in this thread. */
  workers?: number;
}

/**
 * evaluateSettings for contestSettings(...), the settings still missing from
 * the cache computed on `workers` threads (planner settings first: they take
 * longest). Refuses unmatched budgets before anything runs, like evaluateSettings.
 */
export async function evaluateSettingsOnWorkers(settings: readonly (EvalSetting | MissingSetting)[], ctx: EvalContext & { tokenizerDir: string; featureNetDir: string }, cfg: EvalConfig,
  progress: ((opts: { total: number; label: string }) => Progress) | undefined, opts: EvaluateOnWorkersOptions): Promise<SettingOutcome[]> {
  checkMatchedBudgets(settings, opts.allowUnmatched); // a refusal costs nothing
  const contextFingerprint = evalContextFingerprint(ctx);
  const todo = settings.filter((s): s is EvalSetting => !isMissing(s)).filter((s) => {
    const { key, identity } = evalCacheIdentity(s, ctx, cfg, contextFingerprint);
    const read = readEvalCache(evalCacheFile(opts.cacheDir, s.name, key), key, identity);
    return !(read && 'outcome' in read);
  }).sort((a, b) => Number(b.policy.contextOf !== undefined) - Number(a.policy.contextOf !== undefined)); // stable: report order otherwise
  const n = Math.min(opts.workers ?? 2, todo.length);
  const computed = new Set<string>();
  if (n > 1) {
    const job: EvaluationWorkerJob = {
      runRoot: opts.runs.runRoot, profile: opts.runs.profile, inputs: opts.runs.inputs, cfg, cacheDir: opts.cacheDir, allowUnmatched: opts.allowUnmatched ?? {},
      context: { testTokens: ctx.testTokens, testLabels: ctx.testLabels, realStats: ctx.realStats, tokenizerDir: ctx.tokenizerDir, featureNetDir: ctx.featureNetDir },
      contextFingerprint, backend: backendReport()?.kind ?? 'auto',
    };
    const bar = progress?.({ total: todo.length, label: `settings on ${n} workers` });
    await runQueue(todo.map((s) => s.name), n, job, (name) => { computed.add(name); bar?.tick(1, { last: name }); });
    bar?.done();
  }
  // Every setting computed above is in the cache now; the rest (n <= 1) are computed here.
  const onSetting = (e: EvalSettingEvent) => opts.onSetting?.(computed.has(e.name) && e.source === 'cached' ? { ...e, source: 'computed' } : e);
  return evaluateSettings(settings, ctx, cfg, progress, { ...opts, onSetting, contextFingerprint });
}

/** Hand `names` to `n` workers, one setting at a time, the next to whichever finishes first; the first error stops them all. */
function runQueue(names: readonly string[], n: number, job: EvaluationWorkerJob, onDone: (name: string) => void): Promise<void> {
  const queue = [...names];
  const workers: Worker[] = [];
  return new Promise<void>((resolve, reject) => {
    let running = n, failed = false;
    const stop = (err: OrderHeadError) => {
      if (failed) return;
      failed = true;
      for (const w of workers) void w.terminate();
      reject(err);
    };
    for (let i = 0; i < n; i++) {
      const w = new Worker(path.join(__dirname, 'evaluation-worker.js'), { workerData: job });
      workers.push(w);
      let current: string | undefined, finished = false;
      const where = () => `evaluation worker ${i + 1}/${n}${current ? ` (setting '${current}')` : ''}`;
      const next = () => {
        current = queue.shift();
        if (current !== undefined) { w.postMessage({ type: 'evaluate', name: current }); return; }
        finished = true;
        void w.terminate();
        if (--running === 0 && !failed) resolve();
      };
      w.on('message', (m: EvaluationWorkerMessage) => {
        if (m.type === 'ready') next();
        else if (m.type === 'done') { onDone(m.name); next(); }
        else stop(new OrderHeadError(m.problem, `${where()}${m.where ? `: ${m.where}` : ''}`,
          m.fix ?? 'see the message; the settings finished so far are in the evaluation cache, and a rerun continues with the rest'));
      });
      w.on('error', (e) => stop(new OrderHeadError(`the worker thread failed: ${e.message}`, where(), 'rerun the cell: finished settings load from the evaluation cache')));
      w.on('exit', (code) => { if (!finished) stop(new OrderHeadError(`the worker thread exited (code ${code}) before finishing`, where(), 'rerun the cell: finished settings load from the evaluation cache')); });
    }
  });
}
