/**
 * The shared pieces of every stage's training loop (tokenizer, Stage 1,
 * planner, router, joint tuning, feature network). Each stage writes its own
 * `for` loop, and every one of them reads:
 *
 *   t = resumeTraining(...)              newest `<stage>-step*` checkpoint: weights, AdamW moments, step, the stage's state
 *   for step = t.step .. t.until − 1:
 *     lr          = scheduledLr(optim, step)             warmup + cosine
 *     batch       = the stage's draw                     its RNG or data cursor is part of its state
 *     loss, grads = forward and backward on batch
 *     t.update(step, loss, grads, lr)                    guard (non-finite loss or ‖grads‖: stop, nothing updated) → clip → AdamW
 *     s = step + 1
 *     e = t.isEvalStep(s) ? evaluate() : {}              t.keepBest(s, e.metric, writeBest): the best checkpoint
 *     run.logMetrics(s, row ∪ e)
 *     t.isCheckpointStep(s) ? t.checkpoint(s, the stage's state)
 *   t.outcome()
 *
 * Why the row comes before the checkpoint: a kill between the two re-runs the
 * step on resume and logs the same row again, whereas a checkpoint without
 * its row would leave the step unlogged for good. A resumed run takes exactly
 * the steps of an uninterrupted one, because every source of randomness lives
 * in the stage's state and is saved with the weights. Stages with a live
 * notebook display (tokenizer, feature network) `await yieldToEventLoop()` at
 * the end of each step so the display (and Ctrl-C) stays responsive.
 */
import * as tf from '@tensorflow/tfjs';
import { ensure, OrderHeadError } from './errors';
import { AdamW, OptimConfig } from './optim';
import { assignWeights, CheckpointRef, checkpointName, latestCheckpoint, loadCheckpoint, removeOtherCheckpoints, saveCheckpoint } from './checkpoint';
import { Run } from './run';
import { Progress } from './progress';
import { rng, seedFrom } from './seed';

export interface ResumeOptions {
  /** The run folder (openRun) the stage logs to and checkpoints in. */
  run: Run<object>;
  /** Checkpoint prefix and kind of resume checkpoints, e.g. `tokenizer`. */
  stage: string;
  /** The config section that holds the optimiser fields, for messages: `tokenizer`, `planner`. */
  configName: string;
  optim: OptimConfig;
  /** AdamW over the trained variables (`optimizer.params`, by checkpoint name); the Training owns and disposes it. */
  optimizer: AdamW;
  /** The config written in each checkpoint and expected on resume. */
  checkpointConfig: object;
  /** Restore the stage's state (RNG, data cursor, usage counts) from a resume checkpoint's `extra` and tensors. */
  restore?: (extra: Record<string, unknown>, weights: Record<string, tf.Tensor>, file: string) => void;
  /** Resume checkpoints every this many steps; default `optim.evalEvery`. Always at the last step. */
  checkpointEvery?: number;
  /** Stop this call at this step (train in slices). */
  untilStep?: number;
  /** Stop this call after this many steps (resume tests). */
  maxSteps?: number;
}

/** What a stage saves in a resume checkpoint besides its trained weights and AdamW moments. */
export interface StageCheckpoint {
  /** JSON-safe state (RNG, data cursor, budget), into the checkpoint's `extra`. */
  extra: Record<string, unknown>;
  /** Variables saved beside the trained ones but not trained (the router's input statistics). */
  weights?: Record<string, tf.Variable>;
  /** Host arrays saved after the AdamW moments (the tokenizer's code usage). */
  arrays?: Record<string, Int32Array | Float32Array>;
  /** Tags in the file name, e.g. Stage 1's `r1.00`. */
  tags?: string[];
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
  /** Wall time from the resume to `outcome()`. */
  seconds: number;
}

/** Resume (or start) a stage's training: the returned Training is what the stage's own loop calls. The caller disposes it. */
export function resumeTraining(options: ResumeOptions): Training {
  return new Training(options);
}

/** The shared state of one call of a stage's loop: step, AdamW, best evaluation, stop reason, checkpoints written. */
export class Training {
  readonly optimizer: AdamW;
  /** Step the call started from (0, or the resumed checkpoint's). */
  readonly startStep: number = 0;
  /** Steps done (updated by `update`). */
  step = 0;
  /** The step this call stops at: the run's end, `untilStep` or `startStep + maxSteps`. */
  readonly until: number;
  readonly resumedFrom?: string;
  /** The newest resume checkpoint (this call's or the resumed one). */
  checkpointFile?: string;
  readonly written: string[] = [];
  best?: { step: number; value: number };
  /** Set by `stop` (or by the resumed checkpoint): a stopped run stays stopped. */
  stopReason?: string;
  private readonly checkpointEvery: number;
  private readonly t0: number;

