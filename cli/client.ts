// A thin HTTP client for the kiln API. Where to connect and which key to send come from flags,
// then the environment, then the local platform's defaults (KILN_PORT, $KILN_STATE_DIR/admin-key).
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_STATE_DIR, statePaths } from '../common/config';

export interface ClientOptions {
  url?: string;
  key?: string;
  env?: NodeJS.ProcessEnv;
}

export interface RequestOptions {
  json?: unknown;
  body?: Buffer;
  contentType?: string;
  query?: Record<string, string | number | undefined>;
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed JSON body, or undefined when the body is empty or not JSON. */
  body: unknown;
}

/** A non-2xx answer; `code` and `message` come from the API's `{"error": {code, message}}`. */
export class ApiError extends Error {
  constructor(
    public readonly status: number,
    public readonly code: string,
    message: string,
    public readonly response: ApiResponse,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}


export class KilnClient {
  readonly baseUrl: string;
  private key: string | undefined;
  private readonly keyFile: string;

  constructor(opts: ClientOptions = {}) {
    const env = opts.env ?? process.env;
    const url = opts.url || env.KILN_URL || `http://127.0.0.1:${env.KILN_PORT || 8080}`;
    this.baseUrl = url.replace(/\/+$/, '');
    this.key = opts.key || env.KILN_API_KEY || undefined;
    this.keyFile = statePaths(path.resolve(env.KILN_STATE_DIR || DEFAULT_STATE_DIR)).adminKey;
  }

  /** Read lazily, so commands that never call the API work without a key. */
  private apiKey(): string {
    if (this.key) return this.key;
    try {
      this.key = readFileSync(this.keyFile, 'utf8').trim();
    } catch {
      throw new Error(`no API key: pass --key, set KILN_API_KEY, or start the platform so it writes ${this.keyFile}`);
    }
    if (!this.key) throw new Error(`no API key: ${this.keyFile} is empty`);
    return this.key;
  }

  /** Sends one request and returns the answer whatever its status; throws only if no answer came. */
  async request(method: string, route: string, opts: RequestOptions = {}): Promise<ApiResponse> {
    const url = new URL(this.baseUrl + route);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { Authorization: `Bearer ${this.apiKey()}`, Accept: 'application/json' };
    let body: Uint8Array<ArrayBuffer> | string | undefined;
    if (opts.body !== undefined) {
      body = new Uint8Array(opts.body); // a copy typed for fetch's BodyInit
      headers['Content-Type'] = opts.contentType ?? 'application/octet-stream';
    } else if (opts.json !== undefined) {
      body = JSON.stringify(opts.json);
      headers['Content-Type'] = 'application/json';
    }
    let res: Response;
    try {
      res = await fetch(url, { method, headers, body });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new Error(`cannot reach kiln at ${this.baseUrl}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, headers: res.headers, text, body: parsed };
  }

  /** Like request, but a non-2xx status becomes an ApiError. Resolves to the parsed body. */
  async call<T = unknown>(method: string, route: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.request(method, route, opts);
    if (res.status >= 400) throw apiError(res);
    return res.body as T;
  }
}

export function apiError(res: ApiResponse): ApiError {
  const e = (res.body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  if (e && typeof e.message === 'string') return new ApiError(res.status, String(e.code ?? 'error'), e.message, res);
  const snippet = res.text.trim().replace(/\s+/g, ' ').slice(0, 200);
  return new ApiError(res.status, `http_${res.status}`, `HTTP ${res.status}${snippet ? `: ${snippet}` : ''}`, res);
}

/** A path segment, escaped. */
export const seg = (s: string) => encodeURIComponent(s);
