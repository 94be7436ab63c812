/**
 * @module
 * Whether the expiry alarm runs (on bare workerd as anywhere): once the workload has ended, with the runtime still up
 * and no request reading any key, the records on disk that expire within a few seconds are watched until every one
 * has been deleted, as only the alarm can then delete them. Each object is a SQLite file; its record (format 5) is
 * the KV value `record`, V8-serialized.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { deserialize } from 'node:v8';
import { sleep } from '../lib/processes.ts';

/** How late an alarm may run on a loaded machine. */
export const ALARM_SLACK_MS = 5000;
/** Records expiring within this long of the workload's end are watched. */
const WINDOW_MS = 3000;

export interface AlarmReport {
  /** Object files on disk when the workload ended. */
  readonly objects: number;
  /** Records that had expired, or expired within a few seconds, when the workload ended. */
  readonly due: number;
  /** Those still stored `ALARM_SLACK_MS` after their expiry. */
  readonly left: number;
}

interface StoredRecord {
  readonly state: string;
  readonly expires_at: number;
  readonly lease_until: number;
  readonly attempt: string;
}

type Sqlite = typeof import('node:sqlite');

/** Every object file's record: its attempt and when it expires (an in-flight one at its lease's end if later). */
function records(
  { DatabaseSync }: Sqlite,
  storageDir: string,
): { objects: number; records: Map<string, { attempt: string; expiry: number }> } {
  const found = new Map<string, { attempt: string; expiry: number }>();
  let objects = 0;
  for (const namespace of readdirSync(storageDir, { withFileTypes: true })) {
    if (!namespace.isDirectory()) continue;
    for (const name of readdirSync(join(storageDir, namespace.name))) {
      if (!/^[0-9a-f]{64}\.sqlite$/.test(name)) continue;
      objects++;
      const file = join(storageDir, namespace.name, name);
      try {
        const db = new DatabaseSync(file, { readOnly: true, timeout: 1000 });
        try {
          if (db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_cf_KV'`).get() === undefined) continue;
          const row = db.prepare(`SELECT value FROM _cf_KV WHERE key = 'record'`).get() as { value: Uint8Array } | undefined;
          if (row === undefined) continue;
          const record = deserialize(row.value) as StoredRecord;
          const expiry = record.state === 'in_flight' ? Math.max(record.expires_at, record.lease_until) : record.expires_at;
          found.set(file, { attempt: record.attempt, expiry });
        } finally {
          db.close();
        }
      } catch {
        // The runtime is rewriting the file (its deleteAll()): read again next time.
      }
    }
  }
  return { objects, records: found };
}

/** Watches the records due to expire until the alarm has deleted them; see the module description. */
export async function watchAlarms(storageDir: string): Promise<AlarmReport> {
  // Loaded here: Node 22 warns that node:sqlite is experimental, which a run that only checks a history need not say.
  const sqlite = await import('node:sqlite');
  const start = Date.now();
  const first = records(sqlite, storageDir);
  let left = [...first.records].filter(([, record]) => record.expiry <= start + WINDOW_MS);
  const due = left.length;
  const deadline = Math.max(start, ...left.map(([, record]) => record.expiry)) + ALARM_SLACK_MS;
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(100);
    const now = records(sqlite, storageDir).records;
    left = left.filter(([file, record]) => now.get(file)?.attempt === record.attempt);
  }
  return { objects: first.objects, due, left: left.length };
}
