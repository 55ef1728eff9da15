/**
 * Linearizability checker for key-value histories, after Porcupine
 * (Athalye, anishathalye/porcupine): split the history by key (keys are
 * independent registers, so a history is linearizable iff every per-key
 * sub-history is), then search depth-first for an order of linearization
 * points that respects real time and the sequential model, memoising every
 * (set of linearized operations, model state) already explored.
 *
 * Real-time order is decided conservatively: A is only required to precede B
 * when A's return is strictly earlier than B's call. At equal times the call
 * is sorted before the return, so touching intervals count as concurrent and
 * the checker never invents an ordering the clients did not observe.
 *
 * An operation whose outcome is unknown (timeout, dropped connection) may take
 * effect at any moment after its call or never: its return time is taken as
 * +infinity and any output is accepted. Certainly-failed operations must not
 * be in the history at all.
 */
import { assert } from '../../src/util/assert';

export type KvInput =
  | { kind: 'get'; key: string }
  | { kind: 'set'; key: string; value: string }
  | { kind: 'del'; key: string };

export type KvOutput =
  | { kind: 'get'; value: string | null }
  | { kind: 'set' }
  | { kind: 'del'; count: number }
  | { kind: 'unknown' };

export interface HistoryOperation {
  client_id: number;
  input: KvInput;
  output: KvOutput;
  call_time: number;
  /** Infinity when output is unknown. */
  return_time: number;
}

export interface CheckResult {
  /** True only when every key was proven linearizable. */
  ok: boolean;
  /** When not ok: the key whose sub-history is not linearizable and a short human-readable explanation (the longest linearizable prefix found, the operations involved). */
  failure?: { key: string; explanation: string };
  /** True when the search gave up (budget exceeded) — neither proven ok nor bad. */
  timed_out: boolean;
}

export interface CheckOptions {
  /**
   * Search steps allowed for the whole history, shared by all keys. Keys are
   * checked smallest first, so one pathological key cannot keep the cheap
   * ones from being decided before the budget runs out.
   */
  step_budget?: number;
}

const STEP_BUDGET_DEFAULT = 5_000_000;
/** Operations listed per section of a failure explanation, to keep it readable. */
const EXPLANATION_OPERATIONS_MAX = 8;
/** Characters of a value shown in a formatted operation before it is elided. */
const FORMATTED_VALUE_CHARS_MAX = 40;

export function checkLinearizable(history: readonly HistoryOperation[], options: CheckOptions = {}): CheckResult {
  const step_budget = options.step_budget ?? STEP_BUDGET_DEFAULT;
  assert(Number.isSafeInteger(step_budget) && step_budget >= 0, `step_budget must be a non-negative integer, got ${step_budget}`);
  history.forEach(validateOperation);

  const partitions = [...partitionByKey(history)].sort(
    ([key_a, ops_a], [key_b, ops_b]) => ops_a.length - ops_b.length || (key_a < key_b ? -1 : key_a > key_b ? 1 : 0),
  );
  let steps_left = step_budget;
  for (const [key, operations] of partitions) {
    const compiled = compileKeyHistory(operations);
    const outcome = searchLinearization(compiled, steps_left);
    steps_left -= outcome.steps_used;
    if (outcome.kind === 'illegal') {
      return { ok: false, timed_out: false, failure: { key, explanation: explainFailure(key, compiled, outcome.dead_end) } };
    }
    if (outcome.kind === 'gave_up') return { ok: false, timed_out: true };
  }
  return { ok: true, timed_out: false };
}

export function formatOperation(op: HistoryOperation): string {
  const key = quote(op.input.key);
  let call: string;
  switch (op.input.kind) {
    case 'get':
      call = `get(${key})`;
      break;
    case 'set':
      call = `set(${key}, ${quote(op.input.value)})`;
      break;
    case 'del':
      call = `del(${key})`;
      break;
  }
  let result: string;
  switch (op.output.kind) {
    case 'get':
      result = op.output.value === null ? 'nil' : quote(op.output.value);
      break;
    case 'set':
      result = 'ok';
      break;
    case 'del':
      result = String(op.output.count);
      break;
    case 'unknown':
      result = '? (unknown outcome)';
      break;
  }
  const interval = op.output.kind === 'unknown' || op.return_time === Infinity ? `[${op.call_time}, ∞)` : `[${op.call_time}, ${op.return_time}]`;
  return `client ${op.client_id} ${call} -> ${result} ${interval}`;
}

