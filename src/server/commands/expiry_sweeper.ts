import type { KvCommand } from '../../kv/command_codec';
import type { KvStateMachine } from '../../kv/state_machine';
import { LIMITS } from '../../util/limits';

const IN_FLIGHT_MS = 5_000;

/**
 * The leader's expiry: each tick it looks at up to `expire_sweep_keys_max` keys with a
 * deadline, resuming where the last tick stopped (a Map iterator survives deletions and sees
 * later insertions), and proposes one EXPIRE entry for those past their deadline. The entry is
 * applied like any other, so every replica deletes the same keys at the same log index.
 */
export class ExpirySweeper {
  private cursor: Iterator<[string, number]> | null = null;
  private cursor_state: KvStateMachine | null = null;
  /**
   * One EXPIRE entry in flight at a time (so keys are not proposed twice); a proposal whose
   * outcome never arrives (leadership lost) is given up after IN_FLIGHT_MS.
   */
  private in_flight_since_ms: number | null = null;

  /** Called when the last proposed entry was applied or dropped. */
  settled(): void {
    this.in_flight_since_ms = null;
  }

  next(state: KvStateMachine, stamp_ms: number): KvCommand | null {
    if (state.expiring_key_count === 0) return null;
    if (this.in_flight_since_ms !== null && stamp_ms - this.in_flight_since_ms < IN_FLIGHT_MS)
      return null;
    if (this.cursor === null || this.cursor_state !== state) {
      this.cursor = state.expiringKeys();
      this.cursor_state = state;
    }
    const keys: Buffer[] = [];
    for (let examined = 0; examined < LIMITS.expire_sweep_keys_max; examined++) {
      const step = this.cursor.next();
      if (step.done === true) {
        this.cursor = null;
        break;
      }
      const [key, deadline] = step.value;
      if (deadline <= stamp_ms) keys.push(Buffer.from(key, 'latin1'));
    }
    if (keys.length === 0) return null;
    this.in_flight_since_ms = stamp_ms;
    return { op: 'expire', stamp_ms, keys };
  }
}
