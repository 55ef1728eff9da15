/** The typed client library for the cluster's RESP interface. */
export {
  KvClient,
  parseInfo,
  type CallOptions,
  type KvClientOptions,
  type KvClientStats,
} from './kv_client';
export {
  KvClientError,
  ConnectionError,
  TimeoutError,
  OutcomeUnknownError,
  NoLeaderError,
  ServerError,
  QueueFullError,
  ClientClosedError,
  InvalidArgumentError,
  ProtocolError,
  type ClientErrorCode,
  type OutcomeUnknownReason,
} from './errors';
export { parseHostPort, formatHostPort, type HostPort } from '../util/address';
export {
  encodeCommand,
  ReplyParser,
  type Reply,
  type ReplyParserOptions,
} from '../resp/client_codec';
