/**
 * The order-robust backbone (curriculum Stage 1, METHOD.md section 5): the GPT, its exact NLL under any
 * order, the sampler, block-RAR training and its checkpoints.
 *
 * Curated: what the notebooks call (oh.backbone.*) and what other layers import
 * through this index. Everything else is imported by its file path.
 */
export { stage1Findings } from './findings';
export { createGPT, decodePositions, disposeGPT } from './gpt';
export { checkpointNllTable, ORDER_TYPES } from './order-nll';
export { sampleImages } from './sampler';
export {
  continuationConfig, drawStage1Batch, loadBackbone, plannerOrderImages, selectedCheckpoint, selectionOrder, stage1Config, Stage1Config, stage1Geometry,
  stage1Draws, stage1Loss, stage1ModelConfig, stage1Optimizer, STAGE1_SEEDS, trainingSeeds, trainStage1Parallel,
} from './stage1';
export { Regime, regimeEpochs, regimeImages, RegimeImages, validationData } from './regime';
export { formatBudget } from './training-budget';
export { randomPhaseCheckpoint } from './checkpoints';
