import type { NodeId, RestoredState } from '../raft/types';
import { LIMITS } from '../util/limits';

export interface TermRecovery {
  restored: RestoredState;
  /** What happened, for one log line; null when the recovered term was in range. */
  note: string | null;
}

/**
 * A term above raft_term_max on disk can only come from a forged frame accepted by a build that
 * did not check terms (a real cluster needs two billion elections to get there). At that term the
 * node could never campaign again and every peer refuses its frames, so it would stay cut off for
 * good. It resumes instead at the term of its last log entry, the last term it verifiably followed
 * a real leader in, with its vote in that term spent on itself, so it grants no vote in that term.
 * Residual risk, accepted for a one-time repair: a vote it gave in a term above that one before it
 * was poisoned is forgotten. If the log itself holds such a term, nothing is changed: the node
 * starts, refuses to campaign (see RaftCore.campaign) and needs its data directory wiped.
 */
export function recoverPoisonedTerm(restored: RestoredState, self_id: NodeId): TermRecovery {
  const { term } = restored.hard_state;
  if (term <= LIMITS.raft_term_max) return { restored, note: null };
  const last_log_term = restored.entries.at(-1)?.term ?? 0;
  if (last_log_term > LIMITS.raft_term_max) {
    return {
      restored,
      note:
        `recovered term ${term} and last log term ${last_log_term} exceed raft_term_max ` +
        `${LIMITS.raft_term_max}: this node will not campaign; wipe its data directory to rejoin`,
    };
  }
  return {
    restored: {
      hard_state: { ...restored.hard_state, term: last_log_term, vote: self_id },
      entries: restored.entries,
    },
    note:
      `recovered term ${term} exceeds raft_term_max ${LIMITS.raft_term_max} (a forged frame ` +
      `accepted by an older build): resuming at term ${last_log_term}, the last log entry's term`,
  };
}
