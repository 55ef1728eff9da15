/** Public surface of src/storage: the durable Raft log. */
export { LOG_FILE_NAME, RaftStorage } from './raft_storage';
export type { OpenResult, RecoveryReport, StorageOptions, StorageStats } from './raft_storage';
export { LOCK_FILE_NAME } from './lock';
export { openWithTestDisk } from './test_disk';
