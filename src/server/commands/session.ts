import type { ClientProtocol } from '../../config/config';
import type { RespVersion } from '../../resp/redis_value';

/** What a client connection has chosen or started: its view, protocol, name, transaction. */
export interface Session {
  view: ClientProtocol;
  resp: RespVersion;
  name: string;
  lib_name: string;
  lib_ver: string;
  /** Commands queued since MULTI; null outside MULTI. */
  multi: Buffer[][] | null;
  /** A command was refused while queueing: EXEC replies EXECABORT. */
  multi_refused: boolean;
  /** WATCH: the applied index read at the first WATCH, and every watched key. */
  watch: { index: number; keys: Buffer[] } | null;
  created_ms: number;
  last_command: string;
}

export function newSession(view: ClientProtocol): Session {
  return {
    view,
    resp: 2,
    name: '',
    lib_name: '',
    lib_ver: '',
    multi: null,
    multi_refused: false,
    watch: null,
    created_ms: Date.now(),
    last_command: '',
  };
}
