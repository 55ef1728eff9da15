/**
 * InstallSnapshot's file access for the driver, over the storage's SnapshotStore: the server and
 * the simulator build the same adapters (the simulator passes `settle` so that callbacks of a
 * process that died are dropped).
 */
import { KvStateMachine } from '../kv/state_machine';
import type { SnapshotPoint } from '../raft/types';
import type { SnapshotStore } from '../storage/snapshot_store';
import { assert } from '../util/assert';
import type { SnapshotChunkSink, SnapshotTransferStorage } from './snapshot_transfer';

export type Settle = (run: () => void) => void;

const now: Settle = (run) => run();

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** Streams files out of and into `store`. */
export function snapshotTransferStorage(
  store: SnapshotStore,
  settle: Settle = now,
): SnapshotTransferStorage {
  return {
    openNewest: (done) =>
      store.openNewestReader().then(
        (reader) =>
          settle(() => {
            if (reader === null) {
              done(null, null);
              return;
            }
            done(null, {
              index: reader.index,
              term: reader.term,
              total_bytes: reader.total_bytes,
              read: (offset, bytes_max, read_done) =>
                reader.read(offset, bytes_max).then(
                  (data) => settle(() => read_done(null, data)),
                  (error: unknown) => settle(() => read_done(asError(error), new Uint8Array())),
                ),
              close: () => void reader.close().catch(() => undefined),
            });
          }),
        (error: unknown) => settle(() => done(asError(error), null)),
      ),
    receive: (point, total_bytes, done) =>
      store.receive(point.index, point.term, total_bytes).then(
        (writer) => {
          const sink: SnapshotChunkSink = {
            write: (offset, data, write_done) =>
              writer.write(offset, data).then(
                () => settle(() => write_done(null)),
                (error: unknown) => settle(() => write_done(asError(error))),
              ),
            finish: (finish_done) =>
              writer.finish().then(
                (meta) => settle(() => finish_done(null, meta.membership)),
                (error: unknown) => settle(() => finish_done(asError(error))),
              ),
            abandon: () => void writer.abandon().catch(() => undefined),
          };
          settle(() => done(null, sink));
        },
        (error: unknown) => settle(() => done(asError(error), null)),
      ),
  };
}

/** Loads a received snapshot file into a new state machine. */
export function snapshotInstaller(
  store: SnapshotStore,
  settle: Settle = now,
): (
  point: SnapshotPoint,
  done: (error: Error | null, state: KvStateMachine | null) => void,
) => void {
  return (point, done) =>
    store.loadPoint(point, KvStateMachine.snapshotParser).then(
      (loaded) =>
        settle(() => {
          assert(
            loaded.state.last_applied === point.index,
            `snapshot ${loaded.file} holds state applied to ${loaded.state.last_applied}, ` +
              `not ${point.index}`,
          );
          done(null, loaded.state);
        }),
      (error: unknown) => settle(() => done(asError(error), null)),
    );
}
