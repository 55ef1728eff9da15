import { splitInlineArgs } from '../resp/request_parser';

/**
 * Splits a typed command line into arguments with redis-cli's quoting rules,
 * which are also the server's for inline commands (sdssplitargs): the one
 * implementation lives in the RESP parser. Returns null for unbalanced quotes
 * (redis-cli says "Invalid argument(s)").
 */
export function splitCommandLine(line: string): Buffer[] | null {
  return splitInlineArgs(Buffer.from(line, 'utf8'));
}
