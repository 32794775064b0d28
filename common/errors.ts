// The error taxonomy of the API: each code has one HTTP status, mapped in one place (the gateway).
export type ErrorCode =
  | 'bad_request' | 'unauthorized' | 'forbidden' | 'not_found' | 'payload_too_large'
  | 'conflict' | 'rate_limited' | 'function_error' | 'out_of_memory' | 'resource_limit' | 'timeout'
  | 'unavailable' | 'system_error';

export const STATUS_OF: Record<ErrorCode, number> = {
  bad_request: 400, unauthorized: 401, forbidden: 403, not_found: 404, payload_too_large: 413, conflict: 409,
  rate_limited: 429, function_error: 502, out_of_memory: 502, resource_limit: 502, timeout: 504,
  unavailable: 503, system_error: 500,
};

export class KilnError extends Error {
  constructor(public readonly code: ErrorCode, message: string) {
    super(message);
    this.name = 'KilnError';
  }
  get status(): number {
    return STATUS_OF[this.code];
  }
}

export const badRequest = (m: string) => new KilnError('bad_request', m);
export const notFound = (m: string) => new KilnError('not_found', m);
