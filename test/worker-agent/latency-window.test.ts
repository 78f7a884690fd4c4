import { describe, expect, it } from 'vitest';
import { LatencyWindow } from '../../worker-agent/latency-window.js';

describe('LatencyWindow', () => {
  it('nearest rank over 1..100', () => {
    const w = new LatencyWindow();
    for (let ms = 100; ms >= 1; ms--) w.add(ms);
    expect(w.percentiles()).toEqual({ p50: 50, p95: 95, p99: 99 });
    expect(w.percentile(100)).toBe(100);
    expect(w.percentile(1)).toBe(1);
  });

  it('nearest rank on a small window picks an observed sample', () => {
    const w = new LatencyWindow();
    for (const ms of [40, 10, 30, 20]) w.add(ms);
    // ranks: ceil(0.5*4)=2, ceil(0.95*4)=4, ceil(0.99*4)=4
    expect(w.percentiles()).toEqual({ p50: 20, p95: 40, p99: 40 });
    expect(w.percentile(25)).toBe(10);
    expect(w.percentile(26)).toBe(20);
  });

  it('one sample is every percentile', () => {
    const w = new LatencyWindow();
    w.add(7.5);
    expect(w.percentiles()).toEqual({ p50: 7.5, p95: 7.5, p99: 7.5 });
  });

  it('keeps only the last N samples', () => {
    const w = new LatencyWindow(3);
    for (const ms of [1000, 900, 1, 2, 3]) w.add(ms);
    expect(w.size).toBe(3);
    expect(w.percentiles()).toEqual({ p50: 2, p95: 3, p99: 3 });
    w.add(4);
    expect(w.percentile(100)).toBe(4);
    expect(w.percentile(1)).toBe(2);
  });

  it('defaults to 100 samples', () => {
    const w = new LatencyWindow();
    for (let i = 0; i < 250; i++) w.add(i);
    expect(w.size).toBe(100);
    expect(w.percentile(1)).toBe(150);
  });

  it('empty has no percentiles', () => {
    const w = new LatencyWindow();
    expect(w.percentiles()).toBeUndefined();
    expect(w.percentile(50)).toBeUndefined();
    w.add(1);
    w.clear();
    expect(w.size).toBe(0);
    expect(w.percentiles()).toBeUndefined();
  });

  it('rejects nonsense', () => {
    expect(() => new LatencyWindow(0)).toThrow(RangeError);
    const w = new LatencyWindow();
    expect(() => w.add(-1)).toThrow(RangeError);
    expect(() => w.add(Number.NaN)).toThrow(RangeError);
    expect(() => w.percentile(0)).toThrow(RangeError);
    expect(() => w.percentile(101)).toThrow(RangeError);
  });
});