function quote(text: string): string {
  const shown = text.length > FORMATTED_VALUE_CHARS_MAX ? `${text.slice(0, FORMATTED_VALUE_CHARS_MAX - 1)}…` : text;
  return JSON.stringify(shown);
}

function validateOperation(op: HistoryOperation, index: number): void {
  const where = `history[${index}] (${op.input.kind} ${JSON.stringify(op.input.key)})`;
  assert(Number.isFinite(op.call_time), `${where}: call_time must be finite, got ${op.call_time}`);
  assert(op.output.kind === 'unknown' || op.output.kind === op.input.kind, `${where}: output kind ${op.output.kind} does not answer input kind ${op.input.kind}`);
  if (op.output.kind !== 'unknown') {
    assert(!Number.isNaN(op.return_time) && op.return_time >= op.call_time, `${where}: return_time ${op.return_time} precedes call_time ${op.call_time}`);
  }
}

function partitionByKey(history: readonly HistoryOperation[]): Map<string, HistoryOperation[]> {
  const partitions = new Map<string, HistoryOperation[]>();
  for (const op of history) {
    const existing = partitions.get(op.input.key);
    if (existing === undefined) partitions.set(op.input.key, [op]);
    else existing.push(op);
  }
  return partitions;
}

// ---------------------------------------------------------------------------
// Unknown outcomes.
//
// Taken literally, an unknown-outcome operation stays pending to the end of
// the history and the search may linearize it at every point, so a failing
// history with a few dozen timeouts needs exponentially many steps to refute.
// Its effect can only matter to an operation that observes it directly
// (nothing else in between in the linearization):
// - a SET of v is observed by a GET returning v, or by a DEL returning 1;
// - a DEL is observed by a GET returning nil, or by a DEL returning 0.
// Every other placement is overwritten before anyone looks, so it is the same
// as the operation never taking effect. Hence, without changing the verdict:
// - an unknown GET is dropped (no effect, any output);
// - an operation with no possible observer (none returning at or after its
//   call) is dropped: it can always go last;
// - otherwise it is optional: it either takes effect and the very next
//   operation linearized observes it and could not have returned what it did
//   without it (else the effect changed nothing), or it is skipped. Either
//   way it is settled by the latest return among its observers (its deadline);
// - an unknown SET of a value that no other SET writes, and that some GET
//   returned, certainly took effect: it is required, and settled by the
//   earliest return among those GETs.

interface PlannedOperation {
  op: HistoryOperation;
  /** Where its return sits in real time: the return time, or for an unknown outcome its deadline. */
  deadline: number;
  /** An unknown outcome that the search may skip (treat as never having taken effect). */
  optional: boolean;
}

function planKeyOperations(operations: readonly HistoryOperation[]): PlannedOperation[] {
  const writers_of_value = new Map<string, number>();
  const readers_of_value = new Map<string, { return_min: number; return_max: number }>();
  let nil_read_return_max = -Infinity; // GETs returning nil
  let deleted_existing_return_max = -Infinity; // DELs returning 1
  let deleted_missing_return_max = -Infinity; // DELs returning 0
  for (const op of operations) {
    if (op.input.kind === 'set') writers_of_value.set(op.input.value, (writers_of_value.get(op.input.value) ?? 0) + 1);
    if (op.output.kind === 'get') {
      if (op.output.value === null) {
        nil_read_return_max = Math.max(nil_read_return_max, op.return_time);
      } else {
        const readers = readers_of_value.get(op.output.value);
        if (readers === undefined) readers_of_value.set(op.output.value, { return_min: op.return_time, return_max: op.return_time });
        else {
          readers.return_min = Math.min(readers.return_min, op.return_time);
          readers.return_max = Math.max(readers.return_max, op.return_time);
        }
      }
    }
    if (op.output.kind === 'del' && op.output.count === 1) deleted_existing_return_max = Math.max(deleted_existing_return_max, op.return_time);
    if (op.output.kind === 'del' && op.output.count === 0) deleted_missing_return_max = Math.max(deleted_missing_return_max, op.return_time);
  }

  const planned: PlannedOperation[] = [];
  for (const op of operations) {
    if (op.output.kind !== 'unknown') {
      planned.push({ op, deadline: op.return_time, optional: false });
      continue;
    }
    let observed_until: number;
    if (op.input.kind === 'get') {
      continue;
    } else if (op.input.kind === 'set') {
      const readers = readers_of_value.get(op.input.value);
      if (readers !== undefined && writers_of_value.get(op.input.value) === 1) {
        planned.push({ op, deadline: Math.max(op.call_time, readers.return_min), optional: false });
        continue;
      }
      observed_until = Math.max(readers?.return_max ?? -Infinity, deleted_existing_return_max);
    } else {
      observed_until = Math.max(nil_read_return_max, deleted_missing_return_max);
    }
    if (observed_until >= op.call_time) planned.push({ op, deadline: observed_until, optional: true });
  }
  return planned;
}

