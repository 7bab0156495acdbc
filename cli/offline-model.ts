/**
 * The bundled scripted model (the demo script on the scripted model server): started in-process
 * by `pagewright run` when no API key is set, and served on its own by `pagewright demo-model`.
 */
import { DEFAULT_MODEL } from '../common/models.js';
import { demoScript } from './demo-script.js';
import { type ModelServerOptions, type ModelTurn, type TurnContext, startModelServer } from './model-server.js';

export interface OfflineModel {
  url: string;
  key: string;
  model: string;
  close(): Promise<void>;
}

/** A model slug codex has metadata for, so the agent gets its apply_patch tool. */
export const OFFLINE_MODEL = DEFAULT_MODEL;

export interface OfflineModelOptions {
  host?: string;
  port?: number;
  apiKey?: string;
  /** Each answer waits this long first, as a real model thinks: long enough to watch a job run. */
  delayMs?: number;
  onRequest?: ModelServerOptions['onRequest'];
}

export async function startOfflineModel(opts: OfflineModelOptions = {}): Promise<OfflineModel> {
  const { delayMs = 0, ...listen } = opts;
  // biome-ignore lint/suspicious/noThenProperty: a delay turn names the turn that follows it; it is data, never awaited
  const script = delayMs > 0 ? (ctx: TurnContext): ModelTurn => ({ kind: 'delay', ms: delayMs, then: demoScript(ctx) }) : demoScript;
  const server = await startModelServer({ script, ...listen });
  return { url: server.url, key: server.key, model: OFFLINE_MODEL, close: () => server.close() };
}
