/**
 * A tar or tar.gz stream read through the archive rules (archive-rules.ts) without writing
 * anything: the runner's inspection before it unpacks, storage's check before it publishes.
 * Entry bodies are discarded as they stream by, so memory does not grow with the archive, and
 * the scan stops at the first broken rule.
 */
import type { Readable } from 'node:stream';
import { Parser, type ReadEntry } from 'tar';
import type { ArchiveRules, EntryHeader, RuleViolation } from './archive-rules.js';

/** The bytes are not a tar(.gz) archive, or are cut short. */
export class ArchiveFormatError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ArchiveFormatError';
  }
}

/** Reading the input failed (not the archive's fault); `cause` is the input's error. */
class ArchiveInputError extends Error {}

export function headerOf(entry: ReadEntry): EntryHeader {
  return { path: entry.path, type: entry.type, linkpath: entry.linkpath, mode: entry.mode, size: entry.size };
}

/**
 * Returns the first violation, or null when every entry passed. Throws ArchiveFormatError for
 * bytes that are not a valid archive, and the input's own error if reading it failed.
 */
export async function scanArchive(input: Readable, rules: ArchiveRules): Promise<RuleViolation | null> {
  let violation: RuleViolation | null = null;
  const parser: Parser = new Parser({
    strict: true,
    onReadEntry: (entry) => {
      violation ??= rules.check(headerOf(entry));
      if (violation) parser.abort(new Error('archive rule broken'));
      else entry.resume(); // headers only: discard the data
    },
  });
  try {
    await feedTar(input, parser);
  } catch (err) {
    if (violation) return violation;
    if (err instanceof ArchiveInputError) throw err.cause;
    throw new ArchiveFormatError(`not a valid tar.gz: ${(err as Error).message}`, { cause: err });
  }
  return violation;
}

/**
 * Streams into a tar Parser/Unpack. They are event emitters with write/end rather than Node
 * streams, so stream.pipeline cannot tell when they are done; 'end' (after every pending write,
 * for Unpack) or 'error' can. A failure of the input itself rejects with an ArchiveInputError.
 */
export function feedTar(input: Readable, sink: Parser): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (err: unknown) => {
      input.destroy();
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    input.once('error', (err) => fail(new ArchiveInputError(err.message, { cause: err })));
    // on, not once: an aborted Unpack can report a second error later (a write it had in flight,
    // into a directory the caller has removed since), which must not become an uncaught exception
    sink.on('error', fail);
    sink.once('end', () => resolve());
    input.pipe(sink as unknown as NodeJS.WritableStream);
  });
}