// ---------------------------------------------------------------------------
// The per-key model, compiled to integers: a state is a value id. Values that
// no GET ever returned are indistinguishable to every operation (only a DEL
// can tell them from "missing"), so they all share one state, which merges
// otherwise separate memo entries.

const STATE_MISSING = 0;
const STATE_UNREAD_VALUE = 1;
/** Returned by the step function when the output contradicts the state. */
const STATE_REJECTED = -1;

const STEP_GET = 0; // argument: the value id the output claims
const STEP_SET = 1; // argument: the value id written
const STEP_DEL = 2; // argument: the count the output claims
const STEP_DEL_UNKNOWN = 3; // argument unused: any count is accepted

function stepModel(step_kind: number, argument: number, state: number): number {
  switch (step_kind) {
    case STEP_GET:
      return state === argument ? state : STATE_REJECTED;
    case STEP_SET:
      return argument;
    case STEP_DEL:
      return (state === STATE_MISSING ? 0 : 1) === argument ? STATE_MISSING : STATE_REJECTED;
    default:
      return STATE_MISSING;
  }
}

/** GETs and DELs with a known count look at the state; the rest only overwrite it. */
function observesState(step_kind: number): boolean {
  return step_kind === STEP_GET || step_kind === STEP_DEL;
}

/** Marks "no optional operation awaits its witness" (see searchLinearization). */
const NO_WITNESS_NEEDED = -1;

/**
 * One key's sub-history as flat arrays. Operations are numbered in the order
 * of their returns, so that the linearized set is always "every operation
 * below some id, plus a few concurrent ones" — which keeps memo keys short.
 */
interface CompiledKeyHistory {
  /** By operation id. */
  operations: HistoryOperation[];
  step_kind: Uint8Array;
  step_argument: Int32Array;
  /** 1 for an unknown outcome the search may skip. */
  optional: Uint8Array;
  /** Position of the operation among the optional ones, or among the others (both in id order). */
  rank: Int32Array;
  optional_count: number;
  /**
   * Optional operations with the same effect (the state they write) also
   * share their deadline (see planKeyOperations), so once called they are
   * interchangeable: only one of them needs to be tried at a point, and the
   * memo only needs how many of each group are settled. Grouped in id order:
   * `peers.slice(peers_from[id], peers_to[id])`; `effect_class[id]` numbers
   * the group (-1 for operations that are not optional).
   */
  peers: Int32Array;
  effect_class: Int32Array;
  effect_class_count: number;
  peers_from: Int32Array;
  peers_to: Int32Array;
  call_node: Int32Array;
  /** Read values by state id; 0 (missing) and 1 (unread values) have no string. */
  values: string[];
  /** Event list: node 0 is the head sentinel, nodes 1..2n are calls and returns in time order. */
  next: Int32Array;
  prev: Int32Array;
  node_operation: Int32Array;
  node_is_call: Uint8Array;
  /** A call's return node, a return's call node. */
  node_partner: Int32Array;
  /** Unknown-outcome operations of the key left out because they cannot change the verdict. */
  operations_dropped: number;
}

const HEAD = 0;
const NO_NODE = -1;

