import { invalidArgument } from './errors.js';

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

export function pageSize(requested: number): number {
  if (requested < 0) throw invalidArgument('page_size must not be negative');
  if (requested === 0) return DEFAULT_PAGE_SIZE;
  return Math.min(requested, MAX_PAGE_SIZE);
}

/** Page tokens are opaque to callers: a tagged cursor in base64url. */
export function encodePageToken(kind: string, cursor: string): string {
  return Buffer.from(`${kind}:${cursor}`).toString('base64url');
}

export function decodePageToken(kind: string, token: string): string | null {
  if (!token) return null;
  const text = Buffer.from(token, 'base64url').toString();
  if (!text.startsWith(`${kind}:`)) throw invalidArgument('page_token is not valid for this call');
  return text.slice(kind.length + 1);
}
