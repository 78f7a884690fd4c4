import { createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { existsSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlService } from '../../gen/hive/v1/control_pb.js';
import { RegistryService, TokenScope } from '../../gen/hive/v1/registry_pb.js';
import { NVIDIA_SMI_FIELDS } from '../../worker-agent/collectors/gpu.js';
import { dropSchema, PG_URL, uniqueSchema } from '../support/pg.js';
import { eventually, ROOT, startHiveProc, startProc, tempDir, type HiveProc, type Proc } from '../support/procs.js';
import { projectQueryGpu, readFixture } from '../worker-agent/support/nvidia-smi-capture.js';

// The status page in a real browser (Debian's Chromium driven by
// playwright-core) against a real hive process and real agents: the page
// shows the workers, and a killed agent's card turns red without a reload.
// The stale mark comes from the real monitor (bin/hive-monitor.mjs); in a
// checkout without it, from ControlService.MarkStale with the admin token,
// the call the monitor makes after 2x the interval.

const ADMIN = 'admin-token-for-status-page-tests';
const JOIN = 'join-token-for-status-page-tests';
const INTERVAL_MS = 1000;
const SCREENSHOT = join(ROOT, 'test-results', 'status-page.png');
const WITH_MONITOR = existsSync(join(ROOT, 'monitor', 'main.ts'));
const CHROMIUM = { executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] };

