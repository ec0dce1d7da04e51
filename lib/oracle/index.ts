/**
 * The oracle (METHOD.md sections 3, 4 and 6, curriculum Stage 2): token-wise
 * future losses, the utilities u and u_extrap of every candidate block, the
 * oracle labels (Algorithms 1 and 2), and the oracle dataset built from them.
 *
 * Curated: what the notebooks call (oh.oracle.*) and what other layers import
 * through this index. Everything else is imported by its file path.
 */
export { agreementTable } from './agreement';
export { IMAGE_BOOTSTRAP, readingLabelings, sizeBuckets } from './analysis';
export { buildOracleDataset, OracleBuildLogLine, OracleScorer, readOracleBuildLog } from './build';
export { ORACLE_DATASET_DEFAULTS, oracleDatasetConfig, OracleDatasetConfig } from './dataset-config';
export {
  countPriorFigure, exampleStates, labelPositionFigure, labelSeries, localityBySizeFigure, readingSeries, utilityExamplesFigure,
  utilityScatterFigure,
} from './dataset-figures';
export {
  labelSet, loadOracleDataset, OracleDataset, oracleItem, OracleLabelSet, oracleSequence, primaryLabelSet,
} from './dataset';
export { oracleFindings } from './findings';
export { ORACLE_DATASET_FILE, parseShard, partCount, partFileName, shardParts } from './layout';
export {
  LABEL_POSITION_SIZES, LabelPositionRow, LabelPositionSummary, labelPositionSummary, labelPositionTable,
} from './label-positions';
export { LocalityRow, localityTable } from './locality';
export { mergeOracleDataset } from './merge';
export { ownLossTable } from './own-loss';
export { buildOracleDatasetParallel } from './parallel';
export { referenceRankTable } from './reference-rank';
export { scoreStatesReference } from './reference';
export { DEFAULT_ORACLE_BATCH, OracleConfig, OracleItem, OracleWeightsConfig, Reading, READINGS, StateScore } from './state-plan';
export { stateSequence, stateSize } from './states';
export { scoreRestLoss, scoreStates, scoreStatesPerWeight } from './utility';
export { blockWeight, PRIMARY_WEIGHT, WeightName, WEIGHTS } from './weights';
