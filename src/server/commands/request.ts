import type { KvCommand } from '../../kv/command_codec';
import type { KvStateMachine } from '../../kv/state_machine';
import type { RedisValue, RespVersion } from '../../resp/redis_value';

/**
 * A Redis-view request the node serves like SET/GET: writes through the log (the command is
 * built with the leader's stamp when it is proposed), reads through ReadIndex.
 */
export type RedisRequest =
  | {
      kind: 'redis_write';
      make: (stamp_ms: number) => KvCommand;
      resp: RespVersion;
      /** The first key's cluster slot, for `-MOVED`. */
      slot: number;
    }
  | {
      kind: 'redis_read';
      run: (state: KvStateMachine, now_ms: number) => RedisValue;
      resp: RespVersion;
      slot: number;
    };
