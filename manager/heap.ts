/**
 * A binary heap that knows where each item sits, so that any item, not only the top, can be
 * removed in O(log n). Admission needs that: a job leaves its site's queue when it is cancelled,
 * deleted or updated, and a site's head leaves the list of candidates when the site gets busy.
 * The npm heaps (`@datastructures-js/priority-queue`, `heap-js`) remove an arbitrary item by a
 * linear scan (O(n log n) and O(n)), which is the cost this replaces, so this is hand-written.
 *
 * Items are objects held by identity (each at most once); an item's ordering fields must not
 * change while it is in the heap (remove it, change it, push it again).
 */
export class IndexedHeap<T extends object> {
  readonly #items: T[] = [];
  readonly #at = new Map<T, number>();
  readonly #before: (a: T, b: T) => boolean;

  /** `before(a, b)`: a comes out first. Must be a strict weak order. */
  constructor(before: (a: T, b: T) => boolean) {
    this.#before = before;
  }

  get size(): number {
    return this.#items.length;
  }

  /** The first item, O(1). */
  peek(): T | undefined {
    return this.#items[0];
  }

  has(item: T): boolean {
    return this.#at.has(item);
  }

  /** O(log n). An item already in the heap is left where it is. */
  push(item: T): void {
    if (this.#at.has(item)) return;
    this.#items.push(item);
    this.#at.set(item, this.#items.length - 1);
    this.#up(this.#items.length - 1);
  }

  /** Removes and returns the first item, O(log n). */
  pop(): T | undefined {
    const top = this.#items[0];
    if (top !== undefined) this.remove(top);
    return top;
  }

  /** O(log n); false if the item is not in the heap. */
  remove(item: T): boolean {
    const i = this.#at.get(item);
    if (i === undefined) return false;
    this.#at.delete(item);
    const last = this.#items.pop()!;
    if (i < this.#items.length) {
      // the last item fills the hole and moves whichever way the order needs
      this.#set(i, last);
      this.#up(i);
      this.#down(this.#at.get(last)!);
    }
    return true;
  }

  /** Every item, in no particular order, O(n). */
  values(): T[] {
    return [...this.#items];
  }

  #set(i: number, item: T): void {
    this.#items[i] = item;
    this.#at.set(item, i);
  }

  #up(i: number): void {
    const item = this.#items[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = this.#items[parent]!;
      if (!this.#before(item, p)) break;
      this.#set(i, p);
      i = parent;
    }
    this.#set(i, item);
  }

  #down(i: number): void {
    const n = this.#items.length;
    const item = this.#items[i]!;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && this.#before(this.#items[right]!, this.#items[left]!) ? right : left;
      const c = this.#items[child]!;
      if (!this.#before(c, item)) break;
      this.#set(i, c);
      i = child;
    }
    this.#set(i, item);
  }
}
