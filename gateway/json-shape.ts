/**
 * The shape of a JSON body, read from its bytes before JSON.parse builds it: how deep it nests
 * and how many nodes (objects, arrays and the members between their commas) it holds. Pure.
 *
 * Why before parsing: what a parsed body costs in memory depends on its shape, not its size. A
 * body of `[[],[],[],...]` spends 3 bytes per array on the wire and some 50 bytes per array in
 * V8, an object of a million short keys some 60 bytes per key, so 15 MiB of either became
 * several hundred MiB in the gateway (measured: test/integration/gateway-hostile.test.ts); and a
 * body nested 100,000 deep makes every recursive walk (validation, JSON.stringify) throw
 * RangeError. Both are refused on this count, whose cost is one native search per string plus
 * a byte loop over what lies between strings (little, in a Responses request: nearly all of its
 * bytes are inside strings, and a codex conversation of 1 MiB has some 10,000 nodes).
 * Malformed JSON is not judged here: JSON.parse does that next.
 */

export interface JsonShape {
  depth: number;
  /** Objects and arrays, and one per comma between members. */
  nodes: number;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const OPEN_ARRAY = 0x5b;
const CLOSE_OBJECT = 0x7d;
const CLOSE_ARRAY = 0x5d;
const COMMA = 0x2c;

/** Depth and node count; stops early (returning what it saw so far) once either passes its limit. */
export function jsonShape(body: Buffer, limits: { depth: number; nodes: number }): JsonShape {
  let depth = 0;
  let maxDepth = 0;
  let nodes = 0;
  let i = 0;
  while (i < body.length) {
    const quote = body.indexOf(QUOTE, i);
    const end = quote === -1 ? body.length : quote;
    for (; i < end; i++) {
      const c = body[i];
      if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
        nodes++;
        if (++depth > maxDepth) maxDepth = depth;
        if (maxDepth > limits.depth || nodes > limits.nodes) return { depth: maxDepth, nodes };
      } else if (c === COMMA) {
        if (++nodes > limits.nodes) return { depth: maxDepth, nodes };
      } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
        depth--;
      }
    }
    if (quote === -1) break;
    i = stringEnd(body, quote + 1);
  }
  return { depth: maxDepth, nodes };
}

/** The index after the quote that closes the string starting at `from` (a quote preceded by an odd run of backslashes is escaped). */
function stringEnd(body: Buffer, from: number): number {
  let at = from;
  for (;;) {
    const quote = body.indexOf(QUOTE, at);
    if (quote === -1) return body.length;
    let backslashes = 0;
    for (let j = quote - 1; j >= from && body[j] === BACKSLASH; j--) backslashes++;
    if (backslashes % 2 === 0) return quote + 1;
    at = quote + 1;
  }
}
