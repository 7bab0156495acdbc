/**
 * Which file of a tree a request path names, before anything touches the disk: the path after
 * the preview's mount (`/a/b.html`), percent-encoded as it arrived. Refused (null, answered
 * 404): anything that does not decode, a NUL, a backslash (a separator to Windows and to the
 * archive rules), an encoded slash (a segment containing "/" has two readings), and `.` or
 * `..` segments, raw or encoded. What passes is a plain downward path, which `send` then
 * decodes the same way (one decodeURIComponent) and serves from inside the tree's root; `send`
 * refuses `..` again and ignores dotfiles, and the tree itself holds no link that leaves it
 * (preview/artifact-cache.ts), so each of the three layers alone keeps a request in the tree.
 */

/** The decoded path (leading "/"), or null when the request path is not a plain path inside the tree. */
export function treePath(rawPath: string): string | null {
  if (!rawPath.startsWith('/')) return null;
  // nothing encoded, no backslash, no segment starting with a dot: already a plain path (the common case)
  if (!rawPath.includes('%') && !rawPath.includes('\\') && !rawPath.includes('/.')) return rawPath;
  if (/%2f|%5c/i.test(rawPath) || rawPath.includes('\\')) return null;
  let decoded: string;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  const segments = decoded.split('/').slice(1);
  if (segments.some((s) => s === '.' || s === '..')) return null;
  return decoded;
}
