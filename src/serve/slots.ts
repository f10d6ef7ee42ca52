// The receivers serve lets run at once, over all its queues (max_parallel). A queue asks for a
// slot before each run of a receiver and gives it back when the run is over. Slots go to the
// waiting queues in the order they asked: a queue runs one job at a time and asks again only
// after giving its slot back, so it goes behind every queue already waiting, and no queue
// waits while another gets two turns (spec/serve.md, "Scheduling").

export class Slots {
  private used = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private limit: number) {}

  /** Slots taken now. */
  get inUse(): number {
    return this.used;
  }

  /** A new limit (a reload): more slots are handed out at once; fewer, as runs end. */
  resize(limit: number): void {
    this.limit = limit;
    this.grant();
  }

  /**
   * Wait for a slot; resolves to the function that gives it back (once). `signal` aborts the
   * wait: the promise rejects and no slot is taken.
   */
  acquire(signal: AbortSignal): Promise<() => void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const take = () => {
        signal.removeEventListener('abort', giveUp);
        this.used++;
        let given = false;
        resolve(() => {
          if (given) return;
          given = true;
          this.used--;
          this.grant();
        });
      };
      const giveUp = () => {
        const i = this.waiting.indexOf(take);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', giveUp, { once: true });
      this.waiting.push(take);
      this.grant();
    });
  }

  private grant(): void {
    while (this.used < this.limit && this.waiting.length > 0) this.waiting.shift()!();
  }
}
