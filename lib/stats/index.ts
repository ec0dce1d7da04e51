/** The one verdict rule and the finding records every findings section renders. */
export * from './verdict';
export * from './findings';
