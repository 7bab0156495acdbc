/**
 * What every storage route shares: parameter checks, preconditions and upload options from
 * headers, sending a blob, and the one place that turns errors into JSON responses.
 */
import { pipeline } from 'node:stream/promises';
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '../common/logger.js';
import { JOB_ID_PATTERN, SHA256_PATTERN, SITE_ID_PATTERN } from '../common/schemas.js';
import type { BlobStore, PutBlobOptions } from './blob-store.js';
import { contentDigestHeader, requestedSha256, unquoteEtag } from './digest.js';
import { StorageError } from './errors.js';
import { JobObjectName, type Precondition } from './ref-store.js';

export function siteParam(req: Request): string {
  const siteId = String(req.params.siteId);
  if (!SITE_ID_PATTERN.test(siteId)) {
    throw new StorageError('InvalidSiteId', 'site id must be a DNS label (lowercase letters, digits, "-", max 63 chars)');
  }
  return siteId;
}

export function jobParam(req: Request): string {
  const jobId = String(req.params.jobId);
  if (!JOB_ID_PATTERN.test(jobId)) {
    throw new StorageError('InvalidJobId', 'job id must be lowercase letters, digits, "-" and ".", max 253 chars');
  }
  return jobId;
}

export function objectParam(req: Request): JobObjectName {
  const parsed = JobObjectName.safeParse(req.params.name);
  if (!parsed.success) {
    throw new StorageError('NotFound', `job objects are ${JobObjectName.options.join(', ')}`);
  }
  return parsed.data;
}

export function preconditionOf(req: Request): Precondition {
  const pre: Precondition = {};
  const ifMatch = req.headers['if-match'];
  if (ifMatch !== undefined) {
    const v = unquoteEtag(ifMatch);
    if (v !== '*' && !SHA256_PATTERN.test(v)) throw new StorageError('InvalidVersion', 'If-Match must be "*" or a sha256 version');
    pre.ifMatch = v;
  }
  const ifNoneMatch = req.headers['if-none-match'];
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() !== '*') throw new StorageError('BadRequest', 'If-None-Match on PUT must be "*"');
    pre.ifNoneMatch = '*';
  }
  return pre;
}

export function putOptions(req: Request, maxBytes: number, tooLarge?: () => StorageError): PutBlobOptions {
  const declared = req.headers['content-length'];
  const expected = requestedSha256(req.headers);
  return {
    maxBytes,
    ...(expected !== undefined ? { expectedSha256: expected } : {}),
    ...(declared !== undefined ? { declaredSize: Number(declared) } : {}),
    ...(tooLarge ? { tooLarge } : {}),
  };
}

export async function sendBlob(req: Request, res: Response, blobs: BlobStore, version: string, contentType: string): Promise<void> {
  const size = await blobs.size(version);
  if (size === null) throw new StorageError('Internal', `blob ${version} is missing from the store`);
  res.setHeader('ETag', `"${version}"`);
  res.setHeader('X-Content-SHA256', version);
  res.setHeader('Repr-Digest', contentDigestHeader(version));
  const inm = req.headers['if-none-match'];
  if (inm !== undefined && inm.split(',').some((v) => unquoteEtag(v) === version)) {
    res.status(304).end();
    return;
  }
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', String(size));
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  try {
    await pipeline(blobs.createReadStream(version), res);
  } catch (err) {
    // a client that hangs up mid-download is not a server error
    if ((err as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') throw err;
  }
}

/** The error middleware: every error becomes {error, message} with its status. */
export function errorHandler(logger: Logger) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const storageError = toStorageError(err);
    if (storageError.status >= 500) logger.error('request failed', { method: req.method, path: req.path, error: String(err) });
    else logger.debug('request rejected', { method: req.method, path: req.path, code: storageError.code });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // the client may still be sending a body we refused; don't keep the socket to drain it
    if (!req.complete) res.setHeader('Connection', 'close');
    res.status(storageError.status).json({ error: storageError.code, message: storageError.message });
  };
}

function toStorageError(err: unknown): StorageError {
  if (err instanceof StorageError) return err;
  const e = err as { type?: string; status?: number; message?: string };
  // body-parser errors carry a status and a type
  if (e.type === 'entity.too.large') return new StorageError('PayloadTooLarge', 'request body is too large');
  if (e.type === 'entity.parse.failed') return new StorageError('BadRequest', 'request body is not valid JSON');
  if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) return new StorageError('BadRequest', e.message ?? 'bad request');
  return new StorageError('Internal', 'internal error');
}