function compileKeyHistory(key_operations: readonly HistoryOperation[]): CompiledKeyHistory {
  const planned = planKeyOperations(key_operations);
  const operation_count = planned.length;

  // Event e is the call (even) or return (odd) of planned[e >> 1].
  const event_time = (event: number): number => {
    const plan = planned[event >> 1];
    assert(plan !== undefined, 'event of a missing operation');
    return (event & 1) === 0 ? plan.op.call_time : plan.deadline;
  };
  const events = Array.from({ length: 2 * operation_count }, (_, event) => event);
  events.sort((a, b) => {
    const time_a = event_time(a);
    const time_b = event_time(b);
    if (time_a !== time_b) return time_a < time_b ? -1 : 1;
    if ((a & 1) !== (b & 1)) return (a & 1) - (b & 1); // calls before returns: equal times are concurrent
    return a - b;
  });

  const id_of_planned = new Int32Array(operation_count);
  let next_id = 0;
  for (const event of events) if ((event & 1) === 1) id_of_planned[event >> 1] = next_id++;

  const node_count = 2 * operation_count + 1;
  const next = new Int32Array(node_count);
  const prev = new Int32Array(node_count);
  for (let node = 0; node < node_count; node++) {
    next[node] = node + 1 < node_count ? node + 1 : NO_NODE;
    prev[node] = node - 1;
  }
  const node_operation = new Int32Array(node_count).fill(-1);
  const node_is_call = new Uint8Array(node_count);
  const node_partner = new Int32Array(node_count).fill(NO_NODE);
  const call_node_of_planned = new Int32Array(operation_count);
  events.forEach((event, position) => {
    const node = position + 1;
    node_operation[node] = id_of_planned[event >> 1] ?? -1;
    if ((event & 1) === 0) {
      node_is_call[node] = 1;
      call_node_of_planned[event >> 1] = node;
    } else {
      const call = call_node_of_planned[event >> 1] ?? NO_NODE; // calls sort before their returns
      node_partner[node] = call;
      node_partner[call] = node;
    }
  });

  const values_read = new Set<string>();
  for (const { op } of planned) if (op.output.kind === 'get' && op.output.value !== null) values_read.add(op.output.value);
  const value_ids = new Map<string, number>();
  const values: string[] = ['', ''];
  const intern = (value: string): number => {
    if (!values_read.has(value)) return STATE_UNREAD_VALUE;
    let id = value_ids.get(value);
    if (id === undefined) {
      id = values.length;
      values.push(value);
      value_ids.set(value, id);
    }
    return id;
  };
  const operations = new Array<HistoryOperation>(operation_count);
  const step_kind = new Uint8Array(operation_count);
  const step_argument = new Int32Array(operation_count);
  const optional = new Uint8Array(operation_count);
  planned.forEach((plan, index) => {
    const id = id_of_planned[index] ?? 0;
    const { op } = plan;
    operations[id] = op;
    optional[id] = plan.optional ? 1 : 0;
    if (op.input.kind === 'set') {
      step_kind[id] = STEP_SET;
      step_argument[id] = intern(op.input.value);
    } else if (op.output.kind === 'get') {
      step_kind[id] = STEP_GET;
      step_argument[id] = op.output.value === null ? STATE_MISSING : intern(op.output.value);
    } else if (op.output.kind === 'del') {
      step_kind[id] = STEP_DEL;
      step_argument[id] = op.output.count;
    } else {
      assert(op.input.kind === 'del', 'unknown-outcome gets are dropped before compiling');
      step_kind[id] = STEP_DEL_UNKNOWN;
    }
  });

  const rank = new Int32Array(operation_count);
  let optional_count = 0;
  let required_count = 0;
  for (let id = 0; id < operation_count; id++) rank[id] = optional[id] === 1 ? optional_count++ : required_count++;

  const call_node = new Int32Array(operation_count);
  for (let node = 1; node < node_count; node++) if (node_is_call[node] === 1) call_node[node_operation[node] ?? 0] = node;

  const ids_by_effect = new Map<number, number[]>();
  for (let id = 0; id < operation_count; id++) {
    if (optional[id] !== 1) continue;
    const effect = step_kind[id] === STEP_SET ? (step_argument[id] ?? 0) : STATE_MISSING;
    const group = ids_by_effect.get(effect);
    if (group === undefined) ids_by_effect.set(effect, [id]);
    else group.push(id);
  }
  const peers = new Int32Array(operation_count);
  const peers_from = new Int32Array(operation_count);
  const peers_to = new Int32Array(operation_count);
  const effect_class = new Int32Array(operation_count).fill(-1);
  let peers_used = 0;
  let effect_class_count = 0;
  for (const group of ids_by_effect.values()) {
    const from = peers_used;
    for (const id of group) peers[peers_used++] = id;
    for (const id of group) {
      peers_from[id] = from;
      peers_to[id] = peers_used;
      effect_class[id] = effect_class_count;
    }
    effect_class_count++;
  }

  return {
    operations,
    step_kind,
    step_argument,
    optional,
    rank,
    optional_count,
    peers,
    effect_class,
    effect_class_count,
    peers_from,
    peers_to,
    call_node,
    values,
    next,
    prev,
    node_operation,
    node_is_call,
    node_partner,
    operations_dropped: key_operations.length - operation_count,
  };
}

