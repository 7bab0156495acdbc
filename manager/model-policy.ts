/**
 * What a job may ask of the model, decided before it runs: its model must be in the cluster's
 * allowlist, and its budget (spec.budget, each unset limit taking the cluster default) within
 * the cluster's caps. Pure: a job and the config in, the model and budget its attempts carry in
 * their gateway credential out, or the reason it is refused.
 */
import type { Budget } from '../common/gateway-credential.js';
import type { PagewrightJob } from '../common/job-resource.js';
import type { ManagerConfig } from './config.js';

export type ModelPolicyConfig = Pick<
  ManagerConfig,
  | 'codexModel'
  | 'modelAllowlist'
  | 'budgetDefaultRequests'
  | 'budgetDefaultInputTokens'
  | 'budgetDefaultOutputTokens'
  | 'budgetMaxRequests'
  | 'budgetMaxInputTokens'
  | 'budgetMaxOutputTokens'
>;

export type ModelPolicy =
  | { allowed: true; model: string; budget: Budget }
  | { allowed: false; reason: 'ModelNotAllowed' | 'BudgetNotAllowed'; message: string };

export function modelPolicy(job: PagewrightJob, cfg: ModelPolicyConfig): ModelPolicy {
  const model = job.spec.model ?? cfg.codexModel;
  const allowlist = cfg.modelAllowlist ?? [cfg.codexModel];
  if (!allowlist.includes(model)) {
    return {
      allowed: false,
      reason: 'ModelNotAllowed',
      message: `spec.model ${JSON.stringify(model)} is not allowed here; allowed: ${allowlist.join(', ')}`,
    };
  }
  const asked = job.spec.budget ?? {};
  const budget: Budget = {
    maxRequests: asked.maxRequests ?? cfg.budgetDefaultRequests,
    maxInputTokens: asked.maxInputTokens ?? cfg.budgetDefaultInputTokens,
    maxOutputTokens: asked.maxOutputTokens ?? cfg.budgetDefaultOutputTokens,
  };
  const caps: Budget = {
    maxRequests: cfg.budgetMaxRequests,
    maxInputTokens: cfg.budgetMaxInputTokens,
    maxOutputTokens: cfg.budgetMaxOutputTokens,
  };
  const over = (Object.keys(caps) as Array<keyof Budget>).filter((k) => budget[k] > caps[k]);
  if (over.length > 0) {
    return {
      allowed: false,
      reason: 'BudgetNotAllowed',
      message: `spec.budget is above this cluster's caps: ${over.map((k) => `${k} ${budget[k]} > ${caps[k]}`).join(', ')}`,
    };
  }
  return { allowed: true, model, budget };
}
