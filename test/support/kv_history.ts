/**
 * One client call of a checked history, classified as every history test must: a reply is an
 * output; a write whose outcome the client cannot know (OutcomeUnknownError) may have taken
 * effect at any time after its call, so it stays in the history as `unknown` (return time
 * +infinity); any other client error, and a read without an answer, certainly changed nothing
 * and is left out of the history.
 */
import { type KvClient, KvClientError, OutcomeUnknownError } from '../../src/client';
import type { KvInput, KvOutput } from '../sim/linearizability';

export type KvCallOutcome =
  | { kind: 'ok'; output: KvOutput }
  | { kind: 'unknown'; output: KvOutput }
  | { kind: 'failed'; error: KvClientError };

/** Runs `input` on `client`; errors other than the client's own are rethrown. */
export async function callKv(client: KvClient, input: KvInput): Promise<KvCallOutcome> {
  try {
    if (input.kind === 'get') {
      const words = await client.get(input.key);
      return {
        kind: 'ok',
        output: { kind: 'get', value: words === null ? null : words.join(' ') },
      };
    }
    if (input.kind === 'set') {
      await client.set(input.key, input.value);
      return { kind: 'ok', output: { kind: 'set' } };
    }
    return { kind: 'ok', output: { kind: 'del', count: await client.del(input.key) } };
  } catch (error) {
    if (!(error instanceof KvClientError)) throw error;
    if (error instanceof OutcomeUnknownError && input.kind !== 'get')
      return { kind: 'unknown', output: { kind: 'unknown' } };
    return { kind: 'failed', error };
  }
}
