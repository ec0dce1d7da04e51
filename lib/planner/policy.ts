/**
 * The planner as an order policy (lib/order/policy.ts): the sampler and the
 * exact-NLL evaluator reach OrderHead only through this interface. At every
 * planning step the policy reads the backbone's features of what is visible
 * (lib/planner/features.ts), runs Algorithm 3 and returns the argmax over
 * unseen blocks. It only looks at visible tokens, so a planner-driven order is
 * a valid AR factorization and its NLL is exact (METHOD.md §7).
 */
import { ensure } from '../runtime/errors';
import { BlockGeometry, checkPolicyChoice, OrderPolicy, PolicyState } from '../order';
import { GPT } from '../backbone/gpt';
import { contextFeatures, FeatureItem, PlannerFeatures, plannerFeatures } from './features';
import { DecodingContext, decodingContext } from '../backbone/decoding-context';
import { checkLatentSteps, LatentSteps, Planner, plannerProbs } from './orderhead';
import { weightsFingerprint } from '../runtime/checkpoint';

/** Feature inputs of policy states (tokens decoded so far, class, visible blocks in reveal order). */
export function featureItems(states: readonly PolicyState[], name: string): FeatureItem[] {
  return states.map((s) => {
    ensure(s.tokens !== undefined && s.classId !== undefined, `state of sample ${s.index} carries no tokens or class`,
      `policy '${name}'`, 'pass states from sampleImages or nllUnderPolicy, which fill tokens and classId');
    return { tokens: s.tokens!, classId: s.classId!, visible: s.sequence };
  });
}

/**
 * The planner's features of policy states: from the decoder's cache when it
 * filled one for this backbone (decoding-context.ts: only the unseen blocks'
 * queries run), else one full backbone pass over each visible prefix.
 */
export function policyFeatures(backbone: GPT, geo: BlockGeometry, states: readonly PolicyState[], name: string): PlannerFeatures {
  const items = featureItems(states, name);
  const contexts = states.map((s) => decodingContext(s, backbone));
  const cached = states.length > 0 && contexts.every((c, i) => c !== undefined && c.cache === contexts[0]!.cache && c.cache.length === states[i].sequence.length * geo.tokensPerBlock && states[i].sequence.length > 0);
  return cached ? contextFeatures(backbone, geo, items, contexts as DecodingContext[]) : plannerFeatures(backbone, geo, items);
}

/** Argmax of `scores` [n, nb] over the blocks not visible in each state. */
function argmaxUnseen(states: readonly PolicyState[], scores: Float32Array, nb: number): number[] {
  return states.map((s, i) => {
    let best = -1, bv = -Infinity;
    for (let b = 0; b < nb; b++) if (!s.visible[b] && scores[i * nb + b] > bv) { bv = scores[i * nb + b]; best = b; }
    return best;
  });
}

/** OrderHead with R latent steps (default: its own) as an order policy on `backbone`. */
export function plannerPolicy(pl: Planner, backbone: GPT, geo: BlockGeometry, R: LatentSteps = pl.cfg.latentSteps, name = `orderhead R=${R}`): OrderPolicy {
  checkLatentSteps(R, `policy '${name}' (R)`); // before any sampling, not at the first planning step
  ensure(geo.numBlocks === pl.shape.numBlocks && geo.blocksY === pl.shape.blocksY && geo.blocksX === pl.shape.blocksX && backbone.cfg.dModel === pl.shape.backboneDim,
    `the planner was trained for ${pl.shape.blocksY}x${pl.shape.blocksX} blocks of a ${pl.shape.backboneDim}-wide backbone, ` +
    `here: ${geo.blocksY}x${geo.blocksX} blocks, width ${backbone.cfg.dModel}`,
    `policy '${name}'`, 'use the backbone and block grid the planner was trained with (loadPlanner checks the backbone fingerprint)');
  return {
    name,
    /** The planner's weights and R, read when asked (an evaluation cache key). */
    get fingerprint() { return `planner ${weightsFingerprint(pl.params)} R=${R}`; },
    contextOf: backbone,
    nextBlocks(states) {
      const probs = plannerProbs(pl, policyFeatures(backbone, geo, states, name), undefined, R);
      const out = argmaxUnseen(states, probs, geo.numBlocks);
      states.forEach((s, i) => checkPolicyChoice(s, out[i], name));
      return out;
    },
  };
}
