/**
 * What every storage route shares: parameter checks, preconditions and upload options from
 * headers, and sending a blob. Errors become responses in common/error-middleware.ts.
 */
import { pipeline } from 'node:stream/promises';
import type { Request, Response } from 'express';
import { JOB_ID_PATTERN, SHA256_PATTERN, SITE_ID_PATTERN } from '../common/schemas.js';
import type { BlobBackend, BlobRef, PutBlobOptions } from './backend.js';
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

export async function sendBlob(req: Request, res: Response, blobs: BlobBackend, blob: BlobRef, contentType: string): Promise<void> {
  const { version } = blob;
  // one request for the body and its size (a HEAD first would be a second round trip to S3)
  const opened = await blobs.open(blob);
  if (opened === null) throw new StorageError('Internal', `blob ${version} is missing from the store`);
  const { body, size } = opened;
  res.setHeader('ETag', `"${version}"`);
  res.setHeader('X-Content-SHA256', version);
  res.setHeader('Repr-Digest', contentDigestHeader(version));
  const inm = req.headers['if-none-match'];
  if (inm?.split(',').some((v) => unquoteEtag(v) === version)) {
    body.destroy();
    res.status(304).end();
    return;
  }
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', String(size));
  if (req.method === 'HEAD') {
    body.destroy();
    res.end();
    return;
  }
  try {
    await pipeline(body, res);
  } catch (err) {
    // a client that hangs up mid-download is not a server error
    if ((err as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') throw err;
  }
}
