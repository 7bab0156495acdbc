/** The bundled scripted model server, started for `pagewright run` when no API key is set. */
import { demoScript } from '../test/support/model-server/demo-script.js';
import { startModelServer } from '../test/support/model-server.js';

export interface OfflineModel {
  url: string;
  key: string;
  model: string;
  close(): Promise<void>;
}

/** A model slug codex has metadata for, so the agent gets its apply_patch tool. */
export const OFFLINE_MODEL = 'gpt-5.5';

export async function startOfflineModel(): Promise<OfflineModel> {
  const server = await startModelServer({ script: demoScript });
  return { url: server.url, key: server.key, model: OFFLINE_MODEL, close: () => server.close() };
}
