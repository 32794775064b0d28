// Contracts shared by the gateway, the invoker and the CLI.
import { z } from 'zod';

export const NAME_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export const RUNTIMES = ['node20'] as const;

/** The longest timeoutMs a function may have. */
export const MAX_TIMEOUT_MS = 15 * 60_000;

/** An activation id: 32 lowercase hex characters. */
export const ACTIVATION_ID_RE = /^[0-9a-f]{32}$/;

/** kiln.json, as in the contract. Unknown keys are refused so typos are seen. */
export const manifestSchema = z
  .object({
    name: z.string().regex(NAME_RE, 'lowercase letters, digits, - and _, at most 63'),
    runtime: z.enum(RUNTIMES),
    handler: z.string().regex(/^[A-Za-z0-9_./-]+\.[A-Za-z_$][A-Za-z0-9_$]*$/, 'FILE.EXPORT, e.g. index.handler'),
    memoryMB: z.number().int().min(64).max(4096).default(256),
    timeoutMs: z.number().int().min(100).max(MAX_TIMEOUT_MS).default(60_000),
    concurrency: z.number().int().min(1).max(100).default(1),
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).default({}),
    web: z.boolean().default(false),
  })
  .strict();

export type Manifest = z.infer<typeof manifestSchema>;

/** A kiln.json's contents as a Manifest, or what is wrong with them (one line). */
export function checkManifest(json: unknown): Manifest | string {
  const parsed = manifestSchema.safeParse(json);
  if (parsed.success) return parsed.data;
  return parsed.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');
}

/** What the registry keeps for one deployed function. */
export interface FunctionRecord {
  namespace: string;
  name: string;
  version: number;
  digest: string; // sha256 of the code layer tarball
  config: Manifest;
  createdAt: number;
  updatedAt: number;
  versions: { version: number; digest: string; deployedAt: number }[];
}

export type StartKind = 'cold' | 'prewarm' | 'warm' | 'thawed';

export type ActivationStatus =
  | 'queued' | 'running' | 'success' | 'function_error' | 'timeout' | 'out_of_memory'
  | 'resource_limit' | 'system_error';

export const FINAL_STATUSES: ActivationStatus[] = [
  'success', 'function_error', 'timeout', 'out_of_memory', 'resource_limit', 'system_error',
];

export interface ActivationRecord {
  activationId: string;
  namespace: string;
  function: string;
  version: number;
  status: ActivationStatus;
  start?: StartKind;
  queuedAt: number;
  startedAt?: number;
  endedAt?: number;
  waitMs?: number;
  initMs?: number;
  durationMs?: number;
  billedMs?: number;
  memoryMB: number;
  cpuMs?: number;
  peakMemoryBytes?: number;
  invoker?: string;
  attempt?: number; // 1, or more when the event was delivered again after an invoker stopped
  result?: unknown;
  error?: { code: string; message: string; stack?: string };
}

/** The payload of one BullMQ job: everything the invoker needs, pinned at invoke time. */
export interface InvocationJob {
  activationId: string;
  namespace: string;
  function: string;
  version: number;
  digest: string;
  config: Manifest;
  event: unknown;
  queuedAt: number;
  resent?: boolean; // queued again by a caller repeating its activation id
}
