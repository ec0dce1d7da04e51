/**
 * The one resumable training loop every stage runs on (tokenizer, Stage 1,
 * planner, router, joint tuning, feature network). A stage brings its model,
 * its step and its evaluation; the loop owns everything else:
 *
 *   resume   newest `<stage>-step*` checkpoint of the run: weights, AdamW moments, step, the stage's state
 *   step s   lr_s = warmup + cosine(s);  (loss, grads) = stage.step(s, lr_s)
 *   guard    a non-finite loss or gradient norm stops the run before any update: the last good checkpoint stays
 *   update   AdamW(grads, lr_s)
 *   record   evaluate on eval steps (writing the best checkpoint) → metrics row → resume checkpoint, in that order
 *
 * Why the row comes before the checkpoint: a kill between the two re-runs the
 * step on resume and logs the same row again, whereas a checkpoint without
 * its row would leave the step unlogged for good. A resumed run takes exactly
 * the steps of an uninterrupted one, because every source of randomness lives
 * in the stage's state and is saved with the weights.
 *
 * The loop is written once, as a generator that yields after every step; the
 * synchronous driver runs it straight through (Stage 1 in a worker, the
 * planner and router), the asynchronous one lets the event loop through
 * between steps so a notebook's live display (and Ctrl-C) stays responsive.
 */
import * as tf from '@tensorflow/tfjs';
import { ensure, OrderHeadError } from './errors';
import { AdamW, OptimConfig, scheduledLr } from './optim';
import { assignWeights, checkpointName, loadCheckpoint, removeOtherCheckpoints, saveCheckpoint } from './checkpoint';
import { MetricValues, Run } from './run';
import { Progress, yieldToEventLoop } from './progress';
import { rng, seedFrom } from './seed';

/** What one training step hands back to the loop. */
export interface StepResult {
  /** Mean training loss of the step (host number). */
  loss: number;
  /** Gradients keyed like the trained parameters; a parameter without one (unused at this setting) is not updated. */
  grads: Record<string, tf.Tensor>;
  /** Further tensors the loop disposes with the gradients (sums built from them). */
  owned?: tf.Tensor[];
  /** Adds to the divergence message, e.g. `reconstruction NaN`. */
  detail?: string;
}

/** A stage's state beyond its weights (RNG, data cursor, usage counts), saved in every resume checkpoint. */
export interface StageState {
  /** JSON-safe values for the checkpoint's `extra` at `step`. */
  save(step: number): Record<string, unknown>;
  /** Host arrays saved beside the weights (e.g. the tokenizer's code usage). */
  arrays?(): Record<string, Int32Array | Float32Array>;
  /** Restore from a resume checkpoint's `extra` and tensors. */
  restore(extra: Record<string, unknown>, weights: Record<string, tf.Tensor>): void;
}

/** Best-checkpoint keeping: the lowest `metric` among eligible evaluations is written by `write`. */
export interface BestRule {
  /** Evaluation value to minimise, e.g. `valLoss`. */
  metric: string;
  /** Only evaluations passing this may become the best (the joint drift guard); default all. */
  eligible?: (values: MetricValues) => boolean;
  /** Write the best files of `step`; the loop then removes every other `<prefix>-step*` file it returned. */
  write: (step: number, values: MetricValues) => { prefix: string; file: string }[];
}

