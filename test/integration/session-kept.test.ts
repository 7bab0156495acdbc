/**
 * runner/session.ts on a real filesystem, CODEX_HOME in the hands of a hostile agent: the
 * rollout kept only as a regular file under sessions/, never through a link, redacted, bounded,
 * of its own thread; and put back where `codex exec resume` finds it.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { PagewrightError } from '../../common/errors.js';
import { installSession, keepSession, sessionThread } from '../../runner/session.js';

const THREAD = '01a237ba-f138-71e2-ad01-4742ce07a21c';
const OTHER = '01a237ba-f138-71e2-ad01-4742ce07a21d';
const SECRET = 'pw-gw-SECRETVALUE-1234567890';
const meta = (id: string) =>
  JSON.stringify({ timestamp: '2026-12-02T17:08:48.123Z', type: 'session_meta', payload: { id, timestamp: '2026-12-02T17:08:48.000Z' } });
const rollout = (id = THREAD) => `${meta(id)}\n{"type":"response_item","payload":{"output":"K=${SECRET} and ${SECRET}"}}\n`;

describe('the kept codex session (runner/session.ts)', () => {
  let dir: string;
  let home: string;
  let dated: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pw-session-'));
    home = join(dir, 'codex-home');
    dated = join(home, 'sessions', '2026', '12', '02');
    await mkdir(dated, { recursive: true });
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));
  const keep = (opts: { threadId?: string; maxBytes?: number } = {}) =>
    keepSession({ codexHome: home, threadId: opts.threadId ?? THREAD, dest: join(dir, 'kept.jsonl'), secrets: [SECRET, 'short'], ...opts });
  const name = (id = THREAD) => `rollout-2026-12-02T17-08-48-${id}.jsonl`;

  it('copies the rollout with every credential redacted, and says its digest and size', async () => {
    await writeFile(join(dated, name()), rollout());
    const kept = await keep();
    const text = await readFile(join(dir, 'kept.jsonl'), 'utf8');
    expect(text).not.to.contain(SECRET);
    expect(text).to.contain('K=[redacted] and [redacted]').and.contain(meta(THREAD));
    expect(kept).to.deep.equal({
      threadId: THREAD,
      sha256: createHash('sha256').update(text).digest('hex'),
      size: Buffer.byteLength(text),
    });
  });

  it("follows no link: a rollout that is a link to the runner's own file is skipped, its content never copied", async () => {
    const privateFile = join(dir, 'runner-token');
    await writeFile(privateFile, `${meta(THREAD)}\nRUNNER-PRIVATE\n`);
    await symlink(privateFile, join(dated, name()));
    expect(await keep()).to.have.property('skipped');
    const copied = await readFile(join(dir, 'kept.jsonl'), 'utf8').catch(() => '');
    expect(copied).not.to.contain('RUNNER-PRIVATE');
  });

  it('walks no linked directory: a rollout reached through sessions/2027 -> elsewhere is not found', async () => {
    const elsewhere = join(dir, 'elsewhere');
    await mkdir(elsewhere);
    await writeFile(join(elsewhere, name()), rollout());
    await symlink(elsewhere, join(home, 'sessions', '2027'));
    expect(await keep()).to.deep.equal({ skipped: 'codex wrote no rollout for the thread' });
  });

  it('skips a rollout of another thread, one that is no JSONL, one over the limit, a bad id and none at all', async () => {
    expect(await keep()).to.deep.equal({ skipped: 'codex wrote no rollout for the thread' });
    await writeFile(join(dated, name()), rollout(OTHER));
    expect((await keep()) as { skipped: string })
      .to.have.property('skipped')
      .that.matches(/session_meta/);
    await writeFile(join(dated, name()), `not json\n${rollout()}`);
    expect((await keep()) as { skipped: string })
      .to.have.property('skipped')
      .that.matches(/session_meta/);
    await writeFile(join(dated, name()), rollout());
    expect((await keep({ maxBytes: 100 })) as { skipped: string })
      .to.have.property('skipped')
      .that.matches(/over the limit of 100/);
    expect((await keep({ threadId: '../../x' })) as { skipped: string })
      .to.have.property('skipped')
      .that.matches(/not a UUID/);
  });

  it('puts a kept session back where resume finds it (sessions/rollout-<time>-<thread>.jsonl), group-writable, never over a file', async () => {
    const file = join(dir, 'in.jsonl');
    await writeFile(file, rollout());
    const fresh = join(dir, 'fresh-home');
    await installSession(file, fresh, THREAD);
    const dest = join(fresh, 'sessions', `rollout-2026-12-02T17-08-48-${THREAD}.jsonl`);
    expect(await readFile(dest, 'utf8')).to.equal(rollout());
    expect((await stat(dest)).mode & 0o777).to.equal(0o660);
    const again = await installSession(file, fresh, THREAD).catch((e: NodeJS.ErrnoException) => e.code);
    expect(again).to.equal('EEXIST');
  });

  it('refuses to put back a session that is not the thread it should be: FollowUpUnavailable', async () => {
    const file = join(dir, 'in.jsonl');
    await writeFile(file, rollout(OTHER));
    const err = await installSession(file, join(dir, 'fresh-home'), THREAD).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(PagewrightError).and.to.have.property('code', 'FollowUpUnavailable');
  });

  it('reads the thread of a session_meta line, and of nothing else', () => {
    expect(sessionThread(meta(THREAD))).to.equal(THREAD);
    expect(sessionThread(JSON.stringify({ type: 'event_msg', payload: { id: THREAD } }))).to.equal(null);
    expect(sessionThread(JSON.stringify({ type: 'session_meta', payload: { id: 'NOT-A-UUID' } }))).to.equal(null);
    expect(sessionThread('{')).to.equal(null);
  });
});
