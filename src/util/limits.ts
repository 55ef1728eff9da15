import { assert } from './assert';

/**
 * Every bound the system enforces lives here, so that a reader can see in one
 * place how much memory, time and bandwidth a node may use. Exceeding one is a
 * typed error (see errors.ts), never an out-of-memory crash.
 *
 * Relations between the limits are asserted when this module loads
 * (checkLimitRelations below). Those that also depend on a byte layout are
 * asserted where the layout lives, when that module loads: a largest
 * AppendEntries fits a frame (wire/codec.ts checkFrameLimits) and a largest
 * Ready's save fits a WAL record (storage/payload.ts checkSaveLimits).
 */
export const LIMITS = {
  /** Largest Raft frame payload a peer may send us (the seed's frames, any type). */
  raft_frame_payload_bytes_max: 64 * 1024 * 1024,
  /** Largest single RESP bulk string a client may send (Redis's proto-max-bulk-len). */
  resp_bulk_bytes_max: 512 * 1024 * 1024,
  /** Most elements in one RESP request array. */
  resp_array_elements_max: 1024 * 1024,
  /** Longest inline command line or RESP header line before the CRLF. */
  resp_inline_bytes_max: 64 * 1024,
  /** Bytes of unparsed client input buffered per connection before it is closed. */
  client_read_buffer_bytes_max: 512 * 1024 * 1024 + 64 * 1024,
  /** Requests from one client connection in flight (parsed, not yet replied). */
  client_pipeline_requests_max: 16 * 1024,
  /**
   * Client commands (all connections together) handed to the handler in one event-loop turn; the
   * rest wait for the next turn (reading those connections paused meanwhile), so that a large
   * pipelined burst (one poll can deliver megabytes of one socket) never holds the timers that
   * keep heartbeats and elections on time.
   */
  client_commands_per_turn_max: 2048,
  /** Bytes queued for writing to one client before we stop reading from it. */
  client_write_queue_bytes_max: 64 * 1024 * 1024,
  /** Bytes queued for one peer link; beyond it messages to that peer are dropped (Raft retries). */
  peer_write_queue_bytes_max: 64 * 1024 * 1024,
  /** Raft: data bytes of one proposed entry (must stay below the frame payload limit). */
  raft_entry_bytes_max: 32 * 1024 * 1024,
  /**
   * Raft: payload bytes of entries in one AppendEntries message (a single larger entry still goes
   * alone).
   */
  raft_message_entries_bytes_max: 1024 * 1024,
  /** Raft: entries in one AppendEntries message. */
  raft_message_entries_max: 4096,
  /** Raft: AppendEntries messages in flight to one follower. */
  raft_inflight_messages_max: 64,
  /** Raft: bytes of proposed-but-uncommitted entry data a leader accepts. */
  raft_uncommitted_bytes_max: 64 * 1024 * 1024,
  /**
   * Raft: committed entries handed to the state machine per Ready; at most
   * driver_readies_per_turn_max Readies run per event-loop turn, so this times that bounds the
   * entries applied (and client replies completed) in one turn: 8 x 8192 of them stalled a loaded
   * leader past the election timeout under a 100k-command pipeline.
   */
  raft_committed_entries_per_ready_max: 1024,
  /**
   * Raft: highest term a frame may carry and a node may campaign in. Terms above it are refused as
   * malformed, leaving 2^20 terms of headroom below INT32_MAX so that no increment can overflow the
   * int32 wire field; a real cluster would need two billion elections to get here.
   */
  raft_term_max: 2 ** 31 - 2 ** 20,
  /** Peer handshake: bytes buffered from a peer before its handshake completes. */
  peer_handshake_bytes_max: 4 * 1024,
  /** Peer handshake: time a connection has to complete the authenticated handshake. */
  peer_handshake_timeout_ms: 2_000,
  /** Peer handshake: bytes of the member list a peer may describe itself with (for log lines). */
  peer_members_text_bytes_max: 2 * 1024,
  /**
   * Peers whose incarnation a node remembers (data_dir/peer_incarnations): every node it ever
   * completed a handshake with, removed ones included; beyond it a new peer is refused.
   */
  peer_incarnations_max: 1024,
  /** Cluster secret file: shortest secret accepted (a guessable secret protects nothing). */
  cluster_secret_bytes_min: 16,
  /** Cluster secret file: largest file read. */
  cluster_secret_bytes_max: 4 * 1024,
  /** Raft: log entries handed out for persistence in one Ready (one WAL record). */
  raft_ready_entries_max: 8192,
  /**
   * Raft: data bytes of those entries; a single larger entry still goes alone, so a Ready passes it
   * by at most one entry (that such a save fits wal_record_bytes_max is checked in payload.ts).
   */
  raft_ready_entries_bytes_max: 64 * 1024 * 1024,
  /** Readies a driver carries out back to back before yielding to the event loop. */
  driver_readies_per_turn_max: 8,
  /** Raft: read requests waiting for leadership confirmation. */
  raft_pending_reads_max: 64 * 1024,
  /**
   * InstallSnapshot: data bytes per chunk. Small enough that a chunk never holds up the
   * heartbeats and AppendEntries queued behind it on the same link for long.
   */
  snapshot_chunk_bytes_max: 256 * 1024,
  /** InstallSnapshot: chunks sent and not yet acknowledged, per follower. */
  snapshot_chunks_in_flight_max: 4,
  /**
   * InstallSnapshot: unacknowledged chunk bytes to all followers together (the transfers' own
   * budget, apart from the per-peer write queue that AppendEntries use).
   */
  snapshot_send_bytes_total_max: 4 * 1024 * 1024,
  /** Largest snapshot file a follower accepts (a chunk claiming a larger total is malformed). */
  snapshot_install_bytes_max: 64 * 1024 * 1024 * 1024,
  /**
   * Ticks without an answer after which a leader resends a transfer from the last acknowledged
   * offset (a lost chunk or a reconnect).
   */
  snapshot_stall_ticks: 10,
  /**
   * Fresh snapshots a leader takes because its snapshot file was found damaged, before a file
   * reads back intact; past it the leader logs that it gives up (the disk is failing).
   */
  snapshot_damaged_retakes_max: 3,
  /** Config file size. */
  config_file_bytes_max: 1024 * 1024,
  /** Largest cluster (members of one configuration, learners included). */
  cluster_nodes_max: 64,
  /** Bytes of one member's address in a membership entry (host:port). */
  membership_address_bytes_max: 256,
  /**
   * The leader promotes a learner to voter once its log is within this many entries of the
   * leader's: close enough that it will not hold up commits once it counts (a few Readies of
   * writes under load), far enough that a steady write load cannot keep it a learner forever.
   */
  learner_promotion_lag_entries_max: 1000,
  /** `join`: how long a new node keeps asking the cluster to add it before it gives up. */
  join_wait_ms_max: 120_000,
  /** `join`: the longest pause between two attempts (backoff from 100 ms). */
  join_retry_delay_ms_max: 5_000,
  /** Deepest nesting of arrays in one RESP reply a client parser accepts. */
  resp_reply_nesting_depth_max: 64,
  /**
   * KvClient: calls accepted but not yet settled (queued, in flight or backing off); more is
   * EQUEUEFULL.
   */
  kv_client_pending_calls_max: 10_000,
  /** KvClient: addresses remembered from the configured list plus MOVED targets. */
  kv_client_nodes_max: 64,
  /** kvcli: lines kept in the interactive history and its file. */
  kvcli_history_lines_max: 1000,
  /** kvcli: bytes of one input line (a command). */
  kvcli_line_bytes_max: 16 * 1024 * 1024,
  /**
   * Inbound Raft connections open at once (PEER_INBOUND_CONNECTIONS_PER_PEER per possible peer:
   * reconnect races briefly need more than one).
   */
  peer_inbound_connections_max: 4 * 64,
  /** Client connections open at once; beyond it a new client gets an error and is closed. */
  client_connections_max: 10_000,
  /**
   * Process-wide: bytes of unparsed client input (partial requests) across all connections; the
   * connection whose input takes the total past it gets an error and is closed.
   */
  client_input_bytes_total_max: 256 * 1024 * 1024,
  /**
   * Process-wide: reply bytes reserved (estimated before the command runs), waiting or queued for
   * writing, across all connections; beyond it connections stop taking commands until bytes drain.
   */
  client_reply_bytes_total_max: 256 * 1024 * 1024,
  /**
   * Connections that have not yet sent one full command; a new connection beyond it closes the
   * oldest such connection (a slow or silent client cannot lock others out).
   */
  client_connections_before_first_command_max: 1024,
  /**
   * Process-wide: bytes buffered for incomplete inbound Raft frames across all peer connections;
   * the connection whose frame takes the total past it is closed.
   */
  peer_inbound_frame_bytes_total_max: 192 * 1024 * 1024,
  /**
   * WAL: bytes of one record (one save: hard state + entries); a header claiming more is damage, a
   * bigger save is refused.
   */
  wal_record_bytes_max: 128 * 1024 * 1024,
  /**
   * WAL: encoded bytes of saves queued behind the running write/fsync; beyond it save() is refused.
   */
  wal_queued_bytes_max: 256 * 1024 * 1024,
  /**
   * WAL: bytes handed to one write() call; a larger batch is written in several calls, then fsync'd
   * once.
   */
  wal_write_bytes_max: 16 * 1024 * 1024,
  /** WAL: bytes read per read() call while replaying the log at startup. */
  wal_replay_chunk_bytes: 1024 * 1024,
  /**
   * Links a follower keeps to the leader's client port; each client connection uses one (by its
   * id), so clients on different links never wait behind each other's requests.
   */
  forward_links_per_leader_max: 16,
  /**
   * Replies from the leader a follower's forwarding links take in one event-loop turn (together);
   * past it they stop reading until the next turn, like client_commands_per_turn_max.
   */
  forward_replies_per_turn_max: 2048,
  /** Requests a follower has relayed to the leader and not yet had answered, per leader link. */
  forward_pending_requests_max: 64 * 1024,
  /**
   * Client requests waiting for a leader to become known (each waits at most no_leader_timeout_ms).
   */
  leader_waiters_max: 64 * 1024,
  /** Distinct log lines remembered for repeat suppression (older ones are forgotten). */
  log_repeat_keys_max: 1024,
  /** Bytes of one HTTP request (line and headers) the metrics listener reads before closing. */
  metrics_request_bytes_max: 16 * 1024,
  /** Connections the metrics listener keeps open at once. */
  metrics_connections_max: 64,
  /** Event-loop lag beyond which /health answers 503 (the node cannot keep its timers). */
  health_event_loop_lag_ms_max: 1_000,
  /**
   * Redis view: deletion indices remembered for WATCH (older ones are forgotten, and a WATCH
   * older than the oldest forgotten one then aborts conservatively).
   */
  watch_tombstones_max: 64 * 1024,
  /**
   * Snapshots: keys collected or moved by the sort in one step of taking a snapshot (the state
   * machine keeps applying between steps; one step of this size takes a few ms).
   */
  snapshot_step_keys_max: 16 * 1024,
  /** Snapshots: bytes of the state machine encoded in one step, then written to the file. */
  snapshot_encode_chunk_bytes: 256 * 1024,
  /**
   * In-memory Raft log: entry data is copied into shared blocks of this size (one allocation per
   * block, not per entry); a block is freed once no retained entry lies in it.
   */
  log_block_bytes: 256 * 1024,
  /** In-memory Raft log: an entry larger than this gets its own copy instead of block space. */
  log_block_entry_bytes_max: 32 * 1024,
  /**
   * V8's old generation may grow to (1 + this/100) x the heap that survived the last full
   * collection before the next one (set at start, src/main.ts). V8's own choice on this machine
   * reaches ~2.2x for a node holding 1M keys (~250 MB live: peak RSS 780-860 MB); 30 % keeps the
   * peak under 500 MB for a few more full collections (measured in the README).
   */
  heap_growing_percent: 30,
  /** Redis view: keys KEYS may scan in one call (beyond it: an error pointing at SCAN). */
  keys_scan_keys_max: 1024 * 1024,
  /** Redis view: SCAN cursors (key lists taken at SCAN 0) a node keeps; the oldest goes first. */
  scan_cursors_max: 64,
  /** Redis view: largest SCAN COUNT honoured in one call. */
  scan_count_max: 10_000,
  /** Redis view: commands queued in one MULTI. */
  multi_queued_commands_max: 10_000,
  /** Expiry: keys with a deadline the leader examines per sweep, and deletes per EXPIRE entry. */
  expire_sweep_keys_max: 1_000,
} as const;

