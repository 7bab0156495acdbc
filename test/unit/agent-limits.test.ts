import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { limitFailure } from '../../runner/agent-limits.js';
import { forkRefusals } from '../../runner/cgroup-pids.js';

describe('pod limits a run hit', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pw-limits-'));
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it("reads the kernel's count of refused forks from the first pids.events there is", async () => {
    await writeFile(join(dir, 'v2.events'), 'max 3\n');
    await writeFile(join(dir, 'bad.events'), 'something else\n');
    expect(await forkRefusals([join(dir, 'missing'), join(dir, 'bad.events'), join(dir, 'v2.events')])).to.equal(3);
    expect(await forkRefusals([join(dir, 'missing')])).to.equal(null);
  });

  it('a run the agent server saw refused forks fails PidsLimitExceeded; a free work dir is no failure', async () => {
    const pids = await limitFailure({ code: null, signal: 'SIGKILL', forkRefusals: 12 }, dir);
    expect([pids?.code, pids?.message]).to.deep.equal([
      'PidsLimitExceeded',
      "the agent's processes hit the pod's pids limit (the kubelet's podPidsLimit): the kernel refused 12 fork(s), and the run was stopped",
    ]);
    expect(await limitFailure({ code: 0, signal: null }, dir)).to.equal(null);
  });
});
