import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { expect } from 'chai';
import { boundedLines, outputBudget } from '../../runner/agent-launcher.js';
import { limitFailure } from '../../runner/agent-limits.js';
import { forkRefusals } from '../../runner/cgroup-pids.js';

async function lines(chunks: string[], max: number) {
  const out = [];
  for await (const l of boundedLines(Readable.from(chunks.map((c) => Buffer.from(c))), max)) out.push(l);
  return out;
}

describe("the agent's output, bounded", () => {
  it('splits lines across chunks and cuts one longer than the limit, never holding more of it', async () => {
    expect(await lines(['ab', 'c\nde', 'f\n\ng'], 8)).to.deep.equal([
      { text: 'abc', bytes: 3, cut: false },
      { text: 'def', bytes: 3, cut: false },
      { text: '', bytes: 0, cut: false },
      { text: 'g', bytes: 1, cut: false },
    ]);
    expect(await lines(['0123', '456789', 'abc\nnext\n', 'x'.repeat(20)], 8)).to.deep.equal([
      { text: '01234567', bytes: 8, cut: true },
      { text: 'next', bytes: 4, cut: false },
      { text: 'xxxxxxxx', bytes: 8, cut: true },
    ]);
  });

  it("passes lines on until the run's budget is spent, each costing at least 256 bytes, then says so once", () => {
    const got: string[] = [];
    const emit = outputBudget((stream, line) => got.push(`${stream}:${line}`), 1000);
    emit('stdout', 'a', 1);
    emit('stderr', 'b', 1);
    emit('stdout', 'c', 1);
    emit('stdout', 'd', 1); // 4 x 256 = 1024: over
    emit('stdout', 'e', 1);
    expect(got).to.deep.equal([
      'stdout:a',
      'stderr:b',
      'stdout:c',
      "stderr:pagewright: the agent's output passed 1000 bytes; the rest of this run's output is dropped",
    ]);
    const big: string[] = [];
    outputBudget((_s, line) => big.push(line), 1000)('stdout', 'x'.repeat(2000), 2000);
    expect(big)
      .to.have.length(1)
      .and.to.match(/passed 1000 bytes/);
  });
});

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
