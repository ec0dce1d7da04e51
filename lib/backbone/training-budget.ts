/**
 * A backbone's training budget (METHOD.md §6, "Matched budgets"): what it
 * has consumed since its random initialisation, summed over every run it went
 * through (a continuation inherits the random phase's budget from checkpoint
 * C; a Stage 5 tuned backbone adds its tuning steps). Every backbone
 * checkpoint records one in its `extra.budget`; the evaluation compares
 * backbones only at equal budgets (eval/budgets.ts).
 *
 *   images seen  = Σ_runs steps · batch
 *   tokens seen  = images seen · tokens per image
 *   epochs       = images seen / training images
 */
import { OrderHeadError } from '../runtime/errors';

export interface TrainingBudget {
  /** Optimizer steps, all runs together. */
  steps: number;
  /** Images per step of the runs (one number when every run used the same batch, else the runs' batches joined by '+'). */
  batch: string;
  /** Training images drawn (with replacement), all runs together. */
  imagesSeen: number;
  /** Target tokens trained on: imagesSeen x tokens per image. */
  tokensSeen: number;
  /** Images in the training split the draws came from. */
  trainImages: number;
  /** The runs it went through, oldest first, e.g. `stage1 block-rar 0-200`. */
  runs: string[];
}

/** The budget of `steps` optimizer steps of `batch` images of `tokensPerImage` tokens, drawn from `trainImages` images. */
export function runBudget(run: string, fromStep: number, steps: number, batch: number, tokensPerImage: number, trainImages: number): TrainingBudget {
  const images = (steps - fromStep) * batch;
  return { steps: steps - fromStep, batch: String(batch), imagesSeen: images, tokensSeen: images * tokensPerImage, trainImages, runs: [`${run} ${fromStep}-${steps}`] };
}

/** `base` followed by `more` (a continuation of base, or tuning on top of it). */
export function addBudget(base: TrainingBudget, more: TrainingBudget): TrainingBudget {
  return {
    steps: base.steps + more.steps,
    batch: base.batch === more.batch ? base.batch : `${base.batch}+${more.batch}`,
    imagesSeen: base.imagesSeen + more.imagesSeen,
    tokensSeen: base.tokensSeen + more.tokensSeen,
    trainImages: Math.max(base.trainImages, more.trainImages),
    runs: [...base.runs, ...more.runs],
  };
}

/** Epochs over the training split. */
export const budgetEpochs = (b: TrainingBudget): number => b.imagesSeen / b.trainImages;

/** Whether two budgets are the same contest budget: steps, batch and tokens seen. */
export function sameBudget(a: TrainingBudget, b: TrainingBudget): boolean {
  return a.steps === b.steps && a.batch === b.batch && a.tokensSeen === b.tokensSeen;
}

/** One line: `400 steps x 64 images, 1.64M tokens, 0.43 epochs`. */
export function formatBudget(b: TrainingBudget): string {
  const tok = b.tokensSeen >= 1e6 ? `${(b.tokensSeen / 1e6).toFixed(2)}M` : `${(b.tokensSeen / 1e3).toFixed(1)}k`;
  return `${b.steps} steps x ${b.batch} images, ${tok} tokens, ${budgetEpochs(b).toFixed(2)} epochs`;
}

/** The budget recorded in a checkpoint's extra; a clear error naming the file when it has none. */
export function budgetFromExtra(extra: Record<string, unknown>, file: string): TrainingBudget {
  const b = extra.budget as TrainingBudget | undefined;
  if (!b || !Number.isFinite(b.steps) || !Number.isFinite(b.tokensSeen) || !Array.isArray(b.runs)) {
    throw new OrderHeadError('the checkpoint records no training budget (it was written before budgets were recorded)', `${file} (extra.budget)`,
      'retrain it with notebooks/02_stage1_backbone.ipynb (and 06 for the continuations) in this profile: every backbone checkpoint now records its budget');
  }
  return b;
}
