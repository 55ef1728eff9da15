/**
 * Work units allowed in one event-loop turn, shared by whoever draws on it. Past the bound, a
 * caller registers a resume callback and stops; the budget refills in the next turn (setImmediate:
 * after this turn's I/O, with timers run before the one after), and the waiters resume in order.
 */
export class TurnBudget {
  private used = 0;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly units_per_turn_max: number) {}

  /** Counts `units`; false once the turn's bound is reached, and then `resume` runs next turn. */
  take(units: number, resume: () => void): boolean {
    if (this.used === 0) setImmediate(() => this.refill());
    this.used += units;
    if (this.used < this.units_per_turn_max) return true;
    this.waiters.add(resume);
    return false;
  }

  private refill(): void {
    this.used = 0;
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const resume of waiting) resume();
  }
}
