/**
 * Vitest global setup: starts the real test origin once for the whole run and hands its URL to the
 * workerd tests (`inject('originUrl')`).
 */
import type { TestProject } from 'vitest/node';
import { startTestOrigin } from './server';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const origin = await startTestOrigin();
  project.provide('originUrl', origin.url);
  return () => origin.close();
}
