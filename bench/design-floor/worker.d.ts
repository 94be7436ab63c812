// Types for the design floor (worker.js), for the metered Worker that imports it (bench/metered/).
import { DurableObject } from 'cloudflare:workers';

export declare class KeyRecord extends DurableObject {
  run(request: {
    method: string;
    url: string;
    headers: [string, string][];
    body: ArrayBuffer;
  }): Promise<{ status: number; body: ArrayBuffer | null; replayed: boolean }>;
  alarm(): Promise<void>;
}

declare const worker: { fetch(request: Request, env: { ORIGIN_URL: string; KEYS: DurableObjectNamespace<KeyRecord> }): Promise<Response> };
export default worker;