describe('status page in Chromium', () => {
  const schema = uniqueSchema('status_page');
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let hive: HiveProc;
  const agents: Record<string, Proc> = {};
  let monitor: Proc | undefined;
  let browser: Browser;
  let page: Page;
  let readToken: string;
  let registry: Client<typeof RegistryService>;
  let control: Client<typeof ControlService>;
  const pageErrors: string[] = [];
  const auth = { headers: { authorization: `Bearer ${ADMIN}` } };

  /** A stand-in nvidia-smi that answers the agent's query from a real capture. */
  const fakeNvidiaSmi = async (name: string, capture: string) => {
    const path = join(dir.path, name);
    const out = projectQueryGpu(readFixture(`nvidia-smi/${capture}`), NVIDIA_SMI_FIELDS);
    await writeFile(path, `#!/bin/sh\ncat <<'EOF'\n${out}EOF\n`);
    await chmod(path, 0o755);
    return path;
  };

  const startAgent = (id: string, pool: string, nvidiaSmi: string) => {
    agents[id] = startProc('worker-agent.mjs', [
      '--hive', hive.grpcAddr, '--join-token', JOIN, '--worker-id', id, '--interval', `${INTERVAL_MS}ms`, '--label', `pool=${pool}`,
      '--token-file', join(dir.path, `${id}.token`), '--metrics-addr', '127.0.0.1:0', '--nvidia-smi', nvidiaSmi,
    ], { LOG_LEVEL: 'info' });
  };

  beforeAll(async () => {
    dir = await tempDir();
    const [h100, h200] = await Promise.all([
      fakeNvidiaSmi('nvidia-smi-h100', 'linux-x86_64__nvidia-h100-mig__590.48.01__idle.query-gpu-all.csv'),
      fakeNvidiaSmi('nvidia-smi-h200', 'linux-x86_64__nvidia-h200__580.173.02__idle.query-gpu-all.csv'),
    ]);
    const launched = chromium.launch(CHROMIUM);
    hive = await startHiveProc(
      ['--data-dir', join(dir.path, 'data'), '--database-url', PG_URL, '--database-schema', schema, '--admin-token', ADMIN, '--join-token', JOIN],
      { LOG_LEVEL: 'info' },
    );
    startAgent('gpu-a', 'h100', h100);
    startAgent('gpu-b', 'h200', h200);
    const transport = createConnectTransport({ baseUrl: hive.httpUrl, httpVersion: '1.1' });
    registry = createClient(RegistryService, transport);
    control = createClient(ControlService, transport);
    readToken = (await registry.createToken({ scope: TokenScope.READ, description: 'status page test' }, auth)).token;
    if (WITH_MONITOR) {
      const monitorToken = (await registry.createToken({ scope: TokenScope.MONITOR, description: 'status page test' }, auth)).token;
      monitor = startProc('hive-monitor.mjs', ['--hive', hive.grpcAddr, '--token', monitorToken, '--http-addr', '127.0.0.1:0'], { LOG_LEVEL: 'info' });
      await monitor.waitForLog((e) => e.msg === 'monitor serving', 30_000);
    }
    browser = await launched;
    page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) pageErrors.push(msg.text());
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await Promise.all(Object.values(agents).map((a) => a.kill('SIGKILL')));
    await monitor?.kill('SIGTERM');
    await hive?.kill('SIGTERM');
    await dropSchema(schema);
    await dir?.remove();
  });

  it('asks for a read token once, then shows both workers live with VRAM, memory and disk bars', async () => {
    await page.goto(hive.httpUrl + '/');
    await page.locator('#login').waitFor({ state: 'visible' });
    await page.fill('#token', readToken);
    await page.click('#login button[type=submit]');

    await page.locator('.card[data-worker="gpu-a"][data-state="healthy"]').waitFor({ timeout: 20_000 });
    await page.locator('.card[data-worker="gpu-b"][data-state="healthy"]').waitFor({ timeout: 20_000 });
    expect(await page.locator('#connection').textContent()).toBe('live');
    const a = page.locator('.card[data-worker="gpu-a"]');
    expect(await a.locator('.bar-label').allTextContents()).toEqual(['GPU 0 · NVIDIA H100 80GB HBM3', 'Memory', 'Disk /']);
    expect(await a.locator('.bar-value').first().textContent()).toBe('59.0 MiB / 79.6 GiB');
    expect(await page.locator('.card[data-worker="gpu-b"] .bar-label').first().textContent()).toBe('GPU 0 · NVIDIA H200');
    expect(await a.locator('.labels li').allTextContents()).toEqual(['pool=h100']);
    await page.locator('#events li[data-kind="first_heartbeat"]').first().waitFor();

    // Kept for the tab's session: a reload does not ask again.
    await page.reload();
    await page.locator('.card[data-worker="gpu-b"][data-state="healthy"]').waitFor();
    expect(await page.locator('#login').isVisible()).toBe(false);
    expect(await page.evaluate(() => sessionStorage.length)).toBe(1);
    expect(pageErrors).toEqual([]);
  });

  it('filters by label selector (on the hive) and by state (in the page)', async () => {
    await page.fill('#selector', 'pool=h200');
    await page.press('#selector', 'Enter');
    await eventually(async () => (await page.locator('.card').count()) === 1, 10_000, 'one card');
    expect(await page.locator('.card').getAttribute('data-worker')).toBe('gpu-b');
    await page.fill('#selector', '');
    await page.press('#selector', 'Enter');
    await eventually(async () => (await page.locator('.card').count()) === 2, 10_000, 'both cards');

    await page.click('#states button[data-state="degraded"]');
    expect(await page.locator('.card').count()).toBe(0);
    expect(await page.locator('#empty').textContent()).toBe('No worker in the selected states.');
    await page.click('#states button[data-state="degraded"]');
    expect(await page.locator('.card').count()).toBe(2);
  });

  it('shows the last health-check run, answered by the real agents, without a reload', async () => {
    expect(await page.locator('#check-empty').isVisible()).toBe(true);
    const started = (await control.startHealthCheck({ timeout: { seconds: 20n, nanos: 0 } }, auth)).check!;
    await eventually(async () => (await page.locator('#check .check-id').textContent()) === started.checkId, 15_000, 'the run on the page');
    await eventually(async () => /score 1\.00 healthy, 0 of 2 failed/.test((await page.locator('#check .check-score').textContent()) ?? ''), 15_000, 'the finished run on the page');
    expect(await page.locator('#check .check-summary').textContent()).toMatch(/^2 workers checked: 2 healthy, 0 degraded, 0 failed\./);
    expect(await page.locator('#check-empty').isVisible()).toBe(false);
  });

  it("turns a killed agent's card red without a reload once the worker is marked stale", async () => {
    await page.evaluate(() => ((window as unknown as { sameDocument: string }).sameDocument = 'yes'));
    await agents['gpu-b'].kill('SIGKILL');

    if (!WITH_MONITOR) {
      // What the monitor does: after 2x the interval with no heartbeat, mark
      // stale with compare-and-set on the last heartbeat it saw.
      await eventually(
        async () => {
          const { worker } = await registry.getWorker({ workerId: 'gpu-b' }, auth);
          await control.markStale({ workerId: 'gpu-b', observedSeq: worker!.lastSeq, observedSessionId: worker!.sessionId, reason: 'no heartbeat for 2x the interval' }, auth);
          return true;
        },
        20_000,
        'the stale mark',
      );
    }

    const card = page.locator('.card[data-worker="gpu-b"]');
    await page.locator('.card[data-worker="gpu-b"][data-state="stale"]').waitFor({ timeout: 20_000 });
    expect(await card.getAttribute('class')).toContain('tone-bad');
    expect(await card.locator('.badge').textContent()).toBe('STALE');
    expect(await card.locator('.badge').evaluate((el) => getComputedStyle(el).backgroundColor)).toBe('rgb(214, 59, 59)');
    expect(await page.locator('.card[data-worker="gpu-a"]').getAttribute('data-state')).toBe('healthy');
    expect(await page.locator('.card[data-worker="gpu-a"] .badge').evaluate((el) => getComputedStyle(el).backgroundColor)).toBe('rgb(31, 157, 85)');
    await page.locator('#events li[data-kind="marked_stale"]').waitFor({ timeout: 10_000 });
    const { events } = await registry.listEvents({ workerId: 'gpu-b', pageSize: 10 }, auth);
    expect(events.find((e) => e.kind === 'marked_stale')?.actor).toBe(WITH_MONITOR ? 'monitor' : 'admin');
    // The same document all along: no reload, no navigation.
    expect(await page.evaluate(() => (window as unknown as { sameDocument?: string }).sameDocument)).toBe('yes');
    expect(await page.locator('#states button[data-state="stale"] b').textContent()).toBe('1');

    await mkdir(join(ROOT, 'test-results'), { recursive: true });
    await page.waitForTimeout(400); // let the bars' width transition finish for the picture
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  it('a refused token brings the token dialog back with the reason', async () => {
    const context = await browser.newContext();
    try {
      const other = await context.newPage();
      await other.goto(hive.httpUrl + '/');
      await other.fill('#token', 'not-a-valid-token');
      await other.click('#login button[type=submit]');
      await other.locator('#login-error').waitFor({ state: 'visible', timeout: 10_000 });
      expect(await other.locator('#login-error').textContent()).toContain('refused the token');
      expect(await other.evaluate(() => sessionStorage.length)).toBe(0);
    } finally {
      await context.close();
    }
  });
});
