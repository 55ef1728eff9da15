/**
 * Per-request metrics on the hot path: replies by command and result, and a
 * latency histogram per command, kept in flat typed arrays indexed by small
 * integers. prom-client's labelled counters and histograms hash their label
 * set on every observation (several microseconds per request, a 30-60% loss
 * of GET throughput in bench:throughput); this costs a few array writes. The
 * exposition text for these three families is written here, at scrape time,
 * in the same format prom-client writes.
 */

const COMMANDS = ['get', 'set', 'del', 'ping', 'info', 'quit', 'command', 'other'] as const;
const OTHER_COMMAND = COMMANDS.length - 1;
/** Error replies are labelled by their first word when known, else `error`. */
const RESULTS = [
  'ok',
  'err',
  'tryagain',
  'timeout',
  'clusterdown',
  'moved',
  'wrongtype',
  'error',
] as const;
const RESULT_OK = 0;
const RESULT_MOVED = RESULTS.indexOf('moved');
const RESULT_ERROR = RESULTS.length - 1;
const RESULT_BY_CODE = new Map<string, number>(
  RESULTS.map((result, index): [string, number] => [result, index]).slice(1),
);
/** Longer first words of an error reply are not a known code: stop reading there. */
const ERROR_CODE_BYTES_MAX = 16;
const DASH = 0x2d;

export const REQUEST_LATENCY_BUCKETS_SECONDS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
const BUCKETS = REQUEST_LATENCY_BUCKETS_SECONDS.length;

/**
 * performance.now() read at most once per run of synchronous code: every command parsed from one
 * socket chunk shares the chunk's arrival time, every reply settled in one microtask checkpoint
 * shares its time. A clock read costs 0.1-0.2 µs on a busy VM; a pipelined batch pays it once.
 */
export class TurnClock {
  private value_ms = 0;
  private valid = false;
  private readonly invalidate = (): void => {
    this.valid = false;
  };

  now_ms(): number {
    if (this.valid) return this.value_ms;
    this.value_ms = performance.now();
    this.valid = true;
    queueMicrotask(this.invalidate);
    return this.value_ms;
  }
}

export class RequestStats {
  private readonly replies = new Float64Array(COMMANDS.length * RESULTS.length);
  /** Per command: BUCKETS non-cumulative bucket counts then one overflow (+Inf) slot. */
  private readonly buckets = new Float64Array(COMMANDS.length * (BUCKETS + 1));
  private readonly sums_seconds = new Float64Array(COMMANDS.length);

  observe(name: Buffer | undefined, reply: Buffer, seconds: number): void {
    const command = commandIndex(name);
    this.replies[command * RESULTS.length + resultIndex(reply)]! += 1;
    let bucket = 0;
    while (bucket < BUCKETS && seconds > REQUEST_LATENCY_BUCKETS_SECONDS[bucket]!) bucket++;
    this.buckets[command * (BUCKETS + 1) + bucket]! += 1;
    this.sums_seconds[command]! += seconds;
  }

  /** Prometheus text for kvstore_commands_total, _requests_redirected_total, _request_duration. */
  render(): string {
    const lines = [
      '# HELP kvstore_commands_total Client commands answered, by command and result.',
      '# TYPE kvstore_commands_total counter',
    ];
    let redirected = 0;
    COMMANDS.forEach((command, c) => {
      RESULTS.forEach((result, r) => {
        const count = this.replies[c * RESULTS.length + r] ?? 0;
        if (r === RESULT_MOVED) redirected += count;
        if (count > 0)
          lines.push(`kvstore_commands_total{command="${command}",result="${result}"} ${count}`);
      });
    });
    lines.push(
      '',
      '# HELP kvstore_requests_redirected_total Client requests answered with -MOVED.',
      '# TYPE kvstore_requests_redirected_total counter',
      `kvstore_requests_redirected_total ${redirected}`,
      '',
      ...this.renderLatency(),
    );
    return `${lines.join('\n')}\n`;
  }

  private renderLatency(): string[] {
    const name = 'kvstore_request_duration_seconds';
    const lines = [
      `# HELP ${name} Time from a parsed client command to its reply being ready.`,
      `# TYPE ${name} histogram`,
    ];
    COMMANDS.forEach((command, c) => {
      const base = c * (BUCKETS + 1);
      let cumulative = 0;
      const bucket_lines: string[] = [];
      REQUEST_LATENCY_BUCKETS_SECONDS.forEach((bound, b) => {
        cumulative += this.buckets[base + b] ?? 0;
        bucket_lines.push(`${name}_bucket{le="${bound}",command="${command}"} ${cumulative}`);
      });
      cumulative += this.buckets[base + BUCKETS] ?? 0;
      if (cumulative === 0) return;
      lines.push(
        ...bucket_lines,
        `${name}_bucket{le="+Inf",command="${command}"} ${cumulative}`,
        `${name}_sum{command="${command}"} ${this.sums_seconds[c] ?? 0}`,
        `${name}_count{command="${command}"} ${cumulative}`,
      );
    });
    return lines;
  }
}

/** Index into COMMANDS without allocating for the common three-letter commands. */
function commandIndex(name: Buffer | undefined): number {
  if (name === undefined || name.length > 7) return OTHER_COMMAND;
  if (name.length === 3) {
    const a = name[0]! | 0x20;
    const b = name[1]! | 0x20;
    const c = name[2]! | 0x20;
    if (a === 0x67 && b === 0x65 && c === 0x74) return 0; // get
    if (a === 0x73 && b === 0x65 && c === 0x74) return 1; // set
    if (a === 0x64 && b === 0x65 && c === 0x6c) return 2; // del
    return OTHER_COMMAND;
  }
  const index = COMMANDS.indexOf(name.toString('latin1').toLowerCase() as (typeof COMMANDS)[0]);
  return index < 0 ? OTHER_COMMAND : index;
}

function resultIndex(reply: Buffer): number {
  if (reply[0] !== DASH) return RESULT_OK;
  let end = 1;
  while (end < reply.length && end < ERROR_CODE_BYTES_MAX) {
    const byte = reply[end]!;
    if (byte === 0x20 || byte === 0x0d || byte === 0x0a) break;
    end++;
  }
  return RESULT_BY_CODE.get(reply.toString('latin1', 1, end).toLowerCase()) ?? RESULT_ERROR;
}
