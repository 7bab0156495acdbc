/**
 * sha256 on a worker thread. Hashing on the event loop that also receives a body and writes it
 * to disk cost the storage service about a quarter of its upload rate (bench/storage-throughput:
 * 0.66× of a raw-disk server hashing, 0.88× not hashing); on its own thread it overlaps the
 * receiving and the writing. One worker serves every upload of a BlobStore: its messages are
 * handled in order, so each upload's chunks are hashed in the order they arrived.
 */
import { Worker } from 'node:worker_threads';

// eval'd CommonJS: no worker file to locate next to the compiled or bundled code
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', ({ id, op, bytes, length }) => {
  if (op === 'update') {
    let hash = hashes.get(id);
    if (!hash) hashes.set(id, (hash = createHash('sha256')));
    hash.update(new Uint8Array(bytes, 0, length));
    // the buffer goes back to be filled again: no garbage for this isolate to collect late
    parentPort.postMessage({ id, op: 'hashed', bytes, length }, [bytes]);
  } else if (op === 'digest') {
    const hash = hashes.get(id) ?? createHash('sha256');
    hashes.delete(id);
    parentPort.postMessage({ id, op: 'digest', hex: hash.digest('hex') });
  } else if (op === 'drop') {
    hashes.delete(id);
  }
});
`;

/** Bytes sent to the worker and not yet hashed, per upload, before the upload waits. */
const MAX_IN_FLIGHT_BYTES = 8 << 20;
/** Chunks are copied into buffers of this size, which go to the worker and come back. */
const BATCH_BYTES = 1 << 20;
/** Returned buffers kept for reuse; more are left to the garbage collector. */
const MAX_FREE_BUFFERS = 16;

type WorkerReply = { id: number; op: 'hashed'; bytes: ArrayBuffer; length: number } | { id: number; op: 'digest'; hex: string };
type WorkerRequest = { id: number; op: 'update'; bytes: ArrayBuffer; length: number } | { id: number; op: 'digest' | 'drop' };

/** What the worker's replies update for one session. */
interface SessionState {
  inFlight: number;
  failure: Error | null;
  wake: Array<() => void>;
  digest?: { resolve: (hex: string) => void; reject: (err: Error) => void };
}

export class OffThreadHasher {
  #worker: Worker | null = null;
  #nextId = 1;
  readonly #sessions = new Map<number, SessionState>();
  readonly #free: ArrayBuffer[] = [];

  /** One incremental sha256. Call `digest()` or `drop()` once when done with it. */
  session(): HashSession {
    const id = this.#nextId++;
    const state: SessionState = { inFlight: 0, failure: null, wake: [] };
    this.#sessions.set(id, state);
    return new HashSession(id, state, {
      send: (message) => this.#send(message),
      buffer: () => this.#free.pop() ?? new ArrayBuffer(BATCH_BYTES),
      forget: () => this.#sessions.delete(id),
    });
  }

  /** Stops the worker; a later session starts a new one. */
  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = null;
    await worker?.terminate();
  }

  #send(message: WorkerRequest): void {
    const transfer = message.op === 'update' ? [message.bytes] : [];
    this.#workerInstance().postMessage(message, transfer);
  }

  #workerInstance(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref(); // an idle hasher must not keep the process alive
    worker.on('message', (reply: WorkerReply) => {
      if (reply.op === 'hashed' && this.#free.length < MAX_FREE_BUFFERS) this.#free.push(reply.bytes);
      const state = this.#sessions.get(reply.id);
      if (!state) return;
      if (reply.op === 'hashed') {
        state.inFlight -= reply.length;
        for (const wake of state.wake.splice(0)) wake();
      } else state.digest?.resolve(reply.hex);
    });
    const failAll = (err: Error) => {
      if (this.#worker === worker) this.#worker = null;
      for (const state of this.#sessions.values()) {
        state.failure = err;
        for (const wake of state.wake.splice(0)) wake();
        state.digest?.reject(err);
      }
      this.#sessions.clear();
    };
    worker.on('error', failAll);
    worker.on('exit', (code) => failAll(new Error(`the hashing worker exited with code ${code}`)));
    this.#worker = worker;
    return worker;
  }
}

interface SessionPort {
  send(message: WorkerRequest): void;
  buffer(): ArrayBuffer;
  forget(): void;
}

export class HashSession {
  readonly #id: number;
  readonly #state: SessionState;
  readonly #port: SessionPort;
  #current: Uint8Array | null = null;
  #filled = 0;
  #ended = false;

  constructor(id: number, state: SessionState, port: SessionPort) {
    this.#id = id;
    this.#state = state;
    this.#port = port;
  }

  /** Adds bytes. Returns a promise only when too many wait to be hashed: await it (backpressure). */
  update(chunk: Uint8Array): Promise<void> | undefined {
    if (this.#state.failure) return Promise.reject(this.#state.failure);
    // a copy into our own buffer, to transfer: the chunk's memory may be shared with other buffers
    for (let offset = 0; offset < chunk.length; ) {
      this.#current ??= new Uint8Array(this.#port.buffer());
      const n = Math.min(chunk.length - offset, this.#current.length - this.#filled);
      this.#current.set(chunk.subarray(offset, offset + n), this.#filled);
      this.#filled += n;
      offset += n;
      if (this.#filled === this.#current.length) this.#sendCurrent();
    }
    return this.#state.inFlight > MAX_IN_FLIGHT_BYTES ? this.#caughtUp() : undefined;
  }

  /** The hex sha256 of everything added. */
  async digest(): Promise<string> {
    this.#ended = true;
    try {
      if (this.#state.failure) throw this.#state.failure;
      const hex = new Promise<string>((resolve, reject) => (this.#state.digest = { resolve, reject }));
      this.#sendCurrent();
      this.#port.send({ id: this.#id, op: 'digest' });
      return await hex;
    } finally {
      this.#port.forget();
    }
  }

  /** Forgets the upload (it failed or was refused). */
  drop(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#port.forget();
    if (!this.#state.failure) this.#port.send({ id: this.#id, op: 'drop' });
  }

  async #caughtUp(): Promise<void> {
    while (this.#state.inFlight > MAX_IN_FLIGHT_BYTES && !this.#state.failure) {
      await new Promise<void>((resolve) => this.#state.wake.push(resolve));
    }
    if (this.#state.failure) throw this.#state.failure;
  }

  #sendCurrent(): void {
    if (!this.#current || this.#filled === 0) return;
    const length = this.#filled;
    const bytes = this.#current.buffer as ArrayBuffer;
    this.#current = null;
    this.#filled = 0;
    this.#state.inFlight += length;
    this.#port.send({ id: this.#id, op: 'update', bytes, length });
  }
}
