import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, totalmem, release } from 'node:os';

// What the benchmark reads from /proc: CPU time and RSS of one process (all
// its threads, not its children), and the busy share of the whole machine.
// Parsing is separated from reading so the parsers stay trivially checkable.

let clkTck: number | undefined;

/** Clock ticks per second of the utime/stime fields (USER_HZ, almost always 100). */
export function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** utime + stime of /proc/<pid>/stat in seconds (the process's own threads; exited children are not included). */
export function parseProcStatCpu(text: string, hz: number): number {
  // The command name (field 2) may contain spaces and parentheses: fields
  // after it are counted from the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14, stime field 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return (utime + stime) / hz;
}

export function processCpuSeconds(pid: number): number {
  return parseProcStatCpu(readFileSync(`/proc/${pid}/stat`, 'utf8'), ticksPerSecond());
}

export interface MemInfo {
  rssBytes: number;
  peakRssBytes: number;
}

export function parseProcStatus(text: string): MemInfo {
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { rssBytes: kb('VmRSS'), peakRssBytes: kb('VmHWM') };
}

export function processMemory(pid: number): MemInfo {
  return parseProcStatus(readFileSync(`/proc/${pid}/status`, 'utf8'));
}

/** Aggregate CPU counters of the machine (first line of /proc/stat), in ticks. */
export interface MachineTicks {
  busy: number;
  total: number;
}

export function parseMachineTicks(text: string): MachineTicks {
  const line = text.slice(0, text.indexOf('\n'));
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f;
  const idleAll = idle + (iowait ?? 0);
  const total = user + nice + system + idleAll + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0);
  return { busy: total - idleAll, total };
}

export function machineTicks(): MachineTicks {
  return parseMachineTicks(readFileSync('/proc/stat', 'utf8'));
}

/** Busy share 0..1 of all cores between two readings. */
export function busyShare(a: MachineTicks, b: MachineTicks): number {
  const total = b.total - a.total;
  return total > 0 ? (b.busy - a.busy) / total : 0;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface IdleWait {
  /** Busy share of the machine over the last 1 s sample, 0..1. */
  busy: number;
  waitedMs: number;
  /** False when the max wait ran out with the machine still busy. */
  idle: boolean;
}

/**
 * Waits until the machine's busy share over one second is under `threshold`,
 * or `maxWaitMs` passed. The machine is shared: a measurement started while
 * someone else compiles says more about them than about us.
 */
export async function waitForIdle(threshold: number, maxWaitMs: number, sampleMs = 1000): Promise<IdleWait> {
  const started = Date.now();
  for (;;) {
    const a = machineTicks();
    await sleep(sampleMs);
    const busy = busyShare(a, machineTicks());
    const waitedMs = Date.now() - started;
    if (busy < threshold) return { busy, waitedMs, idle: true };
    if (waitedMs >= maxWaitMs) return { busy, waitedMs, idle: false };
  }
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  hostname: string;
}

export function machineInfo(): MachineInfo {
  const c = cpus();
  let hostname = '';
  try {
    hostname = readFileSync('/proc/sys/kernel/hostname', 'utf8').trim();
  } catch {
    /* not Linux */
  }
  return {
    cpuModel: c[0]?.model ?? 'unknown',
    cores: c.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    hostname,
  };
}
