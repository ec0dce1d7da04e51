/**
 * The VQ tokenizer's training loss (LlamaGen style) on one batch of patches:
 * reconstruction, codebook and commitment terms, through the straight-through
 * quantiser of vq.ts. All vectors L2-normalised, means over elements:
 *   L = mean (x̂ - x)^2 + w_cb · mean (sg(z) - q)^2 + β · mean (z - sg(q))^2
 */
import * as tf from '@tensorflow/tfjs';
import { TokenizerConfig } from './config';
import { TokenizerParams } from './params';
import { stopGradient } from './layers';
import { decodeCodes, encodePatches, normalisedCodebook, quantise } from './vq';

/** The loss terms of one batch (host numbers) and the chosen codes. */
export interface VqLossParts {
  /** Total loss as a scalar tensor (on the gradient tape). */
  loss: tf.Scalar;
  /** mean (x̂ - x)^2 on the [-1, 1] scale. */
  recMse: number;
  /** mean (z - q)^2: the value of both the codebook and the commitment term. */
  vqDist: number;
  /** Chosen code per patch row. */
  indices: Int32Array;
}

/**
 * Forward pass and loss of a batch of patches [n*T, P*P]: encoder, nearest
 * code, straight-through decoder, and
 * L = rec + codebookWeight * mean (sg(z) - q)^2 + beta * mean (z - sg(q))^2.
 * Call inside tf.variableGrads (or accumulateGrads); reads two scalars to the host.
 */
export function vqLoss(cfg: TokenizerConfig, p: TokenizerParams, patches: tf.Tensor2D, nImages: number): VqLossParts {
  const z = encodePatches(cfg, p, patches, nImages);
  const { q, zq, indices } = quantise(z, normalisedCodebook(p));
  const xr = decodeCodes(cfg, p, zq, nImages);
  const rec = tf.mean(tf.square(tf.sub(xr, patches))) as tf.Scalar;
  const codebookTerm = tf.mean(tf.square(tf.sub(stopGradient(z), q)));
  const commitTerm = tf.mean(tf.square(tf.sub(z, stopGradient(q))));
  const loss = tf.addN([rec, tf.mul(codebookTerm, cfg.codebookWeight), tf.mul(commitTerm, cfg.beta)]) as tf.Scalar;
  const recMse = rec.dataSync()[0];
  const vqDist = codebookTerm.dataSync()[0];
  return { loss, recMse, vqDist, indices };
}
