// Values the Vitest global setup hands to the tests (`inject(...)`).
import 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Base URL of the real test origin on 127.0.0.1. */
    originUrl: string;
  }
}