export type Limits = typeof LIMITS;

/** Inbound connections one peer may briefly hold open while it reconnects. */
export const PEER_INBOUND_CONNECTIONS_PER_PEER = 4;

/** Asserts the relations between limits that need no byte layout; runs when this module loads. */
export function checkLimitRelations(limits: Limits): void {
  // A client may send one largest bulk string behind its header line; both must fit the buffer.
  assert(
    limits.client_read_buffer_bytes_max >=
      limits.resp_bulk_bytes_max + limits.resp_inline_bytes_max,
    `client_read_buffer_bytes_max ${limits.client_read_buffer_bytes_max} holds a largest bulk ` +
      `(${limits.resp_bulk_bytes_max}) and a header line (${limits.resp_inline_bytes_max})`,
  );
  // One largest bulk request fits the process-wide input budget, one largest frame the peer one.
  assert(
    limits.client_input_bytes_total_max >=
      limits.raft_entry_bytes_max + limits.resp_inline_bytes_max,
    'client_input_bytes_total_max holds a largest proposable value and its header',
  );
  assert(
    limits.peer_incarnations_max >= 4 * limits.cluster_nodes_max,
    'peer_incarnations_max remembers a full cluster and the nodes it replaced several times over',
  );
  assert(
    limits.peer_inbound_frame_bytes_total_max >= 2 * limits.raft_frame_payload_bytes_max,
    'peer_inbound_frame_bytes_total_max holds two largest frames',
  );
  // Every other node of a largest cluster may be reconnecting to us at once.
  const inbound_needed = PEER_INBOUND_CONNECTIONS_PER_PEER * (limits.cluster_nodes_max - 1);
  assert(
    limits.peer_inbound_connections_max >= inbound_needed,
    `peer_inbound_connections_max ${limits.peer_inbound_connections_max} >= ` +
      `${PEER_INBOUND_CONNECTIONS_PER_PEER} per peer of a ${limits.cluster_nodes_max}-node cluster`,
  );
  assert(
    limits.snapshot_send_bytes_total_max >=
      limits.snapshot_chunk_bytes_max * limits.snapshot_chunks_in_flight_max,
    "snapshot_send_bytes_total_max holds one follower's window of chunks",
  );
  // An entry small enough for a log block fits an empty one.
  assert(
    limits.log_block_entry_bytes_max <= limits.log_block_bytes,
    'log_block_entry_bytes_max fits in log_block_bytes',
  );
  // A follower never has to split one AppendEntries across Readies.
  assert(
    limits.raft_ready_entries_max >= limits.raft_message_entries_max &&
      limits.raft_ready_entries_bytes_max >= limits.raft_message_entries_bytes_max,
    'one Ready holds the entries of one AppendEntries (raft_ready_entries_* >= ' +
      'raft_message_entries_*)',
  );
}

checkLimitRelations(LIMITS);
