import { createClient, type Client } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { RegistryService } from '../gen/hive/v1/registry_pb.js';
import { hiveBaseUrl, type ClientTls } from '../lib/tls-client.js';

export type RegistryClient = Client<typeof RegistryService>;

/** A RegistryService client over gRPC (HTTP/2) to "host:port" or a URL; TLS (verifying the hive) when tls is given or the URL is https. */
export function createRegistryClient(addr: string, tls?: ClientTls): RegistryClient {
  const transport = createGrpcTransport({
    baseUrl: hiveBaseUrl(addr, tls),
    nodeOptions: tls ? { ca: tls.ca, cert: tls.cert, key: tls.key } : undefined,
    // Keep the connection alive through idle NATs and notice a dead hive.
    pingIntervalMs: 30_000,
    pingTimeoutMs: 10_000,
    idleConnectionTimeoutMs: 0,
  });
  return createClient(RegistryService, transport);
}
