/**
 * The evaluation suite (METHOD.md section 7): the feature network trained on
 * the project's own data, FID / sFID / IS / precision-recall / bootstrap
 * intervals on its features, progressive recognizability curves, the
 * evaluation settings and their per-setting evaluation, the oracle trajectory
 * metrics, and the paper tables and figures.
 * Every feature-net number is shown with FEATURE_NET_CAVEAT.
 *
 * Curated: what the notebooks call (oh.eval.*) and what other layers import
 * through this index. Everything else is imported by its file path.
 */
export { classificationAccuracy } from './class-accuracy';
export { evalConfig, EvalConfig } from './config';
export { EvalContext, realFeatureStats } from './context';
export { EvalSettingEvent, evaluateSettings } from './evaluate-settings';
export { balancedClasses, evaluateSetting } from './evaluate';
export { featureNetConfig, FeatureNetConfig } from './feature-net-config';
export { convSame, inputConvSame, maxPool2 } from './feature-net-layers';
export { loadFeatureNet, trainFeatureNet } from './feature-net-train';
export { FeatureNet, featureNetClassifier, featureNetOutputs } from './feature-net';
export { futureLossFigure, metricBarsFigure, recognizabilityCurvesFigure, remainingLossFigure } from './figures';
export { evaluationFindings } from './findings';
export { headline, headlineFigure, writeHeadline } from './headline';
export {
  DEFAULT_HEADROOM_CONFIG, GREEDY_ORACLE_BOUND, greedyOracleBound, HEADROOM_SETTINGS, HeadroomBound, HeadroomConfig, headroomTable,
} from './headroom';
export { FEATURE_NET_CAVEAT } from './metrics';
export { EVAL_METRICS, SettingOutcome, SettingResult } from './results';
export {
  blockRarRandomSetting, blockRarRasterSetting, disposeSetting, entropyFirstSetting, EvalSetting, isMissing, missingSetting,
  MissingSetting, orderHeadSetting, rasterBaselineSetting, settingOrMissing,
} from './settings';
export { ORACLE_TARGETS, OracleTargetName, plannerTrainedTarget, TrainedTarget } from './trajectory';
export {
  evalResultsTable, oracleComparisonTable, trajectoryResultsTable, writeOutcomesJson, writeResultTable,
} from './tables';
