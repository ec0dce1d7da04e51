/** The VQ tokenizer (curriculum Stage 0): config, model, training, token cache. */
export {
  TokenizerConfig, TokenizerDataConfig, TOKENIZER_CONFIG_DOCS, tokenizerConfig, validateTokenizerConfig, tokenizerRunDir, tokenGrid, tokensPerImage, patchPixels,
} from './config';
export {
  VqTokenizer, TokenizerParams, TokenizerMetrics, TokenizerSource, BatchOptions, VqLossParts, TOKENIZER_MODEL_KEYS,
  imagesToPatches, patchesToImages, neighbourhoodMask, tokenizerParamShapes, initTokenizerParams, encodePatches, decodeCodes,
  normalisedCodebook, nearestCodes, quantise, vqLoss, psnrFromMse, codeUsageStats,
  stopGradient as vqStopGradient, l2Normalise as vqL2Normalise, denseLayer as vqDenseLayer,
} from './vq';
export {
  TOKENIZER_STAGE, TokenizerImages, TrainTokenizerOptions, TrainTokenizerResult, trainTokenizer, restartDeadCodes, loadTokenizer,
  tokenizerModelDifferences, yieldToEventLoop as tokenizerYield,
} from './train';
export { LayerTiming, benchmarkTokenizerLayers } from './bench';
export {
  TOKEN_CACHE_FILE, TOKEN_CACHE_FORMAT, TokenSplit, TokenCache, LabelledImages, TokenizeDatasetOptions, TokenizeDatasetResult,
  tokenizeDataset, loadTokenCache, tokenCachePath,
} from './cache';
export { TOKENIZER_PSNR_AIM_DB, TokenizerRun, tokenizerFindings } from './findings';
