/**
 * The crossover study (METHOD.md §6.9): the generator's unique training images
 * K and its compute N swept, to find where (if anywhere) order-robust training
 * (block-RAR) overtakes raster-only. Its config and cells (config.ts), running
 * them in shards with resume (run.ts, cli.ts), reading shards back together
 * (merge.ts), and the paired analysis, tables, figures and findings
 * (analysis.ts).
 *
 * Curated: what notebook 09 calls (oh.study.*). Everything else is imported by
 * its file path.
 */
export {
  cellConfigs, cellEpochs, FIXED_ORDERS, STUDY_ARM_LABELS, STUDY_ARMS, StudyArm, StudyCell, studyCells, studyCellSettings, StudyConfig, studyConfig,
  studyRoot, uniqueImagesAt,
} from './config';
export { CellResult, parseShard, runStudy, RunStudyResult, studyData, StudyData, StudyProgress, studySetup } from './run';
export { mergeStudy, StudyMerge } from './merge';
export {
  analyseStudy, regimeChoice, RegimeChoice, StudyAnalysis, studyCellRecords, studyFigure, studyFindings, StudyRow, studyRows, studyTable, writeStudyTables,
} from './analysis';