export interface TrainingSpec {
  /** The run folder (openRun) the loop logs to and checkpoints in. */
  run: Run<object>;
  /** Checkpoint prefix and kind of resume checkpoints, e.g. `tokenizer`. */
  stage: string;
  /** The config section that holds the optimiser fields, for messages: `tokenizer`, `planner`. */
  configName: string;
  optim: OptimConfig;
  /** The trained variables, by checkpoint name. */
  params: Record<string, tf.Variable>;
  /** Variables saved and restored with the weights but not trained (e.g. the router's input statistics). */
  fixed?: Record<string, tf.Variable>;
  /** The config written in each checkpoint and expected on resume. */
  checkpointConfig: object;
  state: StageState;
  /** One step at `step` (0-based, before the update) with learning rate `lr`. */
  step: (step: number, lr: number) => StepResult;
  /** After the update of step `step` (1-based), e.g. dead-code restarts. */
  afterUpdate?: (step: number) => void;
  /** The metrics row of step `step`; undefined for no row (stages that log windows). Default `{ loss, lr, gradNorm }`. */
  row?: (step: number, r: { loss: number; lr: number; gradNorm: number; ms: number }) => MetricValues | undefined;
  /** Held-out evaluation, on eval steps (and at step 0 with `evaluateAtStart`). */
  evaluate?: (step: number) => MetricValues;
  /** Evaluation values go into the step's row (default), or into a row of their own. */
  evalRow?: 'merge' | 'separate';
  /** Evaluate at the end of every call too (the feature network records its test accuracy in its last checkpoint). */
  evaluateAtCallEnd?: boolean;
  /** A fresh run evaluates and checkpoints step 0 first (the joint tuning's drift reference). */
  evaluateAtStart?: boolean;
  best?: BestRule;
  /** After an evaluation: a reason to stop the run for good (recorded; a resumed run stays stopped). */
  stopWhen?: (values: MetricValues, step: number) => string | undefined;
  /** Resume checkpoints every this many steps; default `optim.evalEvery`. Always at the last step. */
  checkpointEvery?: number;
  /** Also write a resume checkpoint when a call stops early (`untilStep`, `maxSteps`). */
  checkpointAtCallEnd?: boolean;
  /** Tags in resume checkpoint names, e.g. Stage 1's `r1.00`. */
  tags?: (step: number) => string[];
  /** Stop this call at this step (train in slices). */
  untilStep?: number;
  /** Stop this call after this many steps (resume tests). */
  maxSteps?: number;
  /** Once resumed (or not), before the first step: where the call starts, and the optimizer (e.g. to zero restarted rows' moments). */
  onStart?: (info: { startStep: number; optimizer: AdamW }) => void;
  /** After every step, with its metrics row (if any) and its evaluation (on eval steps). */
  onStep?: (step: number, row: MetricValues | undefined, evaluation: MetricValues | undefined) => void;
}

export interface TrainingOutcome {
  /** Step the call started from (0, or the resumed checkpoint's). */
  startStep: number;
  /** Step reached. */
  step: number;
  /** The resume checkpoint this call started from. */
  resumedFrom?: string;
  /** Resume checkpoints written by this call, oldest first: a resumed call lists only its own (the run's are `Run.checkpoints`). */
  written: string[];
  /** The newest resume checkpoint (this call's or the resumed one). */
  checkpoint?: string;
  best?: { step: number; value: number };
  stopReason?: string;
  /** Values of the last evaluation of this call. */
  lastEval?: MetricValues;
  /** Wall time of the steps of this call. */
  seconds: number;
}

/** Run the loop to its end without yielding (workers, small stages). */
export function runTraining(spec: TrainingSpec): TrainingOutcome {
  const it = trainingSteps(spec);
  for (let r = it.next(); ; r = it.next()) if (r.done) return r.value;
}

/** Run the loop, letting pending I/O (notebook displays, Ctrl-C) through between steps. */
export async function runTrainingAsync(spec: TrainingSpec): Promise<TrainingOutcome> {
  const it = trainingSteps(spec);
  for (let r = it.next(); ; r = it.next()) {
    if (r.done) return r.value;
    await yieldToEventLoop();
  }
}

/** Extra keys the loop keeps in resume checkpoints. */
interface LoopState { optStep: number; best?: { step: number; value: number }; stopReason?: string | null }