// ---------------------------------------------------------------------------
// The search: Porcupine's depth-first search over linearization points.
//
// The event list holds the calls and returns not yet linearized. Scanning it
// from the head, each call met is a candidate for the next linearization
// point; the first return met is a barrier, because that operation must be
// linearized before anything called after its return. Linearizing removes
// the call and its return from the list; backtracking puts them back. Every
// situation (linearized set, model state) is explored at most once.
//
// Optional operations (see "Unknown outcomes") are tried at a point only
// after every other candidate there (the second phase of the scan), so the
// search first exhausts what the certain operations allow; a situation that
// differs from an explored one only by having used or skipped more optional
// operations is then pruned, since it can do nothing the explored one could
// not (see ExploredSituations).

/** Where the deepest dead end was met: the evidence for a failure. */
interface DeadEnd {
  /** Operation ids in linearization order. */
  prefix: number[];
  /** Parallel to prefix: true for an unknown outcome the search took as never having happened. */
  skipped: boolean[];
  /** The operation whose return (or deadline) was reached while it was still pending. */
  blocking: number;
  /** Every operation called (and not linearized) before that return. */
  pending: number[];
}

type SearchOutcome =
  | { kind: 'linearizable'; steps_used: number }
  | { kind: 'illegal'; steps_used: number; dead_end: DeadEnd }
  | { kind: 'gave_up'; steps_used: number };

/** First phase of a scan: candidates that are not optional. */
const PHASE_CERTAIN = 0;
/** Second phase: optional candidates, once the first phase reached the barrier. */
const PHASE_OPTIONAL = 1;

