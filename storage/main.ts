/** Storage service entry point: config from PAGEWRIGHT_* env, then serve until SIGTERM. */
import { loadConfig } from '../common/config.js';
import { createLogger } from '../common/logger.js';
import { runMain } from '../common/main.js';
import { storageConfigSpec } from './config.js';
import { startStorageServer } from './server.js';

await runMain('storage', async () => {
  const config = loadConfig(storageConfigSpec);
  const logger = createLogger({ service: 'storage', level: config.logLevel });
  const storage = await startStorageServer(config, logger);
  return async () => {
    logger.info('storage shutting down');
    await storage.close();
  };
});