function* trainingSteps(spec: TrainingSpec): Generator<number, TrainingOutcome, void> {
  const { run, stage, optim } = spec;
  const opt = AdamW.fromConfig(spec.params, optim);
  const saved = { ...spec.params, ...(spec.fixed ?? {}) };
  const checkpointEvery = spec.checkpointEvery ?? optim.evalEvery;
  ensure(checkpointEvery > 0, 'no checkpoint cadence (checkpointEvery and evalEvery are 0)', `${spec.configName}.evalEvery`, 'set a positive evalEvery');
  const out: TrainingOutcome = { startStep: 0, step: 0, written: [], seconds: 0 };
  let loop: LoopState = { optStep: 0 };
  try {
    const last = run.latestCheckpoint(stage);
    if (last) {
      const ck = loadCheckpoint(last.path, { expectConfig: spec.checkpointConfig });
      try {
        assignWeights(saved, ck.weights, last.path, 'the file does not belong to this config: delete the run folder or use another one');
        const extra = ck.extra as Record<string, unknown>;
        loop = { optStep: Number(extra.optStep ?? ck.step), best: extra.best as LoopState['best'], stopReason: extra.stopReason as string | null | undefined };
        opt.loadState(ck.weights, loop.optStep, last.path);
        spec.state.restore(extra, ck.weights);
      } finally {
        tf.dispose(Object.values(ck.weights));
      }
      out.startStep = out.step = ck.step;
      out.resumedFrom = out.checkpoint = last.path;
    }
    out.best = loop.best;
    out.stopReason = loop.stopReason ?? undefined;

    const saveResume = (step: number) => {
      const arrays = spec.state.arrays?.() ?? {};
      const file = saveCheckpoint(run.checkpointDir, checkpointName(stage, step, spec.tags?.(step) ?? []), {
        weights: { ...saved, ...opt.state(), ...arrays }, config: spec.checkpointConfig, step, kind: stage,
        extra: { ...spec.state.save(step), optStep: opt.step, best: out.best ?? null, stopReason: out.stopReason ?? null },
      });
      out.written.push(file);
      out.checkpoint = file;
    };
    /** Evaluate at `step`, keep the best, apply the stop rule; returns the values. */
    const evaluate = (step: number): MetricValues => {
      const values = spec.evaluate!(step);
      out.lastEval = values;
      const rule = spec.best;
      if (rule) {
        const v = Number(values[rule.metric]);
        if ((rule.eligible?.(values) ?? true) && v < (out.best?.value ?? Infinity)) {
          out.best = { step, value: v };
          for (const { prefix, file } of rule.write(step, values)) removeOtherCheckpoints(run.checkpointDir, prefix, file);
        }
      }
      out.stopReason = spec.stopWhen?.(values, step) ?? out.stopReason;
      return values;
    };

    spec.onStart?.({ startStep: out.startStep, optimizer: opt });
    if (spec.evaluateAtStart && !last) {
      const values = evaluate(0);
      run.logMetrics(0, values);
      saveResume(0);
    }

    const until = Math.min(optim.steps, spec.untilStep ?? optim.steps, spec.maxSteps !== undefined ? out.step + spec.maxSteps : optim.steps);
    const lastGood = () => (out.checkpoint ? `the last good checkpoint ${out.checkpoint} is unchanged` : 'no checkpoint had been saved yet');
    const t0 = performance.now();
    while (out.step < until && out.stopReason === undefined) {
      const tStep = performance.now();
      const step = out.step;
      const lr = scheduledLr(optim, step);
      const r = spec.step(step, lr);
      let gradNorm: number;
      try {
        if (!Number.isFinite(r.loss)) {
          throw new OrderHeadError(`the training loss is ${r.loss}${r.detail ? ` (${r.detail})` : ''} at step ${step + 1}; training stopped before updating, ${lastGood()}`,
            run.dir, `check the data for NaN/Inf, then lower ${spec.configName}.lr (now ${optim.lr}) or set ${spec.configName}.clipNorm, and resume: the run continues from the last good checkpoint`);
        }
        try {
          gradNorm = opt.apply(r.grads, lr);
        } catch (err) {
          if (!(err instanceof OrderHeadError)) throw err;
          throw new OrderHeadError(`${err.problem} (${stage} step ${step + 1}); ${lastGood()}`, run.dir,
            `lower ${spec.configName}.lr (now ${optim.lr}) or ${spec.configName}.clipNorm and resume from the last good checkpoint`);
        }
      } finally {
        tf.dispose([...Object.values(r.grads), ...(r.owned ?? [])]);
      }
      const s = (out.step = step + 1);
      spec.afterUpdate?.(s);

      const callEnd = s === until;
      const evalStep = spec.evaluate !== undefined &&
        ((optim.evalEvery > 0 && s % optim.evalEvery === 0) || s === optim.steps || (spec.evaluateAtCallEnd === true && callEnd));
      const stepRow = spec.row ? spec.row(s, { loss: r.loss, lr, gradNorm, ms: performance.now() - tStep }) : { loss: r.loss, lr, gradNorm };
      const evalValues = evalStep ? evaluate(s) : undefined;
      const merged = spec.evalRow !== 'separate';
      const row = merged && evalValues ? { ...(stepRow ?? {}), ...evalValues } : stepRow;
      if (row) run.logMetrics(s, row);
      if (!merged && evalValues) run.logMetrics(s, evalValues);
      if (s % checkpointEvery === 0 || s === optim.steps || (spec.checkpointAtCallEnd === true && callEnd) || out.stopReason !== undefined) {
        saveResume(s);
      }
      spec.onStep?.(s, row, evalValues);
      yield s;
    }
    out.seconds = (performance.now() - t0) / 1000;
    return out;
  } finally {
    opt.dispose();
  }
}

