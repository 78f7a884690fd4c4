import type { Reporter, TestModule } from 'vitest/node';
import { FIGURES, type Figures } from './figures.js';

// Prints the reliability figures of the run, one line each, when any test
// reported some: the listed figures first (zeros included), then any other
// measurement (such as the reconnect spread) as the tests named it.
export default class FiguresReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const sum: Record<string, number> = {};
    const extra: Record<string, number> = {};
    let any = false;
    for (const mod of modules) {
      for (const test of mod.children.allTests()) {
        const f = test.meta().figures as Figures | undefined;
        if (!f) continue;
        any = true;
        for (const [k, v] of Object.entries(f)) {
          if ((FIGURES as readonly string[]).includes(k)) sum[k] = (sum[k] ?? 0) + (v ?? 0);
          else extra[k] = Math.max(extra[k] ?? 0, v ?? 0);
        }
      }
    }
    if (!any) return;
    const lines = ['', 'reliability figures:'];
    for (const k of FIGURES) lines.push(`  ${k}: ${sum[k] ?? 0}`);
    for (const [k, v] of Object.entries(extra)) lines.push(`  ${k}: ${v}`);
    process.stdout.write(lines.join('\n') + '\n');
  }
}
