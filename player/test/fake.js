// A manual clock with setTimeout/setInterval, so timing is tested without waiting.
export class FakeTimers {
  constructor(start = 1_700_000_000_000) {
    this.t = start;
    this.nextId = 1;
    this.pending = new Map(); // id -> {at, fn, every}
  }
  now = () => this.t;
  setTimeout = (fn, ms) => this.add(fn, ms, 0);
  setInterval = (fn, ms) => this.add(fn, ms, ms);
  clearTimeout = (id) => this.pending.delete(id);
  clearInterval = (id) => this.pending.delete(id);
  add(fn, ms, every) {
    const id = this.nextId++;
    this.pending.set(id, { at: this.t + ms, fn, every });
    return id;
  }
  /** Advance the clock, firing every timer that falls due, in order. */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let next = null;
      for (const [id, p] of this.pending) if (p.at <= end && (!next || p.at < next[1].at)) next = [id, p];
      if (!next) break;
      const [id, p] = next;
      this.t = p.at;
      if (p.every) p.at += p.every;
      else this.pending.delete(id);
      p.fn();
    }
    this.t = end;
  }
}
