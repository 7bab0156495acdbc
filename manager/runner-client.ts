/**
 * The manager's one call to a runner: POST /kill with the attempt's runner credential, so the
 * runner ends the job as Killed and reports it before its pod is deleted. Best effort: a runner
 * that cannot be reached is stopped by the pod's deletion (SIGTERM) all the same.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { request } from 'undici';
import type { Logger } from '../common/logger.js';

export interface RunnerClient {
  kill(pod: V1Pod, runnerToken: string): Promise<void>;
}

export class HttpRunnerClient implements RunnerClient {
  constructor(
    private readonly port: number,
    private readonly logger: Logger,
  ) {}

  async kill(pod: V1Pod, runnerToken: string): Promise<void> {
    const ip = pod.status?.podIP;
    if (!ip || pod.status?.phase !== 'Running') return;
    try {
      const res = await request(`http://${ip}:${this.port}/kill`, {
        method: 'POST',
        headers: { authorization: `Bearer ${runnerToken}` },
        headersTimeout: 3000,
        bodyTimeout: 3000,
      });
      await res.body.dump();
    } catch (err) {
      this.logger.debug('runner /kill failed', { pod: pod.metadata?.name, error: String(err) });
    }
  }
}
