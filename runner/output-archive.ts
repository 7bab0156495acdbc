/**
 * The packed output, read back before it is uploaded: every entry against the archive rules for
 * outputs (common/archive-rules.ts: what a later unpack would refuse, plus setuid/setgid), and
 * every file hashed for the manifest. One pass over the archive. What is uploaded is therefore
 * what was checked, even if something of the agent's still ran while the tree was packed.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry } from 'tar';
import {
  type ArchiveLimits,
  ArchiveRules,
  type RuleViolation,
  describeViolation,
  isRegularFileType,
  normalizeEntryPath,
} from '../common/archive-rules.js';
import { PagewrightError } from '../common/errors.js';
import type { Tree } from './tree.js';

export async function readOutputArchive(archivePath: string, limits: ArchiveLimits): Promise<Tree> {
  const rules = new ArchiveRules(limits, { specialBits: 'refuse' });
  const tree: Tree = new Map();
  const hashing: Array<Promise<void>> = [];
  let violation: RuleViolation | null = null;
  const parser = new Parser({
    onReadEntry: (entry: ReadEntry) => {
      if (violation) return void entry.resume();
      violation = rules.check({ path: entry.path, type: entry.type, linkpath: entry.linkpath, mode: entry.mode, size: entry.size });
      const path = normalizeEntryPath(entry.path);
      if (violation || path === '.') return void entry.resume();
      if (isRegularFileType(entry.type)) {
        const hash = createHash('sha256');
        entry.on('data', (c: Buffer) => hash.update(c));
        hashing.push(
          new Promise((resolve) =>
            entry.on('end', () => {
              tree.set(path, { type: 'file', size: entry.size ?? 0, sha256: hash.digest('hex'), mode: entry.mode ?? 0, statKey: '' });
              resolve();
            }),
          ),
        );
        return;
      }
      if (entry.type === 'Directory') tree.set(path, { type: 'dir', size: 0, sha256: '', mode: entry.mode ?? 0, statKey: '' });
      else if (entry.type === 'SymbolicLink' || entry.type === 'Link') {
        const target = entry.linkpath ?? '';
        tree.set(path, {
          type: 'symlink',
          size: 0,
          sha256: createHash('sha256').update(target).digest('hex'),
          target,
          mode: entry.mode ?? 0,
          statKey: '',
        });
      }
      entry.resume();
    },
  });
  await pipeline(createReadStream(archivePath, { highWaterMark: 1 << 20 }), parser);
  await Promise.all(hashing);
  if (violation) throw new PagewrightError('UnsafeOutput', `the packed output breaks the archive rules: ${describeViolation(violation)}`);
  return tree;
}
