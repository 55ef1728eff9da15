/**
 * The operations listener (`metrics_port`): plain HTTP, GET only.
 * - `/metrics`: Prometheus text exposition.
 * - `/health`: 200 while the process runs and its event loop keeps up (lag
 *   under `health_event_loop_lag_ms_max`), else 503. A liveness probe.
 * - `/ready`: 200 when a leader is known and this node's applied index is
 *   within `ready_lag_entries` of the commit index the leader announced, else
 *   503 (no quorum, election running, catching up). A readiness probe: a
 *   load balancer should not send clients to a node that cannot serve them.
 * Bodies are one small JSON object saying why.
 */
import * as http from 'node:http';
import { NO_NODE } from '../raft/types';
import type { InfoInputs } from '../server/info';
import { boundPort, listen } from '../server/listen';
import { LIMITS } from '../util/limits';
import type { Logger } from '../util/log';
import { METRICS_CONTENT_TYPE, type NodeMetrics } from './metrics';

/** How often the event loop's punctuality is sampled for /health. */
const LAG_SAMPLE_INTERVAL_MS = 250;
const REQUEST_TIMEOUT_MS = 5_000;

export interface Readiness {
  ready: boolean;
  reason: string;
  leader_id: number;
  commit_index: number;
  applied_index: number;
}

/** The /ready rule, pure so that tests and INFO can share it. */
export function readiness(inputs: InfoInputs | null, lag_entries_max: number): Readiness {
  if (inputs === null)
    return { ready: false, reason: 'starting', leader_id: 0, commit_index: 0, applied_index: 0 };
  const { status, last_applied } = inputs;
  const base = {
    leader_id: status.leader_id === NO_NODE ? 0 : status.leader_id,
    commit_index: status.commit_index,
    applied_index: last_applied,
  };
  if (status.leader_id === NO_NODE) return { ready: false, reason: 'no leader known', ...base };
  const lag = status.commit_index - last_applied;
  if (lag > lag_entries_max)
    return { ready: false, reason: `applied index ${lag} entries behind commit`, ...base };
  return { ready: true, reason: 'ok', ...base };
}

export interface OpsHttpOptions {
  host: string;
  port: number;
  logger: Logger;
  metrics: NodeMetrics;
  snapshot: () => InfoInputs | null;
  ready_lag_entries: number;
}

export class OpsHttpServer {
  private readonly options: OpsHttpOptions;
  private readonly server: http.Server;
  private lag_timer: NodeJS.Timeout | null = null;
  private event_loop_lag_ms = 0;

  constructor(options: OpsHttpOptions) {
    this.options = options;
    this.server = http.createServer(
      { maxHeaderSize: LIMITS.metrics_request_bytes_max, requestTimeout: REQUEST_TIMEOUT_MS },
      (request, response) => this.handle(request, response),
    );
    this.server.maxConnections = LIMITS.metrics_connections_max;
    this.server.keepAliveTimeout = REQUEST_TIMEOUT_MS;
  }

  get bound_port(): number {
    return boundPort(this.server);
  }

  async start(): Promise<void> {
    const { host, port, logger } = this.options;
    await listen(this.server, host, port, (error) =>
      logger.error(`metrics listener error: ${error.message}`),
    );
    this.sampleLag(performance.now());
    logger.info(`metrics, /health and /ready on http://${host}:${this.bound_port}`);
  }

  close(): Promise<void> {
    if (this.lag_timer !== null) clearTimeout(this.lag_timer);
    this.lag_timer = null;
    if (!this.server.listening) return Promise.resolve();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** A timer that fires late by N ms means the event loop was blocked for about N ms. */
  private sampleLag(scheduled_ms: number): void {
    this.lag_timer = setTimeout(() => {
      const now = performance.now();
      this.event_loop_lag_ms = Math.max(0, now - scheduled_ms - LAG_SAMPLE_INTERVAL_MS);
      this.sampleLag(now);
    }, LAG_SAMPLE_INTERVAL_MS);
    this.lag_timer.unref();
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      reply(response, 405, 'text/plain', 'only GET\n');
      return;
    }
    if (path === '/metrics') {
      this.options.metrics.scrape().then(
        (text) => reply(response, 200, METRICS_CONTENT_TYPE, text),
        (error: Error) => reply(response, 500, 'text/plain', `${error.message}\n`),
      );
    } else if (path === '/health') {
      const lag_ms = Math.round(this.event_loop_lag_ms);
      const healthy = lag_ms <= LIMITS.health_event_loop_lag_ms_max;
      const body = { healthy, event_loop_lag_ms: lag_ms };
      reply(response, healthy ? 200 : 503, 'application/json', `${JSON.stringify(body)}\n`);
    } else if (path === '/ready') {
      const state = readiness(this.options.snapshot(), this.options.ready_lag_entries);
      reply(response, state.ready ? 200 : 503, 'application/json', `${JSON.stringify(state)}\n`);
    } else {
      reply(response, 404, 'text/plain', 'try /metrics, /health or /ready\n');
    }
  }
}

function reply(
  response: http.ServerResponse,
  status: number,
  content_type: string,
  body: string,
): void {
  response.writeHead(status, {
    'content-type': content_type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  response.end(body);
}
