/**
 * @module
 * What the metered Worker counts per Durable Object class (`GET /__meter`); shared by the Worker
 * (`meter.ts`) and the benchmark that reads it (`bench/modes/billing.ts`).
 */
export interface Counters {
  doRequests: number;
  rowsRead: number;
  rowsWritten: number;
  setAlarm: number;
  deleteAll: number;
  /** Calls per method name. */
  methods: Record<string, number>;
  /** Objects with a size reading, and the sum of their latest `databaseSize`. */
  objects: number;
  bytesStored: number;
}

export const emptyCounters = (): Counters => ({
  doRequests: 0,
  rowsRead: 0,
  rowsWritten: 0,
  setAlarm: 0,
  deleteAll: 0,
  methods: {},
  objects: 0,
  bytesStored: 0,
});
