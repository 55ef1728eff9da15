/**
 * Throughput of the Raft frame codec on replication traffic: AppendEntries
 * requests of 100 SET-sized entries, decoded from 64 KiB chunks as a socket
 * would deliver them.
 */
import { FrameDecoder, encodeMessage } from '../src/wire/codec';
import { MessageType, type AppendEntriesRequest, type LogEntry } from '../src/raft/protocol';

const ENTRIES_TOTAL = 1_000_000;
const ENTRIES_PER_MESSAGE = 100;
const CHUNK_BYTES = 64 * 1024;

function buildMessages(): AppendEntriesRequest[] {
  const messages: AppendEntriesRequest[] = [];
  for (let first = 0; first < ENTRIES_TOTAL; first += ENTRIES_PER_MESSAGE) {
    const entries: LogEntry[] = [];
    for (let index = first; index < first + ENTRIES_PER_MESSAGE; index++) {
      // 40 bytes, the size of a small SET command.
      const command =
        `SET key:${String(index).padStart(10, '0')} ` +
        `value:${String(index * 7).padStart(14, '0')}`;
      entries.push({ term: 3, data: new Uint8Array(Buffer.from(command, 'latin1')) });
    }
    messages.push({
      type: MessageType.AppendEntriesRequest,
      term: 3,
      leader_id: 1,
      prev_log_index: first,
      prev_log_term: 3,
      leader_commit: first,
      seq: first / ENTRIES_PER_MESSAGE,
      entries,
    });
  }
  return messages;
}

function elapsedMs(start_ns: bigint): number {
  return Number(process.hrtime.bigint() - start_ns) / 1e6;
}

function encodeAll(messages: AppendEntriesRequest[]): { frames: Buffer[]; elapsed_ms: number } {
  const start_ns = process.hrtime.bigint();
  const frames = messages.map(encodeMessage);
  return { frames, elapsed_ms: elapsedMs(start_ns) };
}

function decodeAll(stream: Buffer): { entries: number; elapsed_ms: number } {
  // Separate buffers per chunk, like socket reads, rather than views of one stream.
  const chunks: Buffer[] = [];
  for (let at = 0; at < stream.length; at += CHUNK_BYTES)
    chunks.push(Buffer.from(stream.subarray(at, at + CHUNK_BYTES)));
  const start_ns = process.hrtime.bigint();
  const decoder = new FrameDecoder();
  let entries = 0;
  for (const chunk of chunks) {
    for (const message of decoder.push(chunk)) {
      if (message.type === MessageType.AppendEntriesRequest) entries += message.entries.length;
    }
  }
  const elapsed_ms = elapsedMs(start_ns);
  if (decoder.buffered_bytes !== 0)
    throw new Error(`${decoder.buffered_bytes} bytes left undecoded`);
  return { entries, elapsed_ms };
}

function rate(count: number, elapsed_ms: number): string {
  return Math.round((count / elapsed_ms) * 1000).toLocaleString('en-US');
}

export function benchWireCodec(): void {
  const messages = buildMessages();
  encodeAll(messages); // warm-up, so the timed pass measures optimised code
  const encoded = encodeAll(messages);
  const stream = Buffer.concat(encoded.frames);
  const megabytes = stream.length / 1e6;
  console.log(
    `wire: encoded ${messages.length} messages (${ENTRIES_TOTAL} entries, ` +
      `${megabytes.toFixed(1)} MB) in ${encoded.elapsed_ms.toFixed(0)} ms ` +
      `(${rate(ENTRIES_TOTAL, encoded.elapsed_ms)} entries/s, ` +
      `${(megabytes / (encoded.elapsed_ms / 1000)).toFixed(0)} MB/s)`,
  );
  decodeAll(stream);
  const decoded = decodeAll(stream);
  if (decoded.entries !== ENTRIES_TOTAL)
    throw new Error(`decoded ${decoded.entries} entries, expected ${ENTRIES_TOTAL}`);
  console.log(
    `wire: decoded ${decoded.entries} entries in ${decoded.elapsed_ms.toFixed(0)} ms ` +
      `(${rate(decoded.entries, decoded.elapsed_ms)} entries/s, ` +
      `${(megabytes / (decoded.elapsed_ms / 1000)).toFixed(0)} MB/s)`,
  );
}

if (require.main === module) benchWireCodec();
