/**
 * send's answers for small files, kept in memory and replayed: the fast path of a preview.
 *
 * Why: with express.static (send) alone, every request costs a stat, an open, a read and a
 * close, each a round trip through libuv's thread pool, plus a ReadStream piped to the socket.
 * bench/preview.ts measured that at 0.15-0.23x nginx's requests/s on a 1,000-file site, with
 * the CPU profile mostly in fs calls and stream machinery; nginx does the same work in a few
 * synchronous syscalls. The trees are immutable (a version is content-addressed and verified
 * before it is extracted), so an answer never goes stale: it can be kept.
 *
 * What is kept is exactly what send answered: when send serves a file of at most
 * MAX_FILE_BYTES with a plain 200 (no Range), its ETag, Last-Modified, Content-Type and
 * Accept-Ranges headers are recorded as it sent them, and the file is read once into memory.
 * A later request for the same version and path is answered from that: the same headers
 * (the isolation headers are set by the caller for every answer anyway), a 304 where
 * express's `req.fresh` (the `fresh` module send uses) says so, or the bytes. A request with
 * Range, If-Range, If-Match or If-Unmodified-Since goes to send, which implements those.
 * Bounded by bytes, least recently used out first.
 */
import { readFile } from 'node:fs/promises';
import type { Request, Response } from 'express';

const MAX_FILE_BYTES = 256 * 1024;
const KEPT_HEADERS = ['etag', 'last-modified', 'content-type', 'accept-ranges'] as const;

interface Answer {
  headers: Array<[string, string]>;
  body: Buffer;
  /** When it was last used (a tick of this memo): the least recently used go first. */
  used: number;
}

/**
 * Answers by version, then by path: a resolver hands over the same version string request after
 * request, whose hash V8 keeps, so a lookup hashes only the short path (a `version + path` key
 * would be a new 100-character string to build and hash every time).
 */
export class AnswerMemo {
  readonly #maxBytes: number;
  readonly #answers = new Map<string, Map<string, Answer>>();
  readonly #reading = new Set<string>();
  #bytes = 0;
  #tick = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Answers from memory and returns true, or returns false (the caller lets send answer). */
  serve(version: string, path: string, req: Request, res: Response): boolean {
    const answer = this.#answers.get(version)?.get(path);
    if (!answer) return false;
    const h = req.headers;
    if (h.range !== undefined || h['if-range'] !== undefined || h['if-match'] !== undefined || h['if-unmodified-since'] !== undefined)
      return false;
    answer.used = ++this.#tick;
    for (const [name, value] of answer.headers) res.setHeader(name, value);
    res.statusCode = 200;
    if ((h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined) && req.fresh) {
      res.removeHeader('content-type');
      res.statusCode = 304;
      res.end();
      return true;
    }
    res.setHeader('content-length', answer.body.length);
    res.end(req.method === 'HEAD' ? undefined : answer.body);
    return true;
  }

  /**
   * Called from send's `headers` event for the file it is about to send: once the answer went
   * out as a plain 200, its headers and the file's bytes are kept under (version, path).
   */
  learn(version: string, path: string, req: Request, res: Response, file: string, size: number): void {
    if (this.#maxBytes === 0 || size > MAX_FILE_BYTES || req.headers.range !== undefined) return;
    const key = `${version}\0${path}`;
    if (this.#answers.get(version)?.has(path) || this.#reading.has(key)) return;
    res.once('finish', () => {
      if (res.statusCode !== 200 || this.#reading.has(key)) return;
      const headers: Array<[string, string]> = [];
      for (const name of KEPT_HEADERS) {
        const value = res.getHeader(name);
        if (value !== undefined) headers.push([name, String(value)]);
      }
      this.#reading.add(key);
      readFile(file)
        .then((body) => {
          if (body.length === size) this.#keep(version, path, { headers, body, used: ++this.#tick });
        })
        .catch(() => {}) // a file that cannot be read is simply not kept: send answers it next time
        .finally(() => this.#reading.delete(key));
    });
  }

  #keep(version: string, path: string, answer: Answer): void {
    let paths = this.#answers.get(version);
    if (!paths) {
      paths = new Map();
      this.#answers.set(version, paths);
    }
    paths.set(path, answer);
    this.#bytes += answer.body.length;
    if (this.#bytes > this.#maxBytes) this.#evict();
  }

  /** Drops the least recently used answers until a tenth of the budget is free (a scan, so not on every insert). */
  #evict(): void {
    const all: Array<[Map<string, Answer>, string, Answer]> = [];
    for (const paths of this.#answers.values()) for (const [path, a] of paths) all.push([paths, path, a]);
    all.sort((x, y) => x[2].used - y[2].used);
    for (const [paths, path, a] of all) {
      if (this.#bytes <= this.#maxBytes * 0.9) break;
      paths.delete(path);
      this.#bytes -= a.body.length;
    }
    for (const [version, paths] of this.#answers) if (paths.size === 0) this.#answers.delete(version);
  }
}
