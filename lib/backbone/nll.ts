/**
 * Exact negative log-likelihood of images under any decode order (teacher
 * forcing). Because each order is fixed before the tokens it orders are seen
 * (or, for a policy, chosen only from what is already visible), every order
 * is a valid autoregressive factorisation of p(x | class), so NLLs under
 * raster, random and planner orders are directly comparable (METHOD.md §7).
 */
import * as tf from '@tensorflow/tfjs';
import { forward, GPT, tokenNll, tokensInOrder, DecodeOrder } from './gpt';
import { checkTokenIds, seqLen } from './config';
import { OrderHeadError } from '../runtime/errors';
import { BlockGeometry, cellsOfBlockOrder, OrderPolicy, rollOutOrder } from '../order';
import { teacherForcedContexts } from './decoding-context';

export interface NllResult {
  /** Per image: total NLL in nats (sum over its T tokens). */
  perImage: Float64Array;
  /** Per decode step t: mean NLL in nats over images. */
  perStep: Float64Array;
  /** Mean NLL in nats per token. */
  natsPerToken: number;
  /** Mean NLL in bits per token. */
  bitsPerToken: number;
  n: number;
}

/**
 * NLL of token grids (N x T, indexed by cell) with their classes, each image
 * decoded in its own order (`cells`: N x T, cells[i*T + t] = the cell decoded
 * at step t of image i). Runs in batches of `batch` images; leaks no tensors.
 */
export function exactNll(m: GPT, grids: Int32Array, classes: Int32Array, cells: Int32Array, batch = 64,
  onBatch?: (done: number) => void): NllResult {
  const T = seqLen(m.cfg);
  const N = classes.length;
  if (grids.length !== N * T || cells.length !== N * T) {
    throw new OrderHeadError(`got ${grids.length} tokens and ${cells.length} order cells for ${N} images of ${T} tokens`,
      'exactNll(grids, classes, cells)', 'pass N*T tokens and N*T cells for N classes');
  }
  if (N === 0) {
    throw new OrderHeadError('no images to score (0 classes given)', 'exactNll(grids, classes, cells)', 'pass at least one image (the NLL of nothing is undefined)');
  }
  checkTokenIds(m.cfg, grids, classes, 'exactNll(grids, classes)', true);
  // Each image's order must visit every cell once, or the sum is not a factorisation of p(x | class).
  const seen = new Int32Array(T).fill(-1);
  for (let i = 0; i < N; i++) {
    for (let t = 0; t < T; t++) {
      const c = cells[i * T + t];
      if (!(c >= 0 && c < T) || seen[c] === i) {
        throw new OrderHeadError(
          `the order of image ${i} is not a permutation of the cells 0 .. ${T - 1} (step ${t} decodes cell ${c}${c >= 0 && c < T ? ', already decoded' : ''})`,
          'exactNll(cells)', 'build orders with orderCells / cellsOfBlockOrder, one full permutation per image');
      }
      seen[c] = i;
    }
  }
  const perImage = new Float64Array(N), perStep = new Float64Array(T);
  for (let s = 0; s < N; s += batch) {
    const B = Math.min(batch, N - s);
    const order: DecodeOrder = { B, T, cells: cells.subarray(s * T, (s + B) * T) };
    const ordered = tokensInOrder(grids.subarray(s * T, (s + B) * T), order);
    const nll = tf.tidy(() => {
      const toks = tf.tensor2d(ordered, [B, T], 'int32');
      const inputs = tf.slice(toks, [0, 0], [B, T - 1]) as tf.Tensor2D;
      return tokenNll(forward(m, order, inputs, tf.tensor1d(classes.subarray(s, s + B), 'int32')).logits, toks);
    });
    const v = nll.dataSync();
    nll.dispose();
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        perImage[s + b] += v[b * T + t];
        perStep[t] += v[b * T + t];
      }
    }
    onBatch?.(s + B);
  }
  let total = 0;
  for (let i = 0; i < N; i++) total += perImage[i];
  for (let t = 0; t < T; t++) perStep[t] /= N;
  const natsPerToken = total / (N * T);
  return { perImage, perStep, natsPerToken, bitsPerToken: natsPerToken / Math.LN2, n: N };
}

/**
 * A policy's block orders on ground-truth grids (N x numTokens): it chooses
 * each next block from the true tokens of the blocks already visible, never
 * from what is still hidden, so each order is a valid factorisation. A policy
 * that reads the backbone's states gets them from a teacher-forced KV cache
 * (decoding-context.ts), as during sampling, instead of recomputing every
 * visible prefix.
 */
export async function rollOutOnGroundTruth(m: GPT, grids: Int32Array, classes: Int32Array, policy: OrderPolicy, geo: BlockGeometry): Promise<number[][]> {
  const T = seqLen(m.cfg), N = classes.length;
  const tokens = Array.from({ length: N }, (_, i) => grids.subarray(i * T, (i + 1) * T));
  const decoder = policy.contextOf ? teacherForcedContexts(policy.contextOf as GPT, geo, grids, classes) : undefined; // the backbone the policy reads, not always m
  try {
    return await rollOutOrder(policy, geo, N, { tokens, classIds: Array.from(classes), contexts: decoder && ((states) => decoder.contexts(states)) });
  } finally {
    decoder?.dispose();
  }
}

/**
 * NLL under an order policy: its block orders on the ground truth
 * (rollOutOnGroundTruth), then one teacher-forced pass scores the images in
 * those orders.
 */
export async function nllUnderPolicy(m: GPT, grids: Int32Array, classes: Int32Array, policy: OrderPolicy, geo: BlockGeometry,
  batch = 64): Promise<NllResult & { blockOrders: number[][] }> {
  const blockOrders = await rollOutOnGroundTruth(m, grids, classes, policy, geo);
  return { ...nllInBlockOrders(m, grids, classes, blockOrders, geo, batch), blockOrders };
}

/** exactNll of each image in its own block order (raster inside blocks). */
export function nllInBlockOrders(m: GPT, grids: Int32Array, classes: Int32Array, blockOrders: readonly (readonly number[])[], geo: BlockGeometry, batch = 64): NllResult {
  const T = seqLen(m.cfg);
  const cells = new Int32Array(classes.length * T);
  blockOrders.forEach((o, i) => cells.set(cellsOfBlockOrder(geo, o), i * T));
  return exactNll(m, grids, classes, cells, batch);
}
