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
 * +infinity and any output is accepted (see "Unknown outcomes" for how the
 * search stays tractable with many of them). Certainly-failed operations must
 * not be in the history at all.
 *
 * A search that would exceed its step budget gives up and reports timed_out
 * instead of hanging the test suite on a pathological history.
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
  /**
   * When not ok: the key whose sub-history is not linearizable and a short human-readable
   * explanation (the longest linearizable prefix found, the operations involved).
   */
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
  /**
   * Which search decides each key (see searchLinearization); 'auto' (the
   * default) runs 'quick' on part of the budget, then 'thorough'. The others
   * exist to test each search alone.
   */
  search?: 'auto' | 'quick' | 'thorough';
}

const STEP_BUDGET_DEFAULT = 5_000_000;
/** Operations listed per section of a failure explanation, to keep it readable. */
const EXPLANATION_OPERATIONS_MAX = 8;
/** Characters of a value shown in a formatted operation before it is elided. */
const FORMATTED_VALUE_CHARS_MAX = 40;

export function checkLinearizable(
  history: readonly HistoryOperation[],
  options: CheckOptions = {},
): CheckResult {
  const step_budget = options.step_budget ?? STEP_BUDGET_DEFAULT;
  assert(
    Number.isSafeInteger(step_budget) && step_budget >= 0,
    `step_budget must be a non-negative integer, got ${step_budget}`,
  );
  history.forEach(validateOperation);

  const partitions = [...partitionByKey(history)].sort(
    ([key_a, ops_a], [key_b, ops_b]) =>
      ops_a.length - ops_b.length || (key_a < key_b ? -1 : key_a > key_b ? 1 : 0),
  );
  let steps_left = step_budget;
  for (const [key, operations] of partitions) {
    const { outcome, compiled } = checkKey(operations, steps_left, options.search ?? 'auto');
    steps_left -= outcome.steps_used;
    if (outcome.kind === 'illegal') {
      return {
        ok: false,
        timed_out: false,
        failure: { key, explanation: explainFailure(key, compiled, outcome.dead_end) },
      };
    }
    if (outcome.kind === 'gave_up') return { ok: false, timed_out: true };
  }
  return { ok: true, timed_out: false };
}

/**
 * Share of a key's budget for the quick search when unknown outcomes make the thorough one worth
 * having.
 */
const QUICK_SEARCH_BUDGET_SHARE = 0.25;

/**
 * Both searches are complete; the quick one finds linearizations fast but may
 * repeat itself at length refuting histories with unknown outcomes, which the
 * thorough one does without repetition (see searchLinearization).
 */
function checkKey(
  operations: readonly HistoryOperation[],
  step_budget: number,
  search: 'auto' | 'quick' | 'thorough',
): { outcome: SearchOutcome; compiled: CompiledKeyHistory } {
  const compiled = compileKeyHistory(operations);
  if (search !== 'auto')
    return { outcome: searchLinearization(compiled, step_budget, search), compiled };
  // Without unknown outcomes to spend, the two searches are the same.
  if (compiled.pools.length === 0)
    return { outcome: searchLinearization(compiled, step_budget, 'quick'), compiled };
  const quick = searchLinearization(
    compiled,
    Math.floor(step_budget * QUICK_SEARCH_BUDGET_SHARE),
    'quick',
  );
  if (quick.kind !== 'gave_up') return { outcome: quick, compiled };
  const fresh = compileKeyHistory(operations); // the quick search left its event list mid-way
  const thorough = searchLinearization(fresh, step_budget - quick.steps_used, 'thorough');
  return {
    outcome: { ...thorough, steps_used: quick.steps_used + thorough.steps_used },
    compiled: fresh,
  };
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
  const interval =
    op.output.kind === 'unknown' || op.return_time === Infinity
      ? `[${op.call_time}, ∞)`
      : `[${op.call_time}, ${op.return_time}]`;
  return `client ${op.client_id} ${call} -> ${result} ${interval}`;
}

function quote(text: string): string {
  const shown =
    text.length > FORMATTED_VALUE_CHARS_MAX
      ? `${text.slice(0, FORMATTED_VALUE_CHARS_MAX - 1)}…`
      : text;
  return JSON.stringify(shown);
}