function searchLinearization(history: CompiledKeyHistory, step_budget: number): SearchOutcome {
  const { next, prev, node_operation, node_is_call, node_partner, step_kind, step_argument, optional, rank, peers, peers_from, peers_to, call_node } =
    history;
  const state_count = history.values.length;
  // A search situation's state is (model state, the state an awaited witness must reject).
  const certain_done = new LinearizedSet(history.operations.length - history.optional_count, state_count * (state_count + 1));
  const optional_done = new Uint32Array(Math.ceil(history.optional_count / 32));
  const settled_per_class = new Uint32Array(history.effect_class_count);
  const { effect_class } = history;
  const explored = new ExploredSituations();

  const isDone = (id: number): boolean => {
    const r = rank[id] ?? 0;
    return optional[id] === 1 ? (((optional_done[r >>> 5] ?? 0) >>> (r & 31)) & 1) === 1 : certain_done.has(r);
  };
  const markDone = (id: number): void => {
    const r = rank[id] ?? 0;
    if (optional[id] === 1) {
      optional_done[r >>> 5] = (optional_done[r >>> 5] ?? 0) | (1 << (r & 31));
      const group = effect_class[id] ?? 0;
      settled_per_class[group] = (settled_per_class[group] ?? 0) + 1;
    } else {
      certain_done.add(r);
    }
  };
  /** Undoes the latest markDone(id); `lowest_before` is certain_done.lowestAbsent() before it. */
  const unmarkDone = (id: number, lowest_before: number): void => {
    const r = rank[id] ?? 0;
    if (optional[id] === 1) {
      optional_done[r >>> 5] = (optional_done[r >>> 5] ?? 0) & ~(1 << (r & 31));
      const group = effect_class[id] ?? 0;
      settled_per_class[group] = (settled_per_class[group] ?? 0) - 1;
    } else {
      certain_done.remove(r, lowest_before);
    }
  };

  // Removes a call and its return from the event list; restore() undoes the
  // most recent remove (the nodes keep their own links, dancing-links style).
  const remove = (call: number): void => {
    const ret = node_partner[call] ?? NO_NODE;
    const call_prev = prev[call] ?? HEAD;
    const call_next = next[call] ?? NO_NODE; // never NO_NODE: the return follows its call
    next[call_prev] = call_next;
    prev[call_next] = call_prev;
    const ret_prev = prev[ret] ?? HEAD;
    const ret_next = next[ret] ?? NO_NODE;
    next[ret_prev] = ret_next;
    if (ret_next !== NO_NODE) prev[ret_next] = ret_prev;
  };
  const restore = (call: number): void => {
    const ret = node_partner[call] ?? NO_NODE;
    const ret_next = next[ret] ?? NO_NODE;
    next[prev[ret] ?? HEAD] = ret;
    if (ret_next !== NO_NODE) prev[ret_next] = ret;
    next[prev[call] ?? HEAD] = call;
    prev[next[call] ?? HEAD] = call;
  };

  // One frame per linearized operation: the node to resume from (its call
  // node, or its return node when it was skipped) and what to restore.
  const frame_node: number[] = [];
  const frame_phase: number[] = [];
  const frame_state: number[] = [];
  const frame_witness_rejects: number[] = [];
  const frame_lowest: number[] = [];
  /** The memo key and entry of the situation each frame entered. */
  const frame_key: (number | string)[] = [];
  const frame_entry: Uint32Array[] = [];
  let state = STATE_MISSING;
  // Right after an optional operation takes effect, the state before it: the
  // next operation linearized must be a witness of the effect, one that
  // accepts the new state but would have rejected this one (see "Unknown
  // outcomes"). Other continuations are the same as skipping the operation.
  let witness_rejects = NO_WITNESS_NEEDED;
  let phase = PHASE_CERTAIN;
  let dead_end: DeadEnd | null = null;
  let node = next[HEAD] ?? NO_NODE;
  let steps_used = 0;

  // Linearizes operation `id` resulting in (`next_state`, `next_witness_rejects`)
  // unless that situation (or a better one) was explored before.
  const tryEnter = (id: number, resume_node: number, next_state: number, next_witness_rejects: number): boolean => {
    const lowest_before = certain_done.lowestAbsent();
    markDone(id);
    const key = certain_done.memoKey(next_state * (state_count + 1) + next_witness_rejects + 1);
    const entry = explored.visit(key, settled_per_class, (earlier) => isOnCurrentPath(key, earlier));
    if (entry === null) {
      unmarkDone(id, lowest_before);
      return false;
    }
    frame_key.push(key);
    frame_entry.push(entry);
    frame_node.push(resume_node);
    frame_phase.push(phase);
    frame_state.push(state);
    frame_witness_rejects.push(witness_rejects);
    frame_lowest.push(lowest_before);
    state = next_state;
    witness_rejects = next_witness_rejects;
    phase = PHASE_CERTAIN;
    return true;
  };

  // Only situations since the last certain operation share its memo key.
  const isOnCurrentPath = (key: number | string, entry: Uint32Array): boolean => {
    for (let index = frame_node.length - 1; index >= 0; index--) {
      if (frame_key[index] === key && frame_entry[index] === entry) return true;
      if (optional[node_operation[frame_node[index] ?? HEAD] ?? 0] !== 1) return false;
    }
    return false;
  };

  // False when an optional peer of `id` with a lower id is also a candidate
  // now (pending, and called before the barrier): only that one is tried.
  const isFirstCandidateAmongPeers = (id: number, node_of_id: number): boolean => {
    let barrier = NO_NODE;
    const to = peers_to[id] ?? 0;
    for (let index = peers_from[id] ?? 0; index < to; index++) {
      const peer = peers[index] ?? id;
      if (peer === id) return true;
      if (isDone(peer)) continue;
      if (barrier === NO_NODE) {
        barrier = node_of_id;
        while (node_is_call[barrier] === 1) barrier = next[barrier] ?? NO_NODE;
      }
      // The list keeps nodes in time order, so node numbers compare positions.
      if ((call_node[peer] ?? barrier) < barrier) return false;
    }
    return true;
  };

  while (next[HEAD] !== NO_NODE) {
    if (steps_used === step_budget) return { kind: 'gave_up', steps_used };
    steps_used++;
    const id = node_operation[node] ?? 0;
    const is_optional = optional[id] === 1;
    if (node_is_call[node] === 1) {
      // A pending call: try to make it the next linearization point.
      if (is_optional === (phase === PHASE_OPTIONAL) && (!is_optional || isFirstCandidateAmongPeers(id, node))) {
        const kind = step_kind[id] ?? STEP_GET;
        const argument = step_argument[id] ?? 0;
        const witnesses =
          witness_rejects === NO_WITNESS_NEEDED || (observesState(kind) && stepModel(kind, argument, witness_rejects) === STATE_REJECTED);
        const next_state = witnesses ? stepModel(kind, argument, state) : STATE_REJECTED;
        const next_witness_rejects = is_optional ? state : NO_WITNESS_NEEDED;
        if (next_state !== STATE_REJECTED && next_state !== next_witness_rejects && tryEnter(id, node, next_state, next_witness_rejects)) {
          remove(node);
          node = next[HEAD] ?? NO_NODE;
          continue;
        }
      }
      node = next[node] ?? NO_NODE;
      continue;
    }
    // The barrier: the return of a pending operation.
    if (phase === PHASE_CERTAIN) {
      // An optional operation may be skipped (taken as never having happened).
      if (is_optional && tryEnter(id, node, state, witness_rejects)) {
        remove(node_partner[node] ?? NO_NODE);
        node = next[HEAD] ?? NO_NODE;
        continue;
      }
      // Optional operations write, so none can be the witness awaited.
      if (history.optional_count > 0 && witness_rejects === NO_WITNESS_NEEDED) {
        phase = PHASE_OPTIONAL;
        node = next[HEAD] ?? NO_NODE;
        continue;
      }
    }
    // Every candidate here was tried: backtrack.
    const depth = frame_node.length;
    if (dead_end === null || depth > dead_end.prefix.length) dead_end = describeDeadEnd(history, frame_node, node);
    if (depth === 0) return { kind: 'illegal', steps_used, dead_end };
    frame_key.pop();
    frame_entry.pop();
    const resume = frame_node.pop() ?? NO_NODE;
    const resumed_phase = frame_phase.pop() ?? PHASE_CERTAIN;
    const call = node_is_call[resume] === 1 ? resume : (node_partner[resume] ?? NO_NODE);
    state = frame_state.pop() ?? STATE_MISSING;
    witness_rejects = frame_witness_rejects.pop() ?? NO_WITNESS_NEEDED;
    unmarkDone(node_operation[call] ?? 0, frame_lowest.pop() ?? 0);
    restore(call);
    if (resume === call) {
      node = next[call] ?? NO_NODE;
      phase = resumed_phase;
    } else {
      // The skip at this barrier is explored: the optional phase comes next.
      // (Whether it applies is decided at the barrier again.)
      node = next[HEAD] ?? NO_NODE;
      phase = history.optional_count > 0 && witness_rejects === NO_WITNESS_NEEDED ? PHASE_OPTIONAL : PHASE_CERTAIN;
      if (phase === PHASE_CERTAIN) node = resume;
    }
  }
  return { kind: 'linearizable', steps_used };
}

