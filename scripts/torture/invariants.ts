/**
 * @module
 * The invariants the checker of a fault-schedule run holds a history to, and what it reports (`checker.ts`).
 */

export const INVARIANTS = {
  codes: 'every status and problem code is one the contract lists; an origin answer has its execution status',
  scope: "an answer carries only an execution of its own scope, key and request (or its own scope's reconciliation)",
  bytes: "an answer read whole is byte-identical to its execution's (or reconciliation's) answer",
  marked: 'only the request that ran an execution gets its answer unmarked; every other answer is Idempotent-Replay: true',
  once: 'at most one origin execution per (scope, key) per period the contract allows one',
  held: 'a key answered origin_response_lost, response_too_large or idempotency_outcome_unknown never runs again until purged or expired',
  'not-stored': 'an answer that frees the key (5xx, 401, 403, 408, 425, 429) is never replayed from storage',
  expiry: "no answer is replayed from storage after its record's expiry",
  purge: 'no answer stored before a purge is replayed after it',
  kept: 'a stored answer is what every identical request gets until it expires or is purged: nothing stored is lost',
  refused: 'a request refused with a code that says nothing ran never reached the origin; idempotency_outcome_unknown only under hold',
  'expires-header': 'answers that free the key carry no Idempotency-Expires; every answer of one stored answer carries the same',
  conflict: 'idempotency_key_reused and idempotency_key_in_progress only when another request of the key could cause them',
} as const;
export type Invariant = keyof typeof INVARIANTS;

export interface Violation {
  readonly invariant: Invariant;
  readonly message: string;
  readonly scope: string;
  readonly key: string;
  /** When the history first shows the violation. */
  readonly time: number;
  /** The ids of the events that show it. */
  readonly events: readonly string[];
}

/** Why a key could run again: what ended the period of the execution before. */
export type Freed = 'status' | 'no-status' | 'cut' | 'kill' | 'purge' | 'expiry' | 'reconcile';

export interface CheckResult {
  readonly violations: Violation[];
  /** How many times each invariant was checked. */
  readonly checked: Record<Invariant, number>;
  /** For each execution after the first of its (scope, key): what freed the key for it. */
  readonly periods: Record<Freed, number>;
}

/** What the checks of one history share: where violations go, how often each invariant was checked. */
export interface Checks {
  fail(invariant: Invariant, pair: { scope: string; key: string }, time: number, ids: string[], message: string): void;
  count(invariant: Invariant): void;
  /** What freed a key for each execution after the first of its (scope, key). */
  readonly periods: Record<Freed, number>;
}

/** Codes of a key that holds an outcome that ran: it never runs again until purged or expired. */
export const HELD = new Set(['origin_response_lost', 'response_too_large', 'idempotency_outcome_unknown']);
