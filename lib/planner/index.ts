/**
 * OrderHead: backbone features, the planner with latent reasoning, its training (Stages 3-4),
 * its policy, joint tuning (Stage 5) and the adaptive-budget router (Stage 6).
 *
 * Curated: what the notebooks call (oh.planner.*) and what other layers import
 * through this index. Everything else is imported by its file path.
 */
export { BUDGETS, checkBudgetSet } from './budget-set';
export { budgetPolicy, fixedBudgetPolicy } from './budget';
export { FeatureItem, featureTensors, PlannerFeatures, plannerFeatures } from './features';
export { plannerVsOracleFigure, trainingCurvesFigure, trajectoryFrames } from './figures';
export { BudgetSampleQuality, stage5ComparisonRows, stage5Findings, stage6Findings } from './findings';
export {
  fileFingerprint, JointData, jointData, JointEval, JointStepMetrics, JointTuningConfig, jointTuningConfig,
  loadJointPair, plannerLossThroughBackbone, trainJointTuning, tunedParamNames,
} from './joint';
export {
  checkLatentSteps, createPlanner, disposePlanner, LatentSteps, Planner, PLANNER_DEFAULTS, PlannerConfig,
  plannerForward, plannerInputs, plannerLoss, plannerProbs, PlannerShape,
} from './orderhead';
export {
  aggregatePlannerData, labelVisitedStates, OnPolicyConfig, onPolicyConfig, onPolicyFindings, OnPolicyResult, onPolicySequences, onPolicySize,
  onPolicyTable, runOnPolicyRounds,
} from './on-policy';
export { averageOrder, buildPlannerOrders } from './planner-orders';
export { entropyFirstPolicy, entropyPolicy } from './baselines';
export { featureItems, plannerPolicy, policyFeatures } from './policy';
export { routerTarget } from './router-target';
export { loadRouter, routerTrainConfig, RouterTrainConfig, trainRouter } from './router-train';
export { chooseBudgets, createRouter, disposeRouter, Router, routerForward } from './router';
export {
  baselineChoosers, evaluateChoosers, JOINT_FEATURES_FILE, latentCurriculumConfig, metricsRowsForTable,
  oracleStateFeatures, orderNllComparison, pairedDifference, plannerChooser, PRIMARY_PLANNER, PRIMARY_STAGE3_RUN, STAGE3_RUNS,
  stage3Findings, stage4Findings, trainLatentCurriculum, trainStage3Runs, trainStage4, verdict,
} from './stages';
export {
  bestPlannerCheckpoint, loadPlanner, PlannerData, plannerData, PlannerTrainConfig, plannerTrainConfig, splitByImage,
  trainPlanner,
} from './train';