  constructor(private readonly o: ResumeOptions) {
    const { run, stage, optim, optimizer } = o;
    this.optimizer = optimizer;
    try {
      this.checkpointEvery = o.checkpointEvery ?? optim.evalEvery;
      ensure(this.checkpointEvery > 0, 'no checkpoint cadence (checkpointEvery and evalEvery are 0)', `${o.configName}.evalEvery`, 'set a positive evalEvery');
      const last = run.latestCheckpoint(stage);
      if (last) {
        const ck = loadCheckpoint(last.path, { expectConfig: o.checkpointConfig });
        try {
          assignWeights(optimizer.params, ck.weights, last.path, 'the file does not belong to this config: delete the run folder or use another one');
          const extra = ck.extra as Record<string, unknown>;
          optimizer.loadState(ck.weights, Number(extra.optStep ?? ck.step), last.path);
          o.restore?.(extra, ck.weights, last.path);
          this.best = (extra.best ?? undefined) as Training['best'];
          this.stopReason = (extra.stopReason ?? undefined) as string | undefined;
        } finally {
          tf.dispose(Object.values(ck.weights));
        }
        this.startStep = this.step = ck.step;
        this.resumedFrom = this.checkpointFile = last.path;
      }
    } catch (err) {
      optimizer.dispose();
      throw err;
    }
    this.until = Math.min(optim.steps, o.untilStep ?? optim.steps, o.maxSteps !== undefined ? this.startStep + o.maxSteps : optim.steps);
    this.t0 = performance.now();
  }

  /**
   * The update of step `step` (0-based): a non-finite loss or gradient norm
   * stops the run before any parameter changes (the last good checkpoint
   * stays); else clip and AdamW at `lr`. Disposes `grads` (and `owned`, sums
   * built from them) either way. Returns the gradient norm before clipping.
   */
  update(step: number, loss: number, grads: Record<string, tf.Tensor>, lr: number, more: { owned?: tf.Tensor[]; detail?: string } = {}): number {
    const { run, stage, configName, optim } = this.o;
    const lastGood = this.checkpointFile ? `the last good checkpoint ${this.checkpointFile} is unchanged` : 'no checkpoint had been saved yet';
    try {
      if (!Number.isFinite(loss)) {
        throw new OrderHeadError(`the training loss is ${loss}${more.detail ? ` (${more.detail})` : ''} at step ${step + 1}; training stopped before updating, ${lastGood}`,
          run.dir, `check the data for NaN/Inf, then lower ${configName}.lr (now ${optim.lr}) or set ${configName}.clipNorm, and resume: the run continues from the last good checkpoint`);
      }
      let gradNorm: number;
      try {
        gradNorm = this.optimizer.apply(grads, lr);
      } catch (err) {
        if (!(err instanceof OrderHeadError)) throw err;
        throw new OrderHeadError(`${err.problem} (${stage} step ${step + 1}); ${lastGood}`, run.dir,
          `lower ${configName}.lr (now ${optim.lr}) or ${configName}.clipNorm and resume from the last good checkpoint`);
      }
      this.step = step + 1;
      return gradNorm;
    } finally {
      tf.dispose([...Object.values(grads), ...(more.owned ?? [])]);
    }
  }

  /** Evaluate after step `s` (1-based): every `evalEvery` steps and at the run's last step. */
  isEvalStep(s: number): boolean {
    const { evalEvery, steps } = this.o.optim;
    return (evalEvery > 0 && s % evalEvery === 0) || s === steps;
  }

  /**
   * Best-checkpoint keeping: when `value` (lower is better) beats the best so
   * far, `write` the best files of step `s`, and every other file of their
   * prefixes goes (also ones left by a kill between a write and its clean-up).
   */
  keepBest(s: number, value: number, write: () => { prefix: string; file: string }[]): void {
    if (!(value < (this.best?.value ?? Infinity))) return;
    this.best = { step: s, value };
    for (const { prefix, file } of write()) removeOtherCheckpoints(this.o.run.checkpointDir, prefix, file);
  }

  /** End the run for good (recorded in the next checkpoint: a resumed run stays stopped). */
  stop(reason: string): void {
    this.stopReason = reason;
  }

  /** Write a resume checkpoint after step `s`: every `checkpointEvery` steps and at the run's last step. */
  isCheckpointStep(s: number): boolean {
    return s % this.checkpointEvery === 0 || s === this.o.optim.steps;
  }

  /** Write the resume checkpoint of step `s`: trained weights, `state.weights`, AdamW moments, `state.arrays`; the stage's and the loop's state in `extra`. */
  checkpoint(s: number, state: StageCheckpoint): void {
    const { run, stage, checkpointConfig } = this.o;
    const file = saveCheckpoint(run.checkpointDir, checkpointName(stage, s, state.tags ?? []), {
      weights: { ...this.optimizer.params, ...(state.weights ?? {}), ...this.optimizer.state(), ...(state.arrays ?? {}) }, config: checkpointConfig, step: s, kind: stage,
      extra: { ...state.extra, optStep: this.optimizer.step, best: this.best ?? null, stopReason: this.stopReason ?? null },
    });
    this.written.push(file);
    this.checkpointFile = file;
  }

  outcome(): TrainingOutcome {
    return {
      startStep: this.startStep, step: this.step, resumedFrom: this.resumedFrom, written: [...this.written], checkpoint: this.checkpointFile,
      best: this.best, stopReason: this.stopReason, seconds: (performance.now() - this.t0) / 1000,
    };
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}

/** The best checkpoint a run kept (`keepBest`'s `best-step*`); an error when no evaluation ever ran. */
export function bestCheckpoint(run: Run<object>): CheckpointRef {
  const best = latestCheckpoint(run.checkpointDir, 'best');
  ensure(best, 'no best checkpoint was written', run.dir, 'train for at least evalEvery steps');
  return best;
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
