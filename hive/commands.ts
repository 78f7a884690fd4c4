import { create } from '@bufbuild/protobuf';
import { randomBytes } from 'node:crypto';
import { CommandSchema, type Command, type CommandType } from '../gen/hive/v1/registry_pb.js';
import { msToTimestamp } from '../lib/duration.js';

// Commands waiting for a worker's agent. They ride on the next heartbeat
// reply, or are pushed at once to an open stream. Bounded per worker: a
// command nobody collects must not grow memory without end.

export const MAX_PER_WORKER = 16;

export class CommandQueue {
  private queues = new Map<string, Command[]>();
  private listeners = new Map<string, Set<() => void>>();

  enqueue(workerId: string, type: CommandType, reason: string, now: number): { command: Command; delivered: boolean } {
    const command = newCommand(type, reason, now);
    return { command, delivered: this.push(workerId, command) };
  }

  /** Queues a built command; true when a listener (an open stream) was told. */
  push(workerId: string, command: Command): boolean {
    let q = this.queues.get(workerId);
    if (!q) this.queues.set(workerId, (q = []));
    q.push(command);
    if (q.length > MAX_PER_WORKER) q.shift();
    const ls = this.listeners.get(workerId);
    if (ls) for (const l of ls) l();
    return (ls?.size ?? 0) > 0;
  }

  /** Takes every pending command of the worker (empty array without allocation when none). */
  take(workerId: string): Command[] {
    const q = this.queues.get(workerId);
    if (!q) return EMPTY;
    this.queues.delete(workerId);
    return q;
  }

  has(workerId: string): boolean {
    return this.queues.has(workerId);
  }

  /** Calls fn whenever a command is queued for the worker; returns the unsubscribe. */
  listen(workerId: string, fn: () => void): () => void {
    let ls = this.listeners.get(workerId);
    if (!ls) this.listeners.set(workerId, (ls = new Set()));
    ls.add(fn);
    return () => {
      ls!.delete(fn);
      if (ls!.size === 0) this.listeners.delete(workerId);
    };
  }

  drop(workerId: string): void {
    this.queues.delete(workerId);
  }
}

export const EMPTY: Command[] = [];

export function newCommand(type: CommandType, reason: string, now: number): Command {
  return create(CommandSchema, {
    commandId: `cmd_${randomBytes(6).toString('hex')}`,
    type,
    reason,
    issuedAt: msToTimestamp(now),
  });
}
