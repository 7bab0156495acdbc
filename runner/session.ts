/**
 * The agent's codex session, kept for a follow-up (PagewrightJob spec.followUpOf): codex writes
 * its thread as a rollout, `CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<thread>.jsonl`
 * (notes: codex-resume), which `codex exec resume <thread>` replays to the model whole.
 *
 * The rollout is the agent's writing: codex runs as the agent, and everything the agent runs
 * can rewrite CODEX_HOME. So the runner treats it as untrusted job data:
 * - it is read only after the agent has stopped, and only as a regular file under
 *   CODEX_HOME/sessions: no link is followed (a rollout replaced by a link to the runner's own
 *   files would otherwise upload them), the opened file's real path is checked;
 * - every credential the runner knows of is redacted from it (tool outputs are stored
 *   verbatim, so an agent that printed its gateway credential would have it there);
 * - it is bounded (MAX_SESSION_BYTES) and must begin with the thread's own session_meta.
 * A follow-up's runner puts it back under a fresh CODEX_HOME (a flat `sessions/` works) and
 * resumes the thread by id. What the rollout says is the conversation, never an instruction to
 * the runner: it decides nothing but what the model is shown, as the site's files do.
 */
import { constants, createReadStream, createWriteStream } from 'node:fs';
import { chmod, copyFile, mkdir, open, readdir, readlink, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { PagewrightError } from '../common/errors.js';
import { ThreadId } from '../common/schemas.js';
import { Sha256Counter } from './archive.js';

/** A session over this is not kept (the job still succeeds; a follow-up of it is refused). */
export const MAX_SESSION_BYTES = 64 * 1024 * 1024;
const MAX_DEPTH = 4;

export interface KeptSession {
  threadId: string;
  sha256: string;
  size: number;
}

/** The rollout of `threadId` under `codexHome`/sessions, found without following any link; null when there is none. */
async function findRollout(codexHome: string, threadId: string): Promise<string | null> {
  const suffix = `-${threadId}.jsonl`;
  const walk = async (dir: string, depth: number): Promise<string | null> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return null;
    }
    for (const e of entries) if (e.isFile() && e.name.startsWith('rollout-') && e.name.endsWith(suffix)) return join(dir, e.name);
    if (depth >= MAX_DEPTH) return null;
    for (const e of entries) {
      // a Dirent of a link is a link, never a directory: links are not walked
      if (!e.isDirectory()) continue;
      const found = await walk(join(dir, e.name), depth + 1);
      if (found) return found;
    }
    return null;
  };
  return walk(join(codexHome, 'sessions'), 0);
}

/**
 * Copies the thread's rollout to `dest` (the runner's private dir), every secret replaced by
 * `[redacted]`. Null when there is no rollout, it is not a regular file under sessions/, or it
 * is over `maxBytes`: the job goes on without a session.
 */
export async function keepSession(opts: {
  codexHome: string;
  threadId: string;
  dest: string;
  secrets: readonly string[];
  maxBytes?: number;
}): Promise<KeptSession | { skipped: string }> {
  if (!ThreadId.safeParse(opts.threadId).success) return { skipped: `thread id ${JSON.stringify(opts.threadId)} is not a UUID` };
  const path = await findRollout(opts.codexHome, opts.threadId);
  if (!path) return { skipped: 'codex wrote no rollout for the thread' };
  const maxBytes = opts.maxBytes ?? MAX_SESSION_BYTES;
  let handle: import('node:fs/promises').FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    return { skipped: `the rollout cannot be opened as a file (${(err as NodeJS.ErrnoException).code})` };
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) return { skipped: 'the rollout is not a regular file' };
    if (st.size > maxBytes) return { skipped: `the rollout is ${st.size} bytes, over the limit of ${maxBytes}` };
    // a directory on the way swapped for a link after the walk: the opened file says where it is
    const root = await realpath(join(opts.codexHome, 'sessions'));
    const opened = await readlink(`/proc/self/fd/${handle.fd}`).catch(() => null);
    if (opened === null || !opened.startsWith(root + sep)) return { skipped: 'the rollout is outside CODEX_HOME/sessions' };
    const secrets = opts.secrets.filter((s) => s.length >= 8);
    const input = createReadStream('', { fd: handle.fd, autoClose: false, end: st.size - 1 });
    const out = createWriteStream(opts.dest, { mode: 0o600 });
    const counter = new Sha256Counter(maxBytes);
    counter.pipe(out);
    const done = new Promise<void>((resolve, reject) => {
      out.on('finish', resolve);
      out.on('error', reject);
      counter.on('error', reject);
    });
    let first = true;
    for await (const line of createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })) {
      if (first) {
        first = false;
        if (sessionThread(line) !== opts.threadId) {
          counter.end();
          await done.catch(() => {});
          return { skipped: "the rollout does not begin with the thread's session_meta" };
        }
      }
      const clean = secrets.reduce((l, secret) => l.split(secret).join('[redacted]'), line);
      if (!counter.write(`${clean}\n`)) await new Promise((r) => counter.once('drain', r));
    }
    counter.end();
    await done;
    return { threadId: opts.threadId, sha256: counter.digest(), size: counter.bytes };
  } finally {
    await handle.close();
  }
}

/** The thread id a rollout's first line (its session_meta) names, or null. */
export function sessionThread(firstLine: string): string | null {
  try {
    const parsed = JSON.parse(firstLine) as { type?: unknown; payload?: { id?: unknown } };
    if (parsed.type !== 'session_meta' || typeof parsed.payload?.id !== 'string') return null;
    return ThreadId.safeParse(parsed.payload.id).success ? parsed.payload.id : null;
  } catch {
    return null;
  }
}

/**
 * Puts a kept session (downloaded to `file`) where `codex exec resume <thread>` finds it:
 * CODEX_HOME/sessions/rollout-<time>-<thread>.jsonl. Refused (FollowUpUnavailable) when it
 * does not begin with that thread's session_meta.
 */
export async function installSession(file: string, codexHome: string, threadId: string): Promise<void> {
  const handle = await open(file, 'r');
  let firstLine: string;
  try {
    const buf = Buffer.alloc(256 * 1024);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    firstLine = buf.subarray(0, bytesRead).toString('utf8').split('\n')[0] ?? '';
  } finally {
    await handle.close();
  }
  // session_meta carries the base instructions (over 20 KB): a first line past 256 KiB is no rollout of ours
  if (sessionThread(firstLine) !== threadId)
    throw new PagewrightError(
      'FollowUpUnavailable',
      `the kept session is not thread ${threadId}'s (its first line is no session_meta of it)`,
    );
  const sessions = join(codexHome, 'sessions');
  await mkdir(sessions, { recursive: true });
  // the agent (another uid of the runner's group, in a pod) appends to it: group-writable, like CODEX_HOME
  await chmod(sessions, 0o2770);
  const dest = join(sessions, `rollout-${rolloutTime(firstLine)}-${threadId}.jsonl`);
  await copyFile(file, dest, constants.COPYFILE_EXCL);
  await chmod(dest, 0o660);
}

/** The rollout's time as codex names it (YYYY-MM-DDTHH-MM-SS), from session_meta's timestamp. */
function rolloutTime(firstLine: string): string {
  const ts = (JSON.parse(firstLine) as { timestamp?: unknown; payload?: { timestamp?: unknown } }).payload?.timestamp;
  const at = typeof ts === 'string' && !Number.isNaN(Date.parse(ts)) ? new Date(ts) : new Date(0);
  return at.toISOString().slice(0, 19).replace(/:/g, '-');
}
