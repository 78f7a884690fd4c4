import { WorkerState, type Worker } from '../gen/hive/v1/registry_pb.js';
import { durationToMs, formatDurationMs, timestampToMs } from '../lib/duration.js';

// Plain text for people: sizes, ages, states in colour, aligned tables.
// Pure functions of their inputs (the time is passed in), so the tests can
// compare exact strings.

/** Whether to colour output written to this stream: a terminal, NO_COLOR unset, TERM not dumb; FORCE_COLOR wins. */
export function wantsColour(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.TERM === 'dumb') return false;
  return stream.isTTY === true;
}

const SGR = { red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36, grey: 90, bold: 1, dim: 2 } as const;
export type Colour = keyof typeof SGR;

export interface Paint {
  (colour: Colour | undefined, text: string): string;
  enabled: boolean;
}

export function painter(enabled: boolean): Paint {
  const paint = ((colour: Colour | undefined, text: string) => (enabled && colour ? `\x1b[${SGR[colour]}m${text}\x1b[0m` : text)) as Paint;
  paint.enabled = enabled;
  return paint;
}

const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;
export const visibleLength = (s: string) => s.replace(ANSI, '').length;

/** "HEALTHY" from WorkerState.HEALTHY. */
export function stateName(state: WorkerState): string {
  return WorkerState[state] ?? String(state);
}

export function stateColour(state: WorkerState): Colour | undefined {
  switch (state) {
    case WorkerState.HEALTHY:
      return 'green';
    case WorkerState.DEGRADED:
      return 'yellow';
    case WorkerState.UNHEALTHY:
    case WorkerState.STALE:
    case WorkerState.FAILED:
      return 'red';
    case WorkerState.RESTARTING:
      return 'magenta';
    case WorkerState.PENDING:
      return 'cyan';
    case WorkerState.LEFT:
      return 'grey';
    default:
      return undefined;
  }
}

/**
 * How bad a state is, for sorting "worst first" (higher is worse). A
 * worker that stopped heartbeating outranks one that reports trouble.
 */
export function stateSeverity(state: WorkerState): number {
  switch (state) {
    case WorkerState.FAILED:
      return 7;
    case WorkerState.STALE:
      return 6;
    case WorkerState.RESTARTING:
      return 5;
    case WorkerState.UNHEALTHY:
      return 4;
    case WorkerState.DEGRADED:
      return 3;
    case WorkerState.PENDING:
      return 2;
    case WorkerState.HEALTHY:
      return 1;
    default:
      return 0; // LEFT and unknown: not a problem
  }
}

/** Parses "healthy", "STALE" or "WORKER_STATE_STALE". */
export function parseState(text: string): WorkerState {
  const name = text.trim().toUpperCase().replace(/^WORKER_STATE_/, '');
  const value = (WorkerState as unknown as Record<string, number>)[name];
  if (value === undefined || value === WorkerState.UNSPECIFIED) {
    const names = Object.keys(WorkerState).filter((k) => Number.isNaN(Number(k)) && k !== 'UNSPECIFIED');
    throw new Error(`unknown state "${text}" (one of ${names.map((n) => n.toLowerCase()).join(', ')})`);
  }
  return value as WorkerState;
}

/** Binary units, three significant digits: 512B, 1.5K, 12.3G, 80G. */
export function formatBytes(n: bigint | number): string {
  let v = Number(n);
  const units = ['B', 'K', 'M', 'G', 'T', 'P'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${v}B`;
  return `${v >= 100 || Number.isInteger(v) ? Math.round(v) : v.toFixed(1)}${units[i]}`;
}

/** "used/total" in one unit, the total's: "12.5/80G". */
export function formatUsedTotal(used: bigint, total: bigint): string {
  if (total <= 0n) return '-';
  const t = formatBytes(total);
  const unit = t.replace(/^[\d.]+/, '');
  const div = 1024 ** ['B', 'K', 'M', 'G', 'T', 'P'].indexOf(unit);
  const u = Number(used) / div;
  return `${u >= 100 || Number.isInteger(u) ? Math.round(u) : u.toFixed(1)}/${t}`;
}

/** A compact age: 0s, 42s, 3m05s, 2h10m, 3d4h. */
export function formatAge(ms: number): string {
  if (ms < 0) ms = 0;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${h % 24}h`;
}

export function lastSeenAge(w: Worker, now: number): string {
  const at = timestampToMs(w.lastSeen);
  return at === undefined ? 'never' : formatAge(now - at);
}

export function intervalText(w: Worker): string {
  const ms = durationToMs(w.heartbeatInterval);
  return ms === undefined ? '-' : formatDurationMs(ms);
}

/** "2x 41/160G" (count, VRAM used/total summed); "-" without GPUs. */
export function gpuSummary(w: Worker): string {
  const gpus = w.stats?.gpus ?? [];
  if (gpus.length === 0) return '-';
  const used = gpus.reduce((a, g) => a + g.memoryUsedBytes, 0n);
  const total = gpus.reduce((a, g) => a + g.memoryTotalBytes, 0n);
  return `${gpus.length}x ${formatUsedTotal(used, total)}`;
}

/** One entry per GPU: "0:20/80G 1:3.5/80G". */
export function gpuDetail(w: Worker): string {
  const gpus = w.stats?.gpus ?? [];
  if (gpus.length === 0) return '-';
  return gpus.map((g) => `${g.index}:${formatUsedTotal(g.memoryUsedBytes, g.memoryTotalBytes)}`).join(' ');
}

export function memorySummary(w: Worker): string {
  const s = w.stats;
  return s && s.memoryTotalBytes > 0n ? formatUsedTotal(s.memoryUsedBytes, s.memoryTotalBytes) : '-';
}

/** Free space of the fullest disk: "120G 47%". */
export function diskFreeSummary(w: Worker): string {
  const disks = (w.stats?.disks ?? []).filter((d) => d.totalBytes > 0n);
  if (disks.length === 0) return '-';
  const worst = disks.reduce((a, d) => (Number(d.freeBytes) / Number(d.totalBytes) < Number(a.freeBytes) / Number(a.totalBytes) ? d : a));
  return `${formatBytes(worst.freeBytes)} ${Math.round((Number(worst.freeBytes) / Number(worst.totalBytes)) * 100)}%`;
}

export function labelsText(labels: Record<string, string>): string {
  const pairs = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  return pairs.length ? pairs.map(([k, v]) => `${k}=${v}`).join(',') : '-';
}

export function formatTime(ms: number | undefined): string {
  if (ms === undefined) return '-';
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Aligned columns; cells may carry colour codes (width counts visible characters only). */
export function renderTable(header: string[], rows: string[][], paint: Paint): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => visibleLength(r[i] ?? ''))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(widths[i] - visibleLength(c))))
      .join('  ')
      .trimEnd();
  return [paint('bold', line(header)), ...rows.map(line)].join('\n') + '\n';
}
