import { expect } from 'chai';
import { z } from 'zod';
import { ConfigError, bool, env, httpUrl, json, loadConfig, port } from '../../common/config.js';
import { RunnerJob } from '../../common/schemas.js';

const spec = {
  port: env('WORKER_PORT', port(8082)),
  key: env('LLM_KEY', z.string().min(1), { secret: true }),
  url: env('LLM_URL', httpUrl().default('https://api.openai.com/v1')),
  verbose: env('VERBOSE', bool(false)),
  job: env('JOB', json(RunnerJob)),
};

const validJob = JSON.stringify({ job_id: 'j-1', site_id: 'blog', prompt: 'fix the title' });

describe('loadConfig', () => {
  it('applies defaults and coerces values', () => {
    const cfg = loadConfig(spec, { PAGEWRIGHT_LLM_KEY: 'k', PAGEWRIGHT_JOB: validJob });
    expect(cfg.port).to.equal(8082);
    expect(cfg.url).to.equal('https://api.openai.com/v1');
    expect(cfg.verbose).to.equal(false);
    expect(cfg.job).to.include({ job_id: 'j-1', attempt: 1, timeout_seconds: 1800 });
  });

  it('treats an empty variable as unset and strips a trailing slash from URLs', () => {
    const cfg = loadConfig(spec, {
      PAGEWRIGHT_LLM_KEY: 'k',
      PAGEWRIGHT_JOB: validJob,
      PAGEWRIGHT_WORKER_PORT: '',
      PAGEWRIGHT_LLM_URL: 'http://127.0.0.1:9/v1/',
      PAGEWRIGHT_VERBOSE: 'true',
    });
    expect(cfg.port).to.equal(8082);
    expect(cfg.url).to.equal('http://127.0.0.1:9/v1');
    expect(cfg.verbose).to.equal(true);
  });

  it('names every bad variable at once and never echoes a secret', () => {
    let caught: unknown;
    try {
      loadConfig(spec, {
        PAGEWRIGHT_WORKER_PORT: 'eighty',
        PAGEWRIGHT_LLM_URL: 'ftp://x',
        PAGEWRIGHT_JOB: JSON.stringify({ job_id: 'j', site_id: 'Bad Site', prompt: 'p' }),
      });
    } catch (err) {
      caught = err;
    }
    expect(caught).to.be.instanceOf(ConfigError);
    const err = caught as ConfigError;
    expect(err.code).to.equal('InvalidConfig');
    expect(err.problems).to.have.length(4);
    expect(err.message).to.match(/PAGEWRIGHT_WORKER_PORT: .*"eighty"/);
    expect(err.message).to.match(/PAGEWRIGHT_LLM_KEY: is required but not set/);
    expect(err.message).to.match(/PAGEWRIGHT_LLM_URL: must be an http\(s\) URL/);
    expect(err.message).to.match(/PAGEWRIGHT_JOB: site_id must be a DNS label/);
  });

  it('does not print secret values', () => {
    const secretSpec = { token: env('ADMIN_TOKEN', z.string().min(32), { secret: true }) };
    expect(() => loadConfig(secretSpec, { PAGEWRIGHT_ADMIN_TOKEN: 'hunter2' }))
      .to.throw(ConfigError)
      .that.satisfies((e: Error) => !e.message.includes('hunter2'));
  });

  it('reports malformed JSON', () => {
    expect(() => loadConfig(spec, { PAGEWRIGHT_LLM_KEY: 'k', PAGEWRIGHT_JOB: '{nope' })).to.throw(/PAGEWRIGHT_JOB: is not valid JSON/);
  });
});