/** What a notebook passes to a stage trained in slices with a live display (tokenizer, feature network). */
export interface TrainCallOptions {
  /** The run folder, e.g. tokenizerRunDir(session.runRoot, session.profile). */
  runDir: string;
  /** Progress bar factory (the notebook passes session.progress). */
  progress?: (opts: { total: number; label: string }) => Progress;
  /** Stop after this step (and save a checkpoint), to train in slices; default config.steps. */
  untilStep?: number;
  /** Called with each metrics row as it is logged (live curves). */
  onLog?: (row: Record<string, number>) => void;
  /** Backend name for the run manifest. */
  backend?: string;
}

/** Where one call of such a stage started and ended. */
export interface TrainCallResult {
  /** Step the call started from (0, or the checkpoint it resumed). */
  startStep: number;
  /** Step reached. */
  step: number;
  /** Checkpoint resumed from, if any. */
  resumedFrom?: string;
  /** The newest checkpoint. */
  checkpoint: string;
  /** Wall time of the training steps in this call. */
  seconds: number;
  /** Mean wall time per step in this call (NaN when no step ran). */
  secondsPerStep: number;
}

export function trainCallResult(o: TrainingOutcome): TrainCallResult {
  return {
    startStep: o.startStep, step: o.step, resumedFrom: o.resumedFrom, checkpoint: o.checkpoint!, seconds: o.seconds,
    secondsPerStep: o.step > o.startStep ? o.seconds / (o.step - o.startStep) : NaN,
  };
}

/**
 * Walks a dataset of `n` examples in epochs, each a seeded permutation
 * (`seedFrom(seed, label, epoch)`); its position (epoch, cursor) is part of
 * a stage's resume state, so a resumed run sees the same examples.
 */
export class EpochCursor {
  epoch = 0;
  cursor = 0;
  private order: Int32Array | undefined;

  constructor(readonly seed: number, readonly label: string) {}

  /** The next example's index in a dataset of `n`. */
  next(n: number): number {
    if (this.cursor >= n) { this.epoch++; this.cursor = 0; this.order = undefined; }
    if (!this.order) {
      const order = Array.from({ length: n }, (_, i) => i);
      rng(seedFrom(this.seed, this.label, this.epoch)).shuffle(order);
      this.order = Int32Array.from(order);
    }
    return this.order[this.cursor++];
  }

  /** Epochs done, fractional. */
  progress(n: number): number { return this.epoch + this.cursor / n; }

  state(): { epoch: number; cursor: number } { return { epoch: this.epoch, cursor: this.cursor }; }

  restore(x: Record<string, unknown>): void {
    this.epoch = Number(x.epoch ?? 0);
    this.cursor = Number(x.cursor ?? 0);
    this.order = undefined;
  }
}
