/**
 * Generation apart from the model (LlamaGen style): KV-cache decoding under any
 * order policy, with temperature, top-k, top-p and classifier-free guidance
 * combined on logits as LlamaGen does:
 *
 *   logits = uncond + s · (cond − uncond)
 *
 * The policy picks each next block from what is visible; tokens inside a block
 * are decoded in raster order. The planner reaches the sampler only through
 * this order-policy interface.
 */
import * as tf from '@tensorflow/tfjs';
import { decodeStep, disposeCache, emptyCache, GPT } from './gpt';
import { checkTokenIds, seqLen } from './config';
import { BlockGeometry, blockCells, checkPolicyChoice, emptyState, OrderPolicy, PolicyState, reveal } from '../order';
import { OrderHeadError } from '../runtime/errors';
import { rng, Rng } from '../runtime/seed';

export interface SampleOptions {
  /** Class id per image (B images). */
  classes: Int32Array;
  /** Chooses each next block. */
  policy: OrderPolicy;
  geometry: BlockGeometry;
  /** Softmax temperature; default 1. */
  temperature?: number;
  /** Keep the k most likely tokens (0 = off); default 0. */
  topK?: number;
  /** Keep the smallest set with probability mass >= p (1 = off); default 1. */
  topP?: number;
  /** Classifier-free guidance scale s (1 = off); default 1. */
  cfgScale?: number;
  seed?: number;
  /** Called after each block (progress displays). */
  onBlock?: (done: number, total: number) => void;
}

export interface SampleResult {
  /** B x T token grids, indexed by cell. */
  tokens: Int32Array;
  /** The block order each image was generated in. */
  blockOrders: number[][];
  /** B x T: the cell decoded at each step. */
  cells: Int32Array;
}

/** Sample one token from logits with temperature, top-k and top-p. */
export function sampleToken(logits: Float32Array, r: Rng, temperature = 1, topK = 0, topP = 1): number {
  const V = logits.length;
  if (temperature <= 0) { // greedy
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    return best;
  }
  const idx = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b] - logits[a]);
  const keep = topK > 0 ? Math.min(topK, V) : V;
  const max = logits[idx[0]];
  const probs = new Float64Array(keep);
  let z = 0;
  for (let j = 0; j < keep; j++) { probs[j] = Math.exp((logits[idx[j]] - max) / temperature); z += probs[j]; }
  let cut = keep;
  if (topP < 1) {
    let mass = 0;
    for (let j = 0; j < keep; j++) { mass += probs[j] / z; if (mass >= topP) { cut = j + 1; break; } }
  }
  let zc = 0;
  for (let j = 0; j < cut; j++) zc += probs[j];
  let u = r.next() * zc;
  for (let j = 0; j < cut; j++) { u -= probs[j]; if (u <= 0) return idx[j]; }
  return idx[cut - 1];
}

/** Generate B images of tokens under an order policy. Leaks no tensors. */
export async function sampleImages(m: GPT, opts: SampleOptions): Promise<SampleResult> {
  const { classes, policy, geometry: geo } = opts;
  const temperature = opts.temperature ?? 1, topK = opts.topK ?? 0, topP = opts.topP ?? 1, s = opts.cfgScale ?? 1;
  const B = classes.length, T = seqLen(m.cfg), V = m.cfg.vocabSize;
  if (geo.numTokens !== T || geo.gridW !== m.cfg.gridW) {
    throw new OrderHeadError(`block geometry is ${geo.gridH}x${geo.gridW} tokens, the model's grid is ${m.cfg.gridH}x${m.cfg.gridW}`,
      'sampleImages(geometry)', 'build the geometry from the model config (gridH, gridW)');
  }
  checkTokenIds(m.cfg, [], classes, 'sampleImages(classes)', true);
  const guided = s !== 1;
  const rows = guided ? 2 * B : B; // CFG: conditional rows, then the same images with the null class
  const r = rng(opts.seed ?? 0);
  const tokens = new Int32Array(B * T).fill(-1);
  const cells = new Int32Array(B * T);
  let states: PolicyState[] = Array.from({ length: B }, (_, i) => ({ ...emptyState(geo), index: i, classId: classes[i] }));
  const cache = emptyCache(m);
  const input = new Int32Array(rows), inCell = new Int32Array(rows).fill(-1), tgtCell = new Int32Array(rows);
  for (let b = 0; b < rows; b++) input[b] = b < B ? classes[b] : m.cfg.numClasses;
  let lastHidden: Float32Array | null = null;
  let t = 0;
  try {
    for (let k = 0; k < geo.numBlocks; k++) {
      states = states.map((st, i) => ({ ...st, tokens: tokens.subarray(i * T, (i + 1) * T),
        context: lastHidden ? { hidden: lastHidden.subarray(i * m.cfg.dModel, (i + 1) * m.cfg.dModel) } : undefined }));
      const chosen = await policy.nextBlocks(states);
      if (chosen.length !== B) {
        throw new OrderHeadError(`returned ${chosen.length} blocks for ${B} images`, `policy '${policy.name}'`, 'return one block per state');
      }
      chosen.forEach((blk, i) => checkPolicyChoice(states[i], blk, policy.name));
      const blockCellLists = chosen.map((blk) => blockCells(geo, blk));
      for (let j = 0; j < geo.tokensPerBlock; j++, t++) {
        for (let b = 0; b < rows; b++) tgtCell[b] = blockCellLists[b % B][j];
        const out = decodeStep(m, cache, input, inCell, tgtCell);
        const logits = tf.tidy(() => {
          if (!guided) return out.logits;
          const cond = tf.slice(out.logits, [0, 0], [B, V]), uncond = tf.slice(out.logits, [B, 0], [B, V]);
          return tf.add(uncond, tf.mul(tf.sub(cond, uncond), s));
        });
        const lv = logits.dataSync() as Float32Array;
        if (j === geo.tokensPerBlock - 1) lastHidden = (out.hidden.dataSync() as Float32Array).slice(0, B * m.cfg.dModel);
        tf.dispose([out.logits, out.hidden, logits]);
        for (let b = 0; b < B; b++) {
          const cell = tgtCell[b];
          const tok = sampleToken(lv.subarray(b * V, (b + 1) * V), r, temperature, topK, topP);
          tokens[b * T + cell] = tok;
          cells[b * T + t] = cell;
        }
        for (let b = 0; b < rows; b++) { input[b] = tokens[(b % B) * T + tgtCell[b]]; inCell[b] = tgtCell[b]; }
      }
      states = states.map((st, i) => reveal(st, chosen[i]));
      opts.onBlock?.(k + 1, geo.numBlocks);
    }
  } finally {
    disposeCache(cache);
  }
  return { tokens, blockOrders: states.map((st) => st.sequence.slice()), cells };
}
