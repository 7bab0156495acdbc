/**
 * The bundled scripted model (the demo script on the scripted model server): started in-process
 * by `pagewright run` when no API key is set, and served on its own by `pagewright demo-model`.
 */
import { demoScript } from './demo-script.js';
import { startModelServer } from './model-server.js';

export interface OfflineModel {
  url: string;
  key: string;
  model: string;
  close(): Promise<void>;
}

/** A model slug codex has metadata for, so the agent gets its apply_patch tool. */
export const OFFLINE_MODEL = 'gpt-5.5';

export async function startOfflineModel(opts: { host?: string; port?: number; apiKey?: string } = {}): Promise<OfflineModel> {
  const server = await startModelServer({ script: demoScript, ...opts });
  return { url: server.url, key: server.key, model: OFFLINE_MODEL, close: () => server.close() };
}
