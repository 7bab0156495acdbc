/**
 * Writes raw ustar archives entry by entry, so tests can build the hostile archives a friendly
 * tar library refuses to produce (`..` paths, absolute paths, escaping links, devices, bombs).
 */
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

type ForgedType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'chardev' | 'fifo';

export interface ForgedEntry {
  path: string;
  type?: ForgedType;
  linkpath?: string;
  /** File content, or a size of zeros streamed without being held in memory. */
  content?: string | Buffer | { zeros: number };
  mode?: number;
}

const TYPEFLAG: Record<ForgedType, string> = { file: '0', hardlink: '1', symlink: '2', chardev: '3', dir: '5', fifo: '6' };

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function tarHeader(entry: ForgedEntry, size: number): Buffer {
  const h = Buffer.alloc(512, 0);
  const name = Buffer.from(entry.path);
  if (name.length > 100) throw new Error(`forged path too long: ${entry.path}`);
  name.copy(h, 0);
  h.write(octal(entry.mode ?? (entry.type === 'dir' ? 0o755 : 0o644), 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(Math.floor(Date.now() / 1000), 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write(TYPEFLAG[entry.type ?? 'file'], 156, 'ascii');
  if (entry.linkpath) Buffer.from(entry.linkpath).copy(h, 157);
  h.write('ustar\x0000', 257, 'binary');
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

async function* tarBlocks(entries: ForgedEntry[]): AsyncGenerator<Buffer> {
  for (const entry of entries) {
    const c = entry.content;
    const size = c === undefined ? 0 : typeof c === 'string' ? Buffer.byteLength(c) : Buffer.isBuffer(c) ? c.length : c.zeros;
    yield tarHeader(entry, entry.type === undefined || entry.type === 'file' ? size : 0);
    if (entry.type !== undefined && entry.type !== 'file') continue;
    if (c !== undefined && typeof c === 'object' && !Buffer.isBuffer(c)) {
      const chunk = Buffer.alloc(1 << 20);
      for (let left = c.zeros; left > 0; left -= chunk.length) yield left >= chunk.length ? chunk : chunk.subarray(0, left);
    } else if (c !== undefined) {
      yield Buffer.from(c);
    }
    if (size % 512 !== 0) yield Buffer.alloc(512 - (size % 512));
  }
  yield Buffer.alloc(1024);
}

/** Writes the entries as a .tar.gz file. */
export async function forgeTarGz(path: string, entries: ForgedEntry[] | (() => Iterable<ForgedEntry>)): Promise<void> {
  const list = typeof entries === 'function' ? [...entries()] : entries;
  await pipeline(Readable.from(tarBlocks(list)), createGzip({ level: 1 }), createWriteStream(path));
}

/** The same, in memory (small archives: request bodies). */
export async function forgeTarGzBuffer(entries: ForgedEntry[]): Promise<Buffer> {
  const gzip = createGzip({ level: 1 });
  const done = Readable.from(tarBlocks(entries)).pipe(gzip).toArray();
  return Buffer.concat((await done) as Buffer[]);
}
