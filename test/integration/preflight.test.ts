/**
 * The runner's model preflight (runner/preflight.ts, the openai SDK) against the scripted model
 * server over HTTP, playing the models routes of different OpenAI-compatible endpoints: one that
 * retrieves models, one that only lists them, one that answers neither, and the failures that
 * must keep their own reason.
 */
import { expect } from 'chai';
import { demoScript } from '../../cli/demo-script.js';
import { type ModelServer, type ModelServerOptions, startModelServer } from '../../cli/model-server.js';
import { PagewrightError } from '../../common/errors.js';
import { DEFAULT_MODEL } from '../../common/models.js';
import { preflightModel } from '../../runner/preflight.js';

describe('model preflight (scripted endpoint over HTTP)', function () {
  this.timeout(20_000);
  let model: ModelServer | undefined;
  afterEach(async () => {
    await model?.close();
    model = undefined;
  });

  async function preflight(
    opts: Omit<ModelServerOptions, 'script'>,
    over: { apiKey?: string; baseURL?: string } = {},
  ): Promise<PagewrightError | null> {
    model = await startModelServer({ script: demoScript, ...opts });
    const run = preflightModel({
      baseURL: over.baseURL ?? model.url,
      apiKey: over.apiKey ?? model.key,
      model: DEFAULT_MODEL,
      maxRetries: 0,
      timeoutMs: 5000,
    });
    return run.then(
      () => null,
      (err: unknown) => {
        expect(err).to.be.instanceOf(PagewrightError);
        return err as PagewrightError;
      },
    );
  }
  const modelCalls = () => model!.requests.map((r) => `${r.method} ${r.path}`);

  it('an endpoint that retrieves the model: passes with one request', async () => {
    expect(await preflight({})).to.equal(null);
    expect(modelCalls()).to.deep.equal([`GET /v1/models/${DEFAULT_MODEL}`]);
  });

  for (const status of [404, 405]) {
    it(`a list-only endpoint (retrieve answers ${status}) that lists the model: passes`, async () => {
      expect(await preflight({ retrieveStatus: status, models: ['another-model', DEFAULT_MODEL] })).to.equal(null);
      expect(modelCalls()).to.deep.equal([`GET /v1/models/${DEFAULT_MODEL}`, 'GET /v1/models']);
    });
  }

  it('a list-only endpoint without the model: ModelNotFound naming the first 5 it offers and how many more', async () => {
    const offered = Array.from({ length: 12 }, (_, i) => `model-${i + 1}`);
    const err = await preflight({ retrieveStatus: 405, models: offered });
    expect(err?.reason).to.equal('ModelNotFound');
    expect(err?.message).to.equal(
      `model endpoint ${model!.url} does not serve model ${DEFAULT_MODEL}; it offers model-1, model-2, model-3, model-4, model-5 and 7 more`,
    );
    expect(modelCalls()).to.deep.equal([`GET /v1/models/${DEFAULT_MODEL}`, 'GET /v1/models']);
  });

  it('a list-only endpoint with a few other models names them all; an empty list says so', async () => {
    expect((await preflight({ retrieveStatus: 404, models: ['a', 'b'] }))?.message).to.match(/does not serve model \S+; it offers a, b$/);
    await model!.close();
    expect((await preflight({ retrieveStatus: 404, models: [] }))?.message).to.match(/does not serve model \S+; it lists no models$/);
  });

  it('a model the endpoint does not retrieve (404) and does not list: ModelNotFound', async () => {
    const err = await preflight({ models: ['something-else'] });
    expect(err?.reason).to.equal('ModelNotFound');
    expect(err?.message).to.match(/it offers something-else$/);
  });

  for (const status of [404, 405]) {
    it(`${status} on both models routes: ModelNotFound`, async () => {
      const err = await preflight({ modelsStatus: status });
      expect(err?.reason).to.equal('ModelNotFound');
      expect(err?.message).to.contain(
        `does not serve model ${DEFAULT_MODEL} (GET /models/${DEFAULT_MODEL} answered HTTP ${status}, GET /models HTTP ${status})`,
      );
      expect(modelCalls()).to.deep.equal([`GET /v1/models/${DEFAULT_MODEL}`, 'GET /v1/models']);
    });
  }

  it('a wrong key stays LLMAuthFailed, without asking for the list', async () => {
    const err = await preflight({ retrieveStatus: 404, models: [DEFAULT_MODEL] }, { apiKey: 'sk-wrong' });
    expect(err?.reason).to.equal('LLMAuthFailed');
    expect(modelCalls()).to.deep.equal([`GET /v1/models/${DEFAULT_MODEL}`]);
  });

  it('a 5xx stays LLMUnavailable, on the retrieve route and on the list', async () => {
    const onRetrieve = await preflight({ modelsStatus: 503 });
    expect(onRetrieve?.reason).to.equal('LLMUnavailable');
    expect(modelCalls()).to.deep.equal([`GET /v1/models/${DEFAULT_MODEL}`]);
    await model!.close();
    const onList = await preflight({ retrieveStatus: 404, modelsStatus: 500 });
    expect(onList?.reason).to.equal('LLMUnavailable');
    expect(onList?.message).to.contain('answered HTTP 500');
    expect(modelCalls()).to.deep.equal([`GET /v1/models/${DEFAULT_MODEL}`, 'GET /v1/models']);
  });

  it('an unreachable endpoint stays LLMUnavailable', async () => {
    const err = await preflight({}, { baseURL: 'http://127.0.0.1:9/v1' });
    expect(err?.reason).to.equal('LLMUnavailable');
    expect(err?.message).to.match(/unreachable/);
  });
});
