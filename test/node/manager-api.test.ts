/**
 * The manager's HTTP API against hostile and confused callers: missing, forged, expired and
 * other jobs' tokens, bad bodies, unknown jobs, stale and duplicate results. Each gets a clear
 * 4xx (or an acknowledged no-op) and the job's status does not change.
 *
 * Each test runs alone and in any order: the hostile callers aim at a job whose model never
 * answers (it stays Running for the whole suite), and the tests that need a finished job share
 * one that is created and run to Succeeded by whichever of them comes first.
 */
import { expect } from 'chai';
import { request } from 'undici';
import { JobTokens } from '../../common/tokens.js';
import type { JobResult } from '../../common/schemas.js';
import { type ManagerEnv, type ManagerProcess, randomName, startManagerEnv } from '../support/manager-env.js';
import type { PagewrightJob } from '../../common/job-resource.js';
import { jobResult } from '../support/job-result.js';
import { waitFor } from '../support/processes.js';

describe('manager HTTP API', function () {
  this.timeout(120_000);
  let env: ManagerEnv;
  let manager: ManagerProcess;
  let tokens: JobTokens;
  let uid: string;
  let name: string;
  let succeeded: Promise<PagewrightJob> | undefined;

  before(async () => {
    env = await startManagerEnv('api');
    manager = await env.startManager();
    tokens = new JobTokens(env.tokenSecret);
    name = randomName('api');
    await env.createJob(name, { siteId: 'site-a', prompt: 'MODEL:hang for the API tests' });
    const job = await env.waitForJob(name, 'executing_codex', (j) => j.status.runnerPhase === 'executing_codex', 60_000);
    uid = job.metadata.uid;
  });
  after(async () => env?.stop());

  /** A job of another site run to Succeeded, once for the tests that need one. */
  const finishedJob = (): Promise<PagewrightJob> => {
    succeeded ??= (async () => {
      const finished = randomName('api-done');
      await env.createJob(finished, { siteId: 'site-b', prompt: 'An ordinary edit for the API tests' });
      return env.waitForJob(finished, 'Succeeded', (j) => j.status.phase === 'Succeeded', 60_000);
    })();
    return succeeded;
  };

  const post = async (path: string, body: unknown, token?: string | null, raw?: string) => {
    const res = await request(`${manager.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: raw ?? JSON.stringify(body),
    });
    return { status: res.statusCode, body: (await res.body.json()) as { error?: string; message?: string; outcome?: string } };
  };
  const result = (attempt: number, over: Partial<JobResult> = {}): JobResult => jobResult(uid, attempt, { summary: 'forged', ...over });

  it("rejects callbacks without the job's own valid token", async () => {
    const other = await tokens.issue({ jobId: 'another-job', siteId: 'site-a', attempt: 1, ttlSeconds: 60 });
    const expired = await tokens.issue({ jobId: uid, siteId: 'site-a', attempt: 1, ttlSeconds: 1, now: Date.now() - 10_000 });
    const forged = await new JobTokens('x'.repeat(40)).issue({ jobId: uid, siteId: 'site-a', attempt: 1, ttlSeconds: 60 });
    const readOnly = await tokens.issue({ jobId: uid, siteId: 'site-a', attempt: 1, scopes: ['site:read'], ttlSeconds: 60 });
    for (const [what, token, status, error] of [
      ['no token', null, 401, 'TokenMissing'],
      ['a forged token', forged, 401, 'TokenInvalid'],
      ['an expired token', expired, 401, 'TokenExpired'],
      ["another job's token", other, 403, 'TokenForbidden'],
      ['a token without the callback scope', readOnly, 403, 'TokenForbidden'],
    ] as const) {
      const res = await post(`/jobs/${uid}/result`, result(1), token);
      expect(res.status, what).to.equal(status);
      expect(res.body.error, what).to.equal(error);
    }
    const job = await env.getJob(name);
    expect(job.status.reportedAttempt).to.equal(undefined);
    expect(job.status.phase).to.equal('Running');
  });

  it('answers bad bodies and unknown jobs with a clear 4xx', async () => {
    const token = await tokens.issue({ jobId: uid, siteId: 'site-a', attempt: 1, ttlSeconds: 60 });
    const notJson = await post(`/jobs/${uid}/result`, null, token, '{not json');
    expect(notJson.status).to.equal(400);
    const missing = await post(`/jobs/${uid}/result`, { job_id: uid, attempt: 1 }, token);
    expect(missing.status).to.equal(400);
    expect(missing.body.message).to.match(/invalid body: status/);
    const mismatch = await post(`/jobs/${uid}/result`, { ...result(1), job_id: 'someone-else' }, token);
    expect(mismatch.status).to.equal(400);
    const ghost = '99999999-0000-4000-8000-000000000000';
    const unknown = await post(
      `/jobs/${ghost}/result`,
      { ...result(1), job_id: ghost },
      await tokens.issue({ jobId: ghost, siteId: 'site-a', attempt: 1, ttlSeconds: 60 }),
    );
    expect(unknown.status).to.equal(404);
    expect(unknown.body.error).to.equal('JobNotFound');
    const route = await post('/nope', {}, token);
    expect(route.status).to.equal(404);
    expect((await env.getJob(name)).status.reportedAttempt).to.equal(undefined);
  });

  it('acknowledges a result for another attempt as stale, changing nothing; a token speaks for its own attempt only', async () => {
    const token = await tokens.issue({ jobId: uid, siteId: 'site-a', attempt: 7, ttlSeconds: 60 });
    const stale = await post(`/jobs/${uid}/result`, result(7), token);
    expect(stale.status).to.equal(200);
    expect(stale.body.outcome).to.equal('stale');
    // the current attempt's result, from another attempt's token: refused
    const forged = await post(`/jobs/${uid}/result`, result(1), token);
    expect(forged.status).to.equal(403);
    expect(forged.body).to.deep.include({ error: 'TokenForbidden' });
    expect(forged.body.message).to.match(/attempt 7's, the body speaks for attempt 1/);
    expect((await env.getJob(name)).status.reportedAttempt).to.equal(undefined);
  });

  it('records the real result once; a duplicate is acknowledged and ignored', async () => {
    const done = await finishedJob();
    const doneUid = done.metadata.uid;
    expect(done.status.summary).to.match(/Added a note/);
    const token = await tokens.issue({ jobId: doneUid, siteId: 'site-b', attempt: 1, ttlSeconds: 60 });
    const dup = await post(`/jobs/${doneUid}/result`, jobResult(doneUid, 1, { summary: 'a late duplicate' }), token);
    expect(dup.status).to.equal(200);
    expect(dup.body.outcome).to.equal('duplicate');
    const after = await env.getJob(done.metadata.name!);
    expect(after.status.summary).to.equal(done.status.summary);
    expect(after.metadata.resourceVersion).to.equal(done.metadata.resourceVersion);
  });

  it('serves health, readiness and Prometheus metrics', async () => {
    await finishedJob();
    for (const path of ['/healthz', '/readyz']) expect((await request(`${manager.url}${path}`)).statusCode, path).to.equal(200);
    const expected = [
      'pagewright_jobs{phase="Succeeded"} 1',
      'pagewright_workqueue_depth',
      'pagewright_reconcile_duration_seconds_bucket',
      'pagewright_job_duration_seconds_count{phase="Succeeded"} 1',
      'pagewright_runner_phase_duration_seconds_count{phase="executing_codex"} 1',
      'pagewright_callbacks_total{kind="result",outcome="recorded"} 1',
    ];
    // the job's end is observed after its status write returns, which a watcher can see first
    let metrics = '';
    await waitFor(
      'the finished job in /metrics',
      async () => {
        metrics = await (await request(`${manager.url}/metrics`)).body.text();
        return expected.every((m) => metrics.includes(m));
      },
      5000,
      100,
    ).catch(() => undefined);
    const missing = expected.filter((m) => !metrics.includes(m));
    // exactly 1: a reconcile from a stale cache copy once counted the job's end a second time
    expect(missing, missing.length > 0 ? `metrics:\n${metrics}\n${await env.diagnostics()}` : '').to.deep.equal([]);
  });
});
