/** The package's public API: the client library (see README, "Client library"). */
export * from './client';
