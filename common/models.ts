/**
 * The model a job uses when it names none: one home for it (manager default, runner default,
 * the demo model's answer to "which models?"), so they never drift apart.
 *
 * A catalog model of codex 0.169.0 that uses the exec_command + apply_patch tools our tests
 * verify; newer "code mode" models can be chosen with PAGEWRIGHT_CODEX_MODEL or spec.model.
 */
export const DEFAULT_MODEL = 'gpt-5.5';

/** A job's model budget when nothing else says (manager config defaults, `pagewright run`). */
export const DEFAULT_BUDGET = { maxRequests: 200, maxInputTokens: 10_000_000, maxOutputTokens: 500_000 } as const;
