/**
 * The configuration as an operator reads it: one summary line for the start-up log, and the fully
 * resolved file (every default filled in) for `--check-config`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NodeConfig } from '../config/config';
import { clusterFingerprint } from '../config/fingerprint';

/** The version in package.json (two levels above dist/src/ops). */
export function packageVersion(): string {
  const text = readFileSync(join(__dirname, '..', '..', '..', 'package.json'), 'utf8');
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed === 'object' && parsed !== null && 'version' in parsed) {
    const version = (parsed as { version: unknown }).version;
    if (typeof version === 'string') return version;
  }
  return 'unknown';
}

export function configSummary(config: NodeConfig): string {
  const self = config.self;
  const peers = config.peers.map((p) => `${p.id}@${p.host}:${p.client_port}`).join(' ');
  const metrics = config.metrics_port === 0 ? 'off' : String(config.metrics_port);
  const which =
    config.join === null
      ? `node ${self.id} of ${config.nodes.length}`
      : `a node that joins the cluster via ${config.join} (id from its node_id file or the leader)`;
  return (
    `starting ${which} (version ${packageVersion()}): ` +
    `client ${self.host}:${self.client_port}, raft ${self.raft_port}, metrics ${metrics}, ` +
    `peers ${peers === '' ? 'none' : peers}, data_dir ${config.data_dir}, ` +
    `tick ${config.tick_ms} ms x election ${config.election_ticks} / ` +
    `heartbeat ${config.heartbeat_ticks}, redirect ${config.client_redirect}`
  );
}

/** Every parameter with its effective value, in the config file's own syntax. */
export function resolvedConfigText(config: NodeConfig): string {
  const lines = [
    `! this node: id ${config.self.id} (ids follow the sorted addresses)`,
    `follower_info ${config.self.host}:${config.self.client_port}`,
    ...config.peers.flatMap((p) => [
      `! peer id ${p.id}`,
      `follower_info ${p.host}:${p.client_port}`,
    ]),
    `data_dir ${config.data_dir}`,
    `client_redirect ${config.client_redirect}`,
    `log_level ${config.log_level}`,
    `log_format ${config.log_format}`,
    `metrics_port ${config.metrics_port}`,
    `ready_lag_entries ${config.ready_lag_entries}`,
    `tick_ms ${config.tick_ms}`,
    `election_ticks ${config.election_ticks}`,
    `heartbeat_ticks ${config.heartbeat_ticks}`,
    `no_leader_timeout_ms ${config.no_leader_timeout_ms}`,
    `request_timeout_ms ${config.request_timeout_ms}`,
    `client_idle_timeout_ms ${config.client_idle_timeout_ms}`,
    config.cluster_name === '' ? '! cluster_name (none)' : `cluster_name ${config.cluster_name}`,
    config.cluster_secret_file === null
      ? '! cluster_secret_file (none: the Raft port is unauthenticated)'
      : `cluster_secret_file ${config.cluster_secret_file}`,
    `! cluster fingerprint ${fingerprintHex(config)}`,
    ...(config.test_faults.length > 0 ? [`test_faults ${config.test_faults.join(',')}`] : []),
    config.client_password_file === null
      ? '! client_password_file (none: clients need no AUTH)'
      : `client_password_file ${config.client_password_file}`,
  ];
  return `${lines.join('\n')}\n`;
}

function fingerprintHex(config: NodeConfig): string {
  return clusterFingerprint(config.nodes, config.cluster_name).toString('hex');
}
