import { createClient, type Client } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { RegistryService } from '../gen/hive/v1/registry_pb.js';

export type RegistryClient = Client<typeof RegistryService>;

/** A RegistryService client over gRPC (HTTP/2) to "host:port" or a URL. */
export function createRegistryClient(addr: string): RegistryClient {
  const baseUrl = /^https?:\/\//.test(addr) ? addr : `http://${addr}`;
  const transport = createGrpcTransport({
    baseUrl,
    // Keep the connection alive through idle NATs and notice a dead hive.
    pingIntervalMs: 30_000,
    pingTimeoutMs: 10_000,
    idleConnectionTimeoutMs: 0,
  });
  return createClient(RegistryService, transport);
}
