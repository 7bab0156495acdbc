/**
 * The pod-building part of the manager's configuration, from the manager's own defaults
 * (manager/config.ts), for tests and benches that build runner pods without running a manager.
 */
import { loadConfig } from '../../common/config.js';
import { MIN_SECRET_BYTES } from '../../common/tokens.js';
import { managerConfigSpec } from '../../manager/config.js';
import type { PodSpecConfig } from '../../manager/pod-spec.js';

export function defaultPodConfig(overrides: Partial<PodSpecConfig> = {}): PodSpecConfig {
  const config = loadConfig(managerConfigSpec, {
    // the variables without a default, as the Deployment sets them
    PAGEWRIGHT_MANAGER_URL: 'http://pagewright-manager:8081',
    PAGEWRIGHT_STORAGE_URL: 'http://pagewright-storage:8080',
    PAGEWRIGHT_STORAGE_ADMIN_TOKEN: 'unused-admin-token',
    PAGEWRIGHT_TOKEN_SECRET: 'x'.repeat(MIN_SECRET_BYTES),
    PAGEWRIGHT_GATEWAY_URL: 'http://pagewright-gateway:8085/v1',
    PAGEWRIGHT_GATEWAY_SECRET: 'g'.repeat(MIN_SECRET_BYTES),
    PAGEWRIGHT_GATEWAY_REPORT_TOKEN: 'unused-report-token',
  });
  return { ...config, ...overrides };
}
