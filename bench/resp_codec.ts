/**
 * Throughput of the server-side RESP codec: parsing pipelined SET requests
 * as they would arrive in 64 KiB socket reads, and encoding GET replies.
 */
import { performance } from 'node:perf_hooks';
import { RequestParser } from '../src/resp/request_parser';
import { encodeBulkArray } from '../src/resp/reply';

const COMMAND_COUNT = 1_000_000;
const CHUNK_BYTES = 64 * 1024;

function buildSetRequests(count: number): Buffer {
  const pieces: string[] = [];
  for (let index = 0; index < count; index++) {
    const key = `key:${index}`;
    const value = `value-${index}`;
    pieces.push(`*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${value.length}\r\n${value}\r\n`);
  }
  return Buffer.from(pieces.join(''), 'latin1');
}

function formatRate(per_second: number): string {
  return Math.round(per_second).toLocaleString('en-US');
}

function benchParse(): void {
  const input = buildSetRequests(COMMAND_COUNT);
  const parser = new RequestParser();
  let parsed = 0;
  const started_ms = performance.now();
  for (let start = 0; start < input.length; start += CHUNK_BYTES) {
    const batch = parser.push(input.subarray(start, start + CHUNK_BYTES));
    if (batch.error !== null) throw batch.error;
    parsed += batch.commands.length;
  }
  const elapsed_ms = performance.now() - started_ms;
  if (parsed !== COMMAND_COUNT)
    throw new Error(`parsed ${parsed} commands, expected ${COMMAND_COUNT}`);
  const seconds = elapsed_ms / 1000;
  console.log(
    `resp: parsed ${parsed} SET commands in ${elapsed_ms.toFixed(0)} ms ` +
      `(${formatRate(parsed / seconds)} commands/s, ` +
      `${(input.length / 1e6 / seconds).toFixed(1)} MB/s)`,
  );
}

function benchEncode(): void {
  const values: Buffer[] = [];
  for (let index = 0; index < COMMAND_COUNT; index++)
    values.push(Buffer.from(`value-${index}`, 'latin1'));
  let encoded_bytes = 0;
  const started_ms = performance.now();
  for (const value of values) encoded_bytes += encodeBulkArray([value]).length;
  const elapsed_ms = performance.now() - started_ms;
  const seconds = elapsed_ms / 1000;
  console.log(
    `resp: encoded ${COMMAND_COUNT} GET replies in ${elapsed_ms.toFixed(0)} ms ` +
      `(${formatRate(COMMAND_COUNT / seconds)} replies/s, ` +
      `${(encoded_bytes / 1e6 / seconds).toFixed(1)} MB/s)`,
  );
}

export function benchRespCodec(): void {
  benchParse();
  benchEncode();
}

if (require.main === module) benchRespCodec();