function validateOperation(op: HistoryOperation, index: number): void {
  const where = `history[${index}] (${op.input.kind} ${JSON.stringify(op.input.key)})`;
  assert(Number.isFinite(op.call_time), `${where}: call_time must be finite, got ${op.call_time}`);
  assert(
    op.output.kind === 'unknown' || op.output.kind === op.input.kind,
    `${where}: output kind ${op.output.kind} does not answer input kind ${op.input.kind}`,
  );
  if (op.output.kind !== 'unknown') {
    assert(
      !Number.isNaN(op.return_time) && op.return_time >= op.call_time,
      `${where}: return_time ${op.return_time} precedes call_time ${op.call_time}`,
    );
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
// - an unknown SET of a value that no other SET writes, and that some GET
//   returned, certainly took effect: it is an ordinary operation whose return
//   is the earliest return among those GETs;
// - any other is optional: it either never takes effect, or takes effect
//   right before an operation that observes it and could not have returned
//   what it did without it, no later than the latest return among its
//   observers (its deadline).
// Optional operations with the same effect have the same deadline, so once
// called they are interchangeable: the search treats each such group as a
// pool of tokens (see searchLinearization).

interface PlannedOperation {
  op: HistoryOperation;
  /**
   * Where its return sits in real time: the return time, or for an unknown outcome its deadline.
   */
  deadline: number;
  /** An unknown outcome that may never have taken effect. */
  optional: boolean;
}

function planKeyOperations(operations: readonly HistoryOperation[]): PlannedOperation[] {
  const writers_of_value = new Map<string, number>();
  const readers_of_value = new Map<string, { return_min: number; return_max: number }>();
  let nil_read_return_max = -Infinity; // GETs returning nil
  let deleted_existing_return_max = -Infinity; // DELs returning 1
  let deleted_missing_return_max = -Infinity; // DELs returning 0
  for (const op of operations) {
    if (op.input.kind === 'set')
      writers_of_value.set(op.input.value, (writers_of_value.get(op.input.value) ?? 0) + 1);
    if (op.output.kind === 'get') {
      if (op.output.value === null) {
        nil_read_return_max = Math.max(nil_read_return_max, op.return_time);
      } else {
        const readers = readers_of_value.get(op.output.value);
        if (readers === undefined)
          readers_of_value.set(op.output.value, {
            return_min: op.return_time,
            return_max: op.return_time,
          });
        else {
          readers.return_min = Math.min(readers.return_min, op.return_time);
          readers.return_max = Math.max(readers.return_max, op.return_time);
        }
      }
    }
    if (op.output.kind === 'del' && op.output.count === 1)
      deleted_existing_return_max = Math.max(deleted_existing_return_max, op.return_time);
    if (op.output.kind === 'del' && op.output.count === 0)
      deleted_missing_return_max = Math.max(deleted_missing_return_max, op.return_time);
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
    if (observed_until >= op.call_time)
      planned.push({ op, deadline: observed_until, optional: true });
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

/** Optional operations with one effect: interchangeable tokens once called. */
interface TokenPool {
  /** The state they write. */
  effect: number;
  /** Their common deadline: none can take effect after an operation called later. */
  deadline: number;
  /** Call times, ascending: how many are available by a given time. */
  call_times: Float64Array;
  /** The operations, in the same order (for explanations). */
  operations: HistoryOperation[];
}

/**
 * One key's sub-history as flat arrays. The event list holds the operations
 * that are not optional, numbered in the order of their returns, so that the
 * linearized set is always "every operation below some id, plus a few
 * concurrent ones" — which keeps memo keys short.
 */
interface CompiledKeyHistory {
  /** By operation id. */
  operations: HistoryOperation[];
  step_kind: Uint8Array;
  step_argument: Int32Array;
  pools: TokenPool[];
  /** Read values by state id; 0 (missing) and 1 (unread values) have no string. */
  values: string[];
  /** Event list: node 0 is the head sentinel, nodes 1..2n are calls and returns in time order. */
  next: Int32Array;
  prev: Int32Array;
  node_operation: Int32Array;
  node_is_call: Uint8Array;
  /** A call's return node, a return's call node. */
  node_partner: Int32Array;
  /** Real time of each node (a return's is its deadline). */
  node_time: Float64Array;
  /** Unknown-outcome operations of the key left out because they cannot change the verdict. */
  operations_dropped: number;
}

const HEAD = 0;
const NO_NODE = -1;

function compileKeyHistory(key_operations: readonly HistoryOperation[]): CompiledKeyHistory {
  const planned = planKeyOperations(key_operations);
  const listed = planned.filter((plan) => !plan.optional);
  const event_list = buildEventList(listed);
  const values = new ValueInterner(planned);
  const steps = compileSteps(listed, event_list.id_of_listed, values);
  return {
    operations: steps.operations,
    step_kind: steps.step_kind,
    step_argument: steps.step_argument,
    pools: buildTokenPools(planned, values),
    values: values.values,
    next: event_list.next,
    prev: event_list.prev,
    node_operation: event_list.node_operation,
    node_is_call: event_list.node_is_call,
    node_partner: event_list.node_partner,
    node_time: event_list.node_time,
    operations_dropped: key_operations.length - planned.length,
  };
}

type EventList = Pick<
  CompiledKeyHistory,
  'next' | 'prev' | 'node_operation' | 'node_is_call' | 'node_partner' | 'node_time'
> & {
  /** The operation id of each listed operation: ids follow return order. */
  id_of_listed: Int32Array;
};

/** The calls and returns of the listed operations in time order, as a doubly linked list. */
function buildEventList(listed: readonly PlannedOperation[]): EventList {
  const operation_count = listed.length;
  // Event e is the call (even) or return (odd) of listed[e >> 1].
  const event_time = (event: number): number => {
    const plan = listed[event >> 1];
    assert(plan !== undefined, 'event of a missing operation');
    return (event & 1) === 0 ? plan.op.call_time : plan.deadline;
  };
  const events = Array.from({ length: 2 * operation_count }, (_, event) => event);
  events.sort((a, b) => {
    const time_a = event_time(a);
    const time_b = event_time(b);
    if (time_a !== time_b) return time_a < time_b ? -1 : 1;
    // Calls before returns: equal times are concurrent.
    if ((a & 1) !== (b & 1)) return (a & 1) - (b & 1);
    return a - b;
  });

  const id_of_listed = new Int32Array(operation_count);
  let next_id = 0;
  for (const event of events) if ((event & 1) === 1) id_of_listed[event >> 1] = next_id++;

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
  const node_time = new Float64Array(node_count);
  const call_node_of_listed = new Int32Array(operation_count);
  events.forEach((event, position) => {
    const node = position + 1;
    node_operation[node] = id_of_listed[event >> 1] ?? -1;
    node_time[node] = event_time(event);
    if ((event & 1) === 0) {
      node_is_call[node] = 1;
      call_node_of_listed[event >> 1] = node;
    } else {
      const call = call_node_of_listed[event >> 1] ?? NO_NODE; // calls sort before their returns
      node_partner[node] = call;
      node_partner[call] = node;
    }
  });
  return { next, prev, node_operation, node_is_call, node_partner, node_time, id_of_listed };
}

/** Model state ids for values: one per value some GET returned, one shared by all the rest. */
class ValueInterner {
  /** By state id; 0 (missing) and 1 (unread values) have no string. */
  readonly values: string[] = ['', ''];
  private readonly values_read = new Set<string>();
  private readonly value_ids = new Map<string, number>();

  constructor(planned: readonly PlannedOperation[]) {
    for (const { op } of planned)
      if (op.output.kind === 'get' && op.output.value !== null)
        this.values_read.add(op.output.value);
  }

  intern(value: string): number {
    if (!this.values_read.has(value)) return STATE_UNREAD_VALUE;
    let id = this.value_ids.get(value);
    if (id === undefined) {
      id = this.values.length;
      this.values.push(value);
      this.value_ids.set(value, id);
    }
    return id;
  }
}

/** Each listed operation as a step of the model, by operation id. */
function compileSteps(
  listed: readonly PlannedOperation[],
  id_of_listed: Int32Array,
  values: ValueInterner,
): Pick<CompiledKeyHistory, 'operations' | 'step_kind' | 'step_argument'> {
  const operation_count = listed.length;
  const operations = new Array<HistoryOperation>(operation_count);
  const step_kind = new Uint8Array(operation_count);
  const step_argument = new Int32Array(operation_count);
  listed.forEach(({ op }, index) => {
    const id = id_of_listed[index] ?? 0;
    operations[id] = op;
    if (op.input.kind === 'set') {
      step_kind[id] = STEP_SET;
      step_argument[id] = values.intern(op.input.value);
    } else if (op.output.kind === 'get') {
      step_kind[id] = STEP_GET;
      step_argument[id] = op.output.value === null ? STATE_MISSING : values.intern(op.output.value);
    } else if (op.output.kind === 'del') {
      step_kind[id] = STEP_DEL;
      step_argument[id] = op.output.count;
    } else {
      assert(op.input.kind === 'del', 'unknown-outcome gets are dropped before compiling');
      step_kind[id] = STEP_DEL_UNKNOWN;
    }
  });
  return { operations, step_kind, step_argument };
}

/** The optional operations grouped by the state they write. */
function buildTokenPools(planned: readonly PlannedOperation[], values: ValueInterner): TokenPool[] {
  const pool_by_effect = new Map<number, { deadline: number; members: HistoryOperation[] }>();
  for (const { op, optional, deadline } of planned) {
    if (!optional) continue;
    const effect = op.input.kind === 'set' ? values.intern(op.input.value) : STATE_MISSING;
    const pool = pool_by_effect.get(effect);
    if (pool === undefined) pool_by_effect.set(effect, { deadline, members: [op] });
    else {
      assert(
        pool.deadline === deadline,
        'optional operations with one effect share their deadline',
      );
      pool.members.push(op);
    }
  }
  return [...pool_by_effect].map(([effect, { deadline, members }]): TokenPool => {
    members.sort((a, b) => a.call_time - b.call_time);
    return {
      effect,
      deadline,
      call_times: Float64Array.from(members, (op) => op.call_time),
      operations: members,
    };
  });
}

// ---------------------------------------------------------------------------
// The search: Porcupine's depth-first search over linearization points.
//
// The event list holds the calls and returns not yet linearized. Scanning it
// from the head, each call met is a candidate for the next linearization
// point; the first return met is a barrier, because that operation must be
// linearized before anything called after its return. Linearizing removes
// the call and its return from the list; backtracking puts them back.
//
// After the listed candidates, the search tries spending a token from each
// pool (an optional operation taking effect): allowed while no operation
// called after the pool's deadline has been linearized, and while the tokens
// spent from the pool so far do not outnumber its operations called before
// the barrier.
//
// The 'quick' search never overspends and memoises (operations linearized,
// model state, awaited witness, tokens spent): plain Porcupine over that
// state. Refuting a history, it explores a situation again for every
// combination of tokens spent on the way to it. The 'thorough' search
// explores each situation once, path-independently (overspending too), and
// remembers the set of token counts from which it can still be completed: a
// down-set, stored as its maximal vectors (a Frontier). The history is
// linearizable iff the root's set contains zero. Both stop at the first
// complete linearization whose path spent only tokens that were there.

/** Where the deepest dead end was met: the evidence for a failure. */
interface DeadEnd {
  /** Linearization order: an operation id, or -1 - p for a token of pools[p]. */
  prefix: number[];
  /** The operation whose return (or deadline) was reached while it was still pending. */
  blocking: number;
  /** Every operation called (and not linearized) before that return. */
  pending: number[];
}

type SearchOutcome =
  | { kind: 'linearizable'; steps_used: number }
  | { kind: 'illegal'; steps_used: number; dead_end: DeadEnd }
  | { kind: 'gave_up'; steps_used: number };

/** A down-set of token-count vectors (one count per pool), as its maximal elements. */
type Frontier = readonly Int32Array[];
const NOTHING: Frontier = [];
/** Stands for "any number of tokens". */
const TOKENS_UNBOUNDED = 0x3fffffff;

function frontierContains(frontier: Frontier, counts: Int32Array): boolean {
  return frontier.some((maximal) => dominates(maximal, counts));
}

function dominates(larger: Int32Array, smaller: Int32Array): boolean {
  for (let index = 0; index < larger.length; index++)
    if ((larger[index] ?? 0) < (smaller[index] ?? 0)) return false;
  return true;
}

function frontierUnion(a: Frontier, b: Frontier): Frontier {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const merged: Int32Array[] = [];
  for (const candidate of [...a, ...b]) {
    if (merged.some((kept) => dominates(kept, candidate))) continue;
    for (let index = merged.length - 1; index >= 0; index--)
      if (dominates(candidate, merged[index] ?? candidate)) merged.splice(index, 1);
    merged.push(candidate);
  }
  return merged;
}

/**
 * The counts before spending a token of `pool`, given the child's frontier and the tokens there
 * were.
 */
function frontierBeforeSpending(child: Frontier, pool: number, tokens_available: number): Frontier {
  let result: Frontier = NOTHING;
  for (const maximal of child) {
    const before = maximal.slice();
    before[pool] = Math.min(maximal[pool] ?? 0, tokens_available) - 1;
    if ((before[pool] ?? -1) >= 0) result = frontierUnion(result, [before]);
  }
  return result;
}

/** First phase of a scan: the listed candidates. */
const SCAN_LISTED = 0;
/** Second phase, from the barrier on: spending a token of each pool in turn. */
const SCAN_POOLS = 1;
/** A frame's move spends a token rather than linearizing a listed call. */
const MOVE_SPENDS_TOKEN = -1;

/** What one step of the search found. */
const SEARCH_CONTINUE = 0;
const SEARCH_FOUND = 1;
const SEARCH_EXHAUSTED = 2;

function searchLinearization(
  history: CompiledKeyHistory,
  step_budget: number,
  mode: 'quick' | 'thorough',
): SearchOutcome {
  return new LinearizationSearch(history, mode).run(step_budget);
}

/**
 * One search over one compiled key history, run as an explicit stack of frames (no recursion, so
 * long histories cannot overflow the call stack).
 */
class LinearizationSearch {
  private readonly history: CompiledKeyHistory;
  private readonly mode: 'quick' | 'thorough';
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private readonly pool_count: number;
  private readonly state_count: number;
  private readonly linearized: LinearizedSet;
  private readonly explored = new Map<number | string, Frontier>();
  private readonly everything: Frontier;
  private readonly tokens_in_key: boolean;

  // The situation being explored.
  private state = STATE_MISSING;
  /**
   * Right after a token is spent, the state before it: the next operation linearized must be a
   * witness of the effect, one that accepts the new state but would have rejected this one (see
   * "Unknown outcomes").
   */
  private witness_rejects = NO_WITNESS_NEEDED;
  /** Latest call among the linearized operations: a pool whose deadline is earlier is closed. */
  private latest_call_time = -Infinity;
  /** Token counts along the current path, and how many spends on it exceeded what was there. */
  private readonly tokens_spent: Int32Array;
  private overspent_moves = 0;
  /** The frontier of the situation so far, from its children explored. */
  private frontier: Frontier = NOTHING;
  // Where its scan is.
  private scan = SCAN_LISTED;
  private node: number;
  private pool_index = 0;
  private barrier_time = Infinity;

  // One frame per move on the current path: the move, the child's memo key, and the parent
  // situation to resume.
  /** The call node linearized, or MOVE_SPENDS_TOKEN. */
  private readonly frame_move: number[] = [];
  private readonly frame_resume_node: number[] = [];
  private readonly frame_pool: number[] = [];
  private readonly frame_tokens_available: number[] = [];
  private readonly frame_overspent: boolean[] = [];
  private readonly frame_key: (number | string)[] = [];
  private readonly frame_state: number[] = [];
  private readonly frame_witness_rejects: number[] = [];
  private readonly frame_latest_call_time: number[] = [];
  private readonly frame_lowest: number[] = [];
  private readonly frame_frontier: Frontier[] = [];
  private readonly frame_scan: number[] = [];
  private readonly frame_pool_index: number[] = [];
  private readonly frame_barrier_time: number[] = [];

  private dead_end: DeadEnd | null = null;

  constructor(history: CompiledKeyHistory, mode: 'quick' | 'thorough') {
    this.history = history;
    this.mode = mode;
    this.next = history.next;
    this.prev = history.prev;
    this.pool_count = history.pools.length;
    this.state_count = history.values.length;
    // A situation's search state is (model state, the state an awaited witness must reject).
    this.linearized = new LinearizedSet(
      history.operations.length,
      this.state_count * (this.state_count + 1),
    );
    this.everything = [new Int32Array(this.pool_count).fill(TOKENS_UNBOUNDED)];
    this.tokens_in_key = mode === 'quick' && this.pool_count > 0;
    this.tokens_spent = new Int32Array(this.pool_count);
    this.node = this.next[HEAD] ?? NO_NODE;
  }

  run(step_budget: number): SearchOutcome {
    let steps_used = 0;
    if (this.next[HEAD] === NO_NODE) return { kind: 'linearizable', steps_used };
    for (;;) {
      if (steps_used === step_budget) return { kind: 'gave_up', steps_used };
      steps_used++;
      const result = this.step();
      if (result === SEARCH_FOUND) return { kind: 'linearizable', steps_used };
      if (result === SEARCH_EXHAUSTED) break;
    }
    assert(this.dead_end !== null, 'a failed search met a dead end');
    return { kind: 'illegal', steps_used, dead_end: this.dead_end };
  }

  /** Tries the next move of the current situation, or leaves it when none is left. */
  private step(): number {
    if (this.next[HEAD] === NO_NODE) {
      // Complete, but on a path that spent tokens it did not have.
      this.frontier = this.everything;
      this.leave();
      return SEARCH_CONTINUE;
    }
    if (this.scan === SCAN_LISTED) {
      if (this.history.node_is_call[this.node] === 1)
        return this.tryListedCall() ? SEARCH_FOUND : SEARCH_CONTINUE;
      // The barrier. Tokens write, so none can be the witness awaited.
      if (this.pool_count > 0 && this.witness_rejects === NO_WITNESS_NEEDED) {
        this.scan = SCAN_POOLS;
        this.pool_index = 0;
        this.barrier_time = this.history.node_time[this.node] ?? Infinity;
        return SEARCH_CONTINUE;
      }
    } else if (this.pool_index < this.pool_count) {
      return this.trySpendToken() ? SEARCH_FOUND : SEARCH_CONTINUE;
    }
    // Every move from this situation is explored.
    const depth = this.frame_move.length;
    if (this.dead_end === null || depth > this.dead_end.prefix.length)
      this.dead_end = describeDeadEnd(this.history, this.frame_move, this.frame_pool, this.node);
    return this.leave() ? SEARCH_CONTINUE : SEARCH_EXHAUSTED;
  }

  /** A pending call: tries to make it the next linearization point. True when that completes. */
  private tryListedCall(): boolean {
    const { node_operation, node_time, step_kind, step_argument } = this.history;
    const call = this.node;
    const id = node_operation[call] ?? 0;
    const kind = step_kind[id] ?? STEP_GET;
    const argument = step_argument[id] ?? 0;
    const witness_rejects = this.witness_rejects;
    const witnesses =
      witness_rejects === NO_WITNESS_NEEDED ||
      (observesState(kind) && stepModel(kind, argument, witness_rejects) === STATE_REJECTED);
    const next_state = witnesses ? stepModel(kind, argument, this.state) : STATE_REJECTED;
    this.node = this.next[call] ?? NO_NODE;
    if (next_state === STATE_REJECTED) return false;
    const next_latest_call_time = Math.max(this.latest_call_time, node_time[call] ?? 0);
    return this.enter(call, 0, 0, next_state, NO_WITNESS_NEEDED, next_latest_call_time);
  }

  /** Tries spending a token of the next pool. True when that completes a linearization. */
  private trySpendToken(): boolean {
    const pool_number = this.pool_index++;
    const pool = this.history.pools[pool_number];
    assert(pool !== undefined, 'pool index in range');
    const tokens_available = tokensCalledBy(pool, this.barrier_time);
    // Spending is pointless when the state would not change.
    const affordable =
      this.mode === 'thorough' || (this.tokens_spent[pool_number] ?? 0) < tokens_available;
    if (
      !affordable ||
      tokens_available === 0 ||
      this.latest_call_time > pool.deadline ||
      pool.effect === this.state
    )
      return false;
    return this.enter(
      MOVE_SPENDS_TOKEN,
      pool_number,
      tokens_available,
      pool.effect,
      this.state,
      this.latest_call_time,
    );
  }

  /**
   * Makes a move (linearize `move`, or spend a token of `pool` of which `tokens_available` were
   * called) into the situation (next_state, next_witness_rejects). Returns true when that
   * completes a linearization.
   */
  private enter(
    move: number,
    pool: number,
    tokens_available: number,
    next_state: number,
    next_witness_rejects: number,
    next_latest_call_time: number,
  ): boolean {
    const lowest_before = this.linearized.lowestAbsent();
    const overspent = this.applyMove(move, pool, tokens_available);
    const situation_key = this.linearized.memoKey(
      next_state * (this.state_count + 1) + next_witness_rejects + 1,
    );
    const key = this.tokens_in_key
      ? `${situation_key}/${this.tokens_spent.join(',')}`
      : situation_key;
    const known = this.explored.get(key);
    if (known !== undefined) {
      if (this.overspent_moves === 0 && frontierContains(known, this.tokens_spent)) return true;
      this.undoMove(move, pool, lowest_before, overspent);
      this.frontier = frontierUnion(
        this.frontier,
        move === MOVE_SPENDS_TOKEN ? frontierBeforeSpending(known, pool, tokens_available) : known,
      );
      return false;
    }
    this.pushFrame(move, pool, tokens_available, overspent, key, lowest_before);
    this.state = next_state;
    this.witness_rejects = next_witness_rejects;
    this.latest_call_time = next_latest_call_time;
    this.frontier = NOTHING;
    this.scan = SCAN_LISTED;
    this.node = this.next[HEAD] ?? NO_NODE;
    return this.next[HEAD] === NO_NODE && this.overspent_moves === 0;
  }

  /** Linearizes `move`, or spends a token of `pool`; returns whether that spend overspent. */
  private applyMove(move: number, pool: number, tokens_available: number): boolean {
    if (move !== MOVE_SPENDS_TOKEN) {
      this.linearized.add(this.history.node_operation[move] ?? 0);
      this.removeCall(move);
      return false;
    }
    this.tokens_spent[pool] = (this.tokens_spent[pool] ?? 0) + 1;
    const overspent = (this.tokens_spent[pool] ?? 0) > tokens_available;
    if (overspent) this.overspent_moves++;
    return overspent;
  }

  private undoMove(move: number, pool: number, lowest_before: number, overspent: boolean): void {
    if (move === MOVE_SPENDS_TOKEN) {
      this.tokens_spent[pool] = (this.tokens_spent[pool] ?? 0) - 1;
      if (overspent) this.overspent_moves--;
    } else {
      this.linearized.remove(this.history.node_operation[move] ?? 0, lowest_before);
      this.restoreCall(move);
    }
  }

  private pushFrame(
    move: number,
    pool: number,
    tokens_available: number,
    overspent: boolean,
    key: number | string,
    lowest_before: number,
  ): void {
    this.frame_move.push(move);
    this.frame_resume_node.push(this.node);
    this.frame_pool.push(pool);
    this.frame_tokens_available.push(tokens_available);
    this.frame_overspent.push(overspent);
    this.frame_key.push(key);
    this.frame_state.push(this.state);
    this.frame_witness_rejects.push(this.witness_rejects);
    this.frame_latest_call_time.push(this.latest_call_time);
    this.frame_lowest.push(lowest_before);
    this.frame_frontier.push(this.frontier);
    this.frame_scan.push(this.scan);
    this.frame_pool_index.push(this.pool_index);
    this.frame_barrier_time.push(this.barrier_time);
  }

  /**
   * The situation is fully explored: remember it and resume its parent. Returns false at the root.
   */
  private leave(): boolean {
    const depth = this.frame_move.length;
    if (depth === 0) return false;
    const move = this.frame_move.pop() ?? MOVE_SPENDS_TOKEN;
    const pool = this.frame_pool.pop() ?? 0;
    const tokens_available = this.frame_tokens_available.pop() ?? 0;
    this.explored.set(this.frame_key.pop() ?? '', this.frontier);
    const child = this.frontier;
    this.state = this.frame_state.pop() ?? STATE_MISSING;
    this.witness_rejects = this.frame_witness_rejects.pop() ?? NO_WITNESS_NEEDED;
    this.latest_call_time = this.frame_latest_call_time.pop() ?? -Infinity;
    this.undoMove(move, pool, this.frame_lowest.pop() ?? 0, this.frame_overspent.pop() ?? false);
    this.frontier = frontierUnion(
      this.frame_frontier.pop() ?? NOTHING,
      move === MOVE_SPENDS_TOKEN ? frontierBeforeSpending(child, pool, tokens_available) : child,
    );
    this.scan = this.frame_scan.pop() ?? SCAN_LISTED;
    this.pool_index = this.frame_pool_index.pop() ?? 0;
    this.barrier_time = this.frame_barrier_time.pop() ?? Infinity;
    this.node = this.frame_resume_node.pop() ?? NO_NODE;
    return true;
  }

  /**
   * Removes a call and its return from the event list; restoreCall() undoes the most recent
   * remove (the nodes keep their own links, dancing-links style).
   */
  private removeCall(call: number): void {
    const { next, prev } = this;
    const ret = this.history.node_partner[call] ?? NO_NODE;
    const call_prev = prev[call] ?? HEAD;
    const call_next = next[call] ?? NO_NODE; // never NO_NODE: the return follows its call
    next[call_prev] = call_next;
    prev[call_next] = call_prev;
    const ret_prev = prev[ret] ?? HEAD;
    const ret_next = next[ret] ?? NO_NODE;
    next[ret_prev] = ret_next;
    if (ret_next !== NO_NODE) prev[ret_next] = ret_prev;
  }

  private restoreCall(call: number): void {
    const { next, prev } = this;
    const ret = this.history.node_partner[call] ?? NO_NODE;
    const ret_next = next[ret] ?? NO_NODE;
    next[prev[ret] ?? HEAD] = ret;
    if (ret_next !== NO_NODE) prev[ret_next] = ret;
    next[prev[call] ?? HEAD] = call;
    prev[next[call] ?? HEAD] = call;
  }
}

/** How many of the pool's operations were called by `time` (its call times are sorted). */
function tokensCalledBy(pool: TokenPool, time: number): number {
  let low = 0;
  let high = pool.call_times.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((pool.call_times[middle] ?? Infinity) <= time) low = middle + 1;
    else high = middle;
  }
  return low;
}

function describeDeadEnd(
  history: CompiledKeyHistory,
  frame_move: readonly number[],
  frame_pool: readonly number[],
  return_node: number,
): DeadEnd {
  const pending: number[] = [];
  for (
    let node = history.next[HEAD] ?? NO_NODE;
    node !== return_node && node !== NO_NODE;
    node = history.next[node] ?? NO_NODE
  ) {
    if (history.node_is_call[node] === 1) pending.push(history.node_operation[node] ?? 0);
  }
  return {
    prefix: frame_move.map((move, index) =>
      move === MOVE_SPENDS_TOKEN
        ? -1 - (frame_pool[index] ?? 0)
        : (history.node_operation[move] ?? 0),
    ),
    blocking: history.node_operation[return_node] ?? 0,
    pending,
  };
}

/**
 * The set of linearized operations as a bitset over their ids, plus the
 * lowest absent id. Because ids follow return order, every id below the
 * lowest absent one is present, and the ids above it that are present are
 * few (operations concurrent with the earliest pending return).
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

  has(id: number): boolean {
    return (((this.words[id >>> 5] ?? 0) >>> (id & 31)) & 1) === 1;
  }

  add(id: number): void {
    this.words[id >>> 5] = (this.words[id >>> 5] ?? 0) | (1 << (id & 31));
    this.size++;
    while (this.lowest < this.capacity && this.has(this.lowest)) this.lowest++;
  }

  /** Undoes the latest add(id); `lowest_before` is what lowestAbsent() returned before it. */
  remove(id: number, lowest_before: number): void {
    this.words[id >>> 5] = (this.words[id >>> 5] ?? 0) & ~(1 << (id & 31));
    this.size--;
    this.lowest = lowest_before;
  }

  /**
   * An exact key for (this set, a non-negative search state): a number when
   * the set is a prefix of ids (the common, mostly-sequential case), else a
   * string listing the ids beyond the prefix.
   */
  memoKey(search_state: number): number | string {
    const beyond_prefix = this.size - this.lowest;
    if (beyond_prefix === 0 && this.numeric_keys)
      return search_state * (this.capacity + 1) + this.lowest;
    let key = `${search_state}:${this.lowest}:`;
    let found = 0;
    for (
      let word_index = (this.lowest + 1) >>> 5;
      found < beyond_prefix && word_index < this.words.length;
      word_index++
    ) {
      let word = this.words[word_index] ?? 0;
      // Only bits above `lowest`
      if (word_index === this.lowest >>> 5) word &= (~0 << (this.lowest & 31)) << 1;
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

// ---------------------------------------------------------------------------
// Explanations.

function explainFailure(key: string, history: CompiledKeyHistory, dead_end: DeadEnd): string {
  const describe = (step: number): string => {
    if (step < 0) {
      const pool = history.pools[-1 - step];
      const example = pool?.operations[0];
      const count = pool?.operations.length ?? 0;
      return example === undefined
        ? 'an unknown-outcome write'
        : `${formatOperation(example)} takes effect ` +
            `here${count > 1 ? ` (or another of ${count} alike)` : ''}`;
    }
    const op = history.operations[step];
    return op === undefined ? `operation #${step}` : formatOperation(op);
  };
  const optional_count = history.pools.reduce((sum, pool) => sum + pool.operations.length, 0);
  const total = history.operations.length + optional_count;
  const lines = [`key ${quote(key)}: no linearization of its ${total} operations exists`];
  if (optional_count > 0) {
    const unknown_writes = `${optional_count} of them unknown-outcome writes`;
    lines[0] += ` (${unknown_writes} that may never have taken effect)`;
  }
  if (history.operations_dropped > 0)
    lines[0] +=
      `; ${history.operations_dropped} unknown-outcome ` +
      `operations nothing could observe were left out`;
  const { prefix } = dead_end;
  lines.push(`longest linearizable prefix found (${prefix.length} steps):`);
  const shown_from = Math.max(0, prefix.length - EXPLANATION_OPERATIONS_MAX);
  if (shown_from > 0) lines.push(`  … ${shown_from} earlier steps`);
  for (const step of prefix.slice(shown_from)) lines.push(`  ${describe(step)}`);
  // The search state merges values nobody read; replaying the prefix names the value.
  let value_text = 'missing';
  for (const step of prefix) {
    if (step < 0) {
      const effect = history.pools[-1 - step]?.effect ?? STATE_MISSING;
      value_text =
        effect === STATE_MISSING
          ? 'missing'
          : effect === STATE_UNREAD_VALUE
            ? 'a value no get returned'
            : quote(history.values[effect] ?? '');
      continue;
    }
    const input = history.operations[step]?.input;
    if (input?.kind === 'set') value_text = quote(input.value);
    if (input?.kind === 'del') value_text = 'missing';
  }
  lines.push(`value after it: ${value_text}`);
  lines.push(
    `then ${describe(dead_end.blocking)} must take effect before ` +
      `it returns, but no pending operation can be applied next:`,
  );
  for (const id of dead_end.pending.slice(0, EXPLANATION_OPERATIONS_MAX))
    lines.push(`  ${describe(id)}`);
  if (dead_end.pending.length > EXPLANATION_OPERATIONS_MAX)
    lines.push(`  … and ${dead_end.pending.length - EXPLANATION_OPERATIONS_MAX} more`);
  return lines.join('\n');
}
