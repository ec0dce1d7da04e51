/** The VQ tokenizer (curriculum Stage 0): config, model, training, token cache. */
export {
  TokenizerConfig, TokenizerDataConfig, TOKENIZER_CONFIG_DOCS, TOKENIZER_DEFAULTS, tokenizerConfig, validateTokenizerConfig, tokenizerRunDir, tokenGrid, tokensPerImage, patchPixels,
} from './config';
export { imagesToPatches, patchesToImages, neighbourhoodMask } from './patches';
export { TokenizerParams, TOKENIZER_MODEL_KEYS, tokenizerParamShapes, initTokenizerParams } from './params';
export { stopGradient as vqStopGradient, l2Normalise as vqL2Normalise, denseLayer as vqDenseLayer } from './layers';
export { encodePatches, decodeCodes, normalisedCodebook, nearestCodes, quantise } from './vq';
export { VqLossParts, vqLoss } from './loss';
export { TokenizerMetrics, psnrFromMse, codeUsageStats } from './metrics';
export { VqTokenizer, TokenizerSource, BatchOptions } from './vq-tokenizer';
export {
  TOKENIZER_STAGE, TokenizerImages, TrainTokenizerOptions, TrainTokenizerResult, trainTokenizer, restartDeadCodes, loadTokenizer,
  tokenizerModelDifferences,
} from './train';
export { LayerTiming, benchmarkTokenizerLayers } from './bench';
export {
  TOKEN_CACHE_FILE, TOKEN_CACHE_FORMAT, TokenSplit, TokenCache, LabelledImages, TokenizeDatasetOptions, TokenizeDatasetResult,
  tokenizeDataset, loadTokenCache, tokenCachePath,
} from './cache';
export { TOKENIZER_PSNR_AIM_DB, TokenizerRun, tokenizerFindings } from './findings';