function describeDeadEnd(history: CompiledKeyHistory, frame_node: readonly number[], return_node: number): DeadEnd {
  const pending: number[] = [];
  for (let node = history.next[HEAD] ?? NO_NODE; node !== return_node && node !== NO_NODE; node = history.next[node] ?? NO_NODE) {
    if (history.node_is_call[node] === 1) pending.push(history.node_operation[node] ?? 0);
  }
  return {
    prefix: frame_node.map((node) => history.node_operation[node] ?? 0),
    skipped: frame_node.map((node) => history.node_is_call[node] !== 1),
    blocking: history.node_operation[return_node] ?? 0,
    pending,
  };
}

/**
 * The set of linearized (non-optional) operations as a bitset over their
 * ranks, plus the lowest absent rank. Because ranks follow return order,
 * every rank below the lowest absent one is present, and the ranks above it
 * that are present are few (operations concurrent with the earliest pending
 * return).
 */
class LinearizedSet {
  private readonly words: Uint32Array;
  private readonly capacity: number;
  /** Whether (search state, prefix length) pairs fit exactly in a double. */
  private readonly numeric_keys: boolean;
  private lowest = 0;
  private size = 0;

  /** `search_states` bounds the search states memoKey() will be given. */
  constructor(capacity: number, search_states: number) {
    this.capacity = capacity;
    this.words = new Uint32Array(Math.ceil(capacity / 32));
    this.numeric_keys = search_states * (capacity + 1) <= Number.MAX_SAFE_INTEGER;
  }

  lowestAbsent(): number {
    return this.lowest;
  }

  has(rank: number): boolean {
    return (((this.words[rank >>> 5] ?? 0) >>> (rank & 31)) & 1) === 1;
  }

  add(rank: number): void {
    this.words[rank >>> 5] = (this.words[rank >>> 5] ?? 0) | (1 << (rank & 31));
    this.size++;
    while (this.lowest < this.capacity && this.has(this.lowest)) this.lowest++;
  }

  /** Undoes the latest add(rank); `lowest_before` is what lowestAbsent() returned before it. */
  remove(rank: number, lowest_before: number): void {
    this.words[rank >>> 5] = (this.words[rank >>> 5] ?? 0) & ~(1 << (rank & 31));
    this.size--;
    this.lowest = lowest_before;
  }

