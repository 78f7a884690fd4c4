#!/usr/bin/env node
// Container health check (Dockerfile HEALTHCHECK, compose, Kubernetes exec
// probes): exit 0 when the URL answers 2xx within 3 s, 1 otherwise. The
// image has no curl or wget; node is there anyway.
const url = process.argv[2] ?? 'http://127.0.0.1:8080/healthz';
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  if (!res.ok) console.error(`${url}: HTTP ${res.status} ${await res.text()}`);
  process.exit(res.ok ? 0 : 1);
} catch (err) {
  console.error(`${url}: ${err?.cause?.message ?? err?.message ?? err}`);
  process.exit(1);
}
