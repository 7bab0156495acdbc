/**
 * Reads the token usage out of a model response while it streams through, without holding it
 * back: the Responses API ends a stream with `response.completed` (or `.incomplete`/`.failed`)
 * whose `response.usage` has input_tokens and output_tokens; a non-streamed answer carries
 * `usage` at the top. It reads the chunks beside the pipe that carries them (no stream stage of
 * its own); only lines that can hold usage are parsed, and a chunk without the key costs two
 * native searches (bench/gateway.ts measures the gateway on a long stream).
 */

export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
}

const MAX_JSON_BYTES = 8 * 1024 * 1024;

const KEY = Buffer.from('"usage"');
const NEWLINE = 0x0a;

export class UsageTap {
  #usage: TokenUsage | null = null;
  /** The current, unfinished line: the pieces since the last newline (not copied). */
  #line: Buffer[] = [];
  #lineBytes = 0;
  /** The unfinished line already holds the key: it is read once it ends. */
  #lineHasKey = false;
  #json: Buffer[] | null;
  #jsonBytes = 0;

  /** `streamed`: server-sent events; else one JSON document (kept, up to a bound, to read it at the end). */
  constructor(readonly streamed: boolean) {
    this.#json = streamed ? null : [];
  }

  get usage(): TokenUsage | null {
    return this.#usage;
  }

  /** Sees a chunk of the answer on its way through (it is not held, only read). */
  write(chunk: Buffer): void {
    if (this.#json) {
      this.#jsonBytes += chunk.length;
      if (this.#jsonBytes <= MAX_JSON_BYTES) this.#json.push(chunk);
    } else {
      this.#scan(chunk);
    }
  }

  /** The answer is complete. */
  end(): void {
    if (this.#json && this.#jsonBytes <= MAX_JSON_BYTES) {
      this.#read(Buffer.concat(this.#json).toString('utf8'), (doc) => (doc as { usage?: unknown }).usage);
    } else if (this.#lineBytes > 0) {
      this.#line_(Buffer.concat(this.#line));
    }
  }

  /**
   * The fast path, taken for all but the last few chunks of an answer: the chunk holds no
   * `"usage"` (nor does the seam with the previous one), so only the unfinished line is kept.
   */
  #scan(chunk: Buffer): void {
    const last = this.#line.at(-1);
    const seam = last ? Buffer.concat([last.subarray(-KEY.length), chunk.subarray(0, KEY.length)]) : null;
    if (!this.#lineHasKey && !chunk.includes(KEY) && !seam?.includes(KEY)) {
      const nl = chunk.lastIndexOf(NEWLINE);
      if (nl === -1) this.#keep(chunk);
      else {
        this.#line = [];
        this.#lineBytes = 0;
        this.#keep(chunk.subarray(nl + 1));
      }
      return;
    }
    // a line with usage ends in (or after) this chunk: read every line it completes
    const text = Buffer.concat([...this.#line, chunk]);
    this.#line = [];
    this.#lineBytes = 0;
    let start = 0;
    for (let nl = text.indexOf(NEWLINE); nl !== -1; nl = text.indexOf(NEWLINE, start)) {
      const line = text.subarray(start, nl);
      if (line.includes(KEY)) this.#line_(line);
      start = nl + 1;
    }
    const rest = text.subarray(start);
    this.#lineHasKey = rest.includes(KEY);
    this.#keep(rest);
  }

  #keep(piece: Buffer): void {
    if (piece.length === 0) return;
    // a line longer than any usage event can be is no usage event: stop holding it
    if (this.#lineBytes + piece.length > MAX_JSON_BYTES) return;
    this.#line.push(piece);
    this.#lineBytes += piece.length;
  }

  #line_(raw: Buffer): void {
    const line = raw.toString('utf8');
    if (!line.startsWith('data:')) return;
    this.#read(line.slice(5).trim(), (event) => {
      const e = event as { type?: string; response?: { usage?: unknown } };
      return typeof e.type === 'string' && e.type.startsWith('response.') ? e.response?.usage : undefined;
    });
  }

  #read(json: string, pick: (doc: unknown) => unknown): void {
    try {
      const usage = pick(JSON.parse(json)) as { input_tokens?: unknown; output_tokens?: unknown } | undefined;
      if (usage && typeof usage.input_tokens === 'number' && typeof usage.output_tokens === 'number') {
        this.#usage = { inputTokens: usage.input_tokens, outputTokens: usage.output_tokens };
      }
    } catch {
      // not JSON: not a usage report
    }
  }
}