  /**
   * An exact key for (this set, a non-negative search state): a number when
   * the set is a prefix of ranks (the common, mostly-sequential case), else a
   * string listing the ranks beyond the prefix.
   */
  memoKey(search_state: number): number | string {
    const beyond_prefix = this.size - this.lowest;
    if (beyond_prefix === 0 && this.numeric_keys) return search_state * (this.capacity + 1) + this.lowest;
    let key = `${search_state}:${this.lowest}:`;
    let found = 0;
    for (let word_index = (this.lowest + 1) >>> 5; found < beyond_prefix && word_index < this.words.length; word_index++) {
      let word = this.words[word_index] ?? 0;
      if (word_index === this.lowest >>> 5) word &= (~0 << (this.lowest & 31)) << 1; // only bits above `lowest`
      while (word !== 0) {
        const bit = 31 - Math.clz32(word & -word);
        key += `${word_index * 32 + bit},`;
        word &= word - 1;
        found++;
      }
    }
    return key;
  }
}

const NONE_SETTLED = new Uint32Array(0);

/**
 * The memo: for each (certain operations done, search state), the counts of
 * optional operations settled (used or skipped) per effect class with which
 * it was entered. Having settled no more of each class is at least as good:
 * the ones still pending can always be skipped later, so anything possible
 * after settling more of them is possible after settling fewer. That only
 * proves something once the better situation is fully explored, not while it
 * is an ancestor of the current one (skipping an optional operation leads
 * from a situation to one it dominates).
 */
class ExploredSituations {
  private readonly seen = new Map<number | string, Uint32Array | Uint32Array[]>();

  /**
   * Records the situation and returns its stored identity, or null when it is
   * no better than one entered before and not `onCurrentPath`.
   */
  visit(key: number | string, settled_per_class: Uint32Array, onCurrentPath: (entry: Uint32Array) => boolean): Uint32Array | null {
    const earlier = this.seen.get(key);
    const entry = settled_per_class.every((count) => count === 0) ? NONE_SETTLED : settled_per_class.slice();
    if (earlier === undefined) {
      this.seen.set(key, entry);
    } else if (earlier instanceof Uint32Array) {
      if (settlesNoMore(earlier, settled_per_class) && !onCurrentPath(earlier)) return null;
      this.seen.set(key, [earlier, entry]);
    } else {
      if (earlier.some((settled) => settlesNoMore(settled, settled_per_class) && !onCurrentPath(settled))) return null;
      earlier.push(entry);
    }
    return entry;
  }
}

function settlesNoMore(better: Uint32Array, than: Uint32Array): boolean {
  for (let index = 0; index < better.length; index++) {
    if ((better[index] ?? 0) > (than[index] ?? 0)) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Explanations.

function explainFailure(key: string, history: CompiledKeyHistory, dead_end: DeadEnd): string {
  const operation = (id: number): string => {
    const op = history.operations[id];
    return op === undefined ? `operation #${id}` : formatOperation(op);
  };
  const total = history.operations.length;
  const lines = [`key ${quote(key)}: no linearization of its ${total} operations exists`];
  if (history.operations_dropped > 0) {
    lines[0] += ` (${history.operations_dropped} unknown-outcome operations that nothing could observe were left out)`;
  }
  const { prefix, skipped } = dead_end;
  lines.push(`longest linearizable prefix found (${prefix.length} of ${total}):`);
  const shown_from = Math.max(0, prefix.length - EXPLANATION_OPERATIONS_MAX);
  if (shown_from > 0) lines.push(`  … ${shown_from} earlier operations`);
  for (let index = shown_from; index < prefix.length; index++) {
    lines.push(`  ${operation(prefix[index] ?? 0)}${skipped[index] === true ? ' (taken as never having happened)' : ''}`);
  }
  // The search state merges values nobody read; replaying the prefix names the value.
  let value: string | null = null;
  prefix.forEach((id, index) => {
    const input = history.operations[id]?.input;
    if (input === undefined || skipped[index] === true) return;
    if (input.kind === 'set') value = input.value;
    if (input.kind === 'del') value = null;
  });
  lines.push(`value after it: ${value === null ? 'missing' : quote(value)}`);
  lines.push(`then ${operation(dead_end.blocking)} must take effect before it returns, but no pending operation can be applied next:`);
  for (const id of dead_end.pending.slice(0, EXPLANATION_OPERATIONS_MAX)) lines.push(`  ${operation(id)}`);
  if (dead_end.pending.length > EXPLANATION_OPERATIONS_MAX) lines.push(`  … and ${dead_end.pending.length - EXPLANATION_OPERATIONS_MAX} more`);
  return lines.join('\n');
}
