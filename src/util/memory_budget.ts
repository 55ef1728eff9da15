import { assert } from './assert';

/**
 * A process-wide byte count shared by many connections (one named limit from limits.ts). Users
 * charge what they hold and release exactly that; the budget only counts, each user decides
 * whether to pause, refuse or close when `fits` says no.
 */
export class MemoryBudget {
  private used = 0;

  constructor(
    readonly name: string,
    readonly bytes_max: number,
  ) {
    assert(Number.isSafeInteger(bytes_max) && bytes_max > 0, `${name} must be positive`);
  }

  get used_bytes(): number {
    return this.used;
  }

  get exceeded(): boolean {
    return this.used > this.bytes_max;
  }

  /** Whether `bytes` more would stay within the budget. */
  fits(bytes: number): boolean {
    return this.used + bytes <= this.bytes_max;
  }

  charge(bytes: number): void {
    assert(Number.isSafeInteger(bytes) && bytes >= 0, `${this.name}: charge ${bytes}`);
    this.used += bytes;
  }

  release(bytes: number): void {
    assert(
      Number.isSafeInteger(bytes) && bytes >= 0 && bytes <= this.used,
      `${this.name}: release ${bytes} of ${this.used}`,
    );
    this.used -= bytes;
  }
}
