import { spawn } from 'node:child_process';
import { expect } from 'chai';
import { findMarkedProcesses, killMarkedProcesses } from '../../common/process-marker.js';

describe('process markers', () => {
  it('finds and kills every descendant, even one that left the session', async () => {
    const marker = `test-${process.pid}-${Date.now()}`;
    // the grandchild moves to its own session with setsid, as codex's commands do
    const child = spawn('bash', ['-c', 'setsid sleep 300 & sleep 300 & wait'], {
      env: { ...process.env, PAGEWRIGHT_PROCESS_MARKER: marker },
      stdio: 'ignore',
      detached: true,
    });
    const unrelated = spawn('sleep', ['300'], { env: { ...process.env, PAGEWRIGHT_PROCESS_MARKER: `${marker}-other` }, stdio: 'ignore' });
    try {
      let pids: number[] = [];
      for (let i = 0; i < 50 && pids.length < 3; i++) {
        await new Promise((r) => setTimeout(r, 20));
        pids = await findMarkedProcesses(marker);
      }
      expect(pids).to.have.length(3);
      expect(pids).to.include(child.pid);
      expect(pids).not.to.include(unrelated.pid);
      const left = await killMarkedProcesses(marker);
      expect(left).to.deep.equal([]);
      expect(unrelated.exitCode).to.equal(null);
    } finally {
      unrelated.kill('SIGKILL');
      child.kill('SIGKILL');
    }
  });
});
