/**
 * What a reconcile returns, as controller-runtime's reconcile.Result: done, or look again after
 * a while. The worker loop owns the queue and acts on it; a thrown error is retried with the
 * queue's rate limit.
 */
export interface ReconcileResult {
  requeueAfterMs?: number;
}

export const DONE: ReconcileResult = Object.freeze({});

export function requeueAfter(ms: number): ReconcileResult {
  return { requeueAfterMs: Math.max(1, Math.round(ms)) };
}
