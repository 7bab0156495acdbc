/**
 * The boundary between storage's HTTP API and where its bytes live (DESIGN.md "Storage
 * backends"). Two halves:
 *   - blobs: immutable bodies, written once, named by the backend, read by reference;
 *   - records: small JSON documents (a site's version and history, a job's objects and seal),
 *     changed only by compare-and-swap, so two storage processes on one backend never lose an
 *     update: the loser of a race re-reads and decides again (ref-store.ts).
 * `fs` (fs-backend.ts) is one directory owned by one process; `s3` (s3-backend.ts) is a bucket
 * any number of processes share, so nothing it needs for correctness lives in process memory.
 */
import type { Readable } from 'node:stream';
import type { StorageError } from './errors.js';

/** A stored blob: its sha256 (the API's version), its size and, where the backend names blobs itself, its key. */
export interface BlobRef {
  version: string;
  size: number;
  /** s3: the object's key under the prefix (one object per upload); fs: absent (the path is the digest). */
  key?: string;
}

export interface PutBlobOptions {
  maxBytes: number;
  /** The client's digest; a mismatch rejects the blob. */
  expectedSha256?: string;
  /** A size the client announced (Content-Length); checked against maxBytes before reading. */
  declaredSize?: number;
  /** The error for a body over maxBytes (default: PayloadTooLarge). */
  tooLarge?: () => StorageError;
}

export interface SweepReport {
  deleted: number;
  kept: number;
  bytes_freed: number;
}

export interface BlobBackend {
  readonly kind: 'fs' | 's3';
  close(): Promise<void>;
  /**
   * Streams the body into a new blob (hashed, size-limited, never buffered whole), then runs
   * `use` (which records a reference to it) with the blob safe from the collector.
   */
  put<T>(body: Readable, opts: PutBlobOptions, use: (blob: BlobRef) => Promise<T>): Promise<T>;
  /** Runs `fn` with an already stored blob safe from the collector (publish, while it references it anew). */
  protect<T>(blob: BlobRef, fn: () => Promise<T>): Promise<T>;
  /** The blob's size, or null if it is missing. */
  size(blob: BlobRef): Promise<number | null>;
  /** The blob's body and size in one request, or null if it is missing. */
  open(blob: BlobRef): Promise<{ body: Readable; size: number } | null>;
  /** The name a reference to this blob keeps alive in a sweep (what referenced() returns). */
  referenceOf(blob: BlobRef): string;
  /**
   * Deletes blobs no record references and that are older than the grace period.
   * `referenced` reads every record; a sweep that cannot read them all deletes nothing.
   */
  sweep(referenced: () => Promise<Set<string>>, graceSeconds: number): Promise<SweepReport>;
}

/** A record as stored: its JSON text and a tag that changes with every write (an ETag, a hash). */
export interface StoredRecord {
  text: string;
  tag: string;
}

/** The write happens only if the record is still at `tag`, or (absent) does not exist yet. */
export type WriteCondition = { tag: string } | { absent: true };

export interface RecordBackend {
  /** `path`: e.g. sites/blog.json, jobs/<uid>.json */
  read(path: string): Promise<StoredRecord | null>;
  /** Writes durably if the condition holds; false when another writer got there first. */
  write(path: string, text: string, condition: WriteCondition): Promise<boolean>;
  /** The names (e.g. blog.json) of the records under a directory (sites, jobs). */
  list(dir: string): AsyncIterable<string>;
}
