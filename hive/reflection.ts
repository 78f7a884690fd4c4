import { toBinary, type DescFile, type DescService } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import { ServerReflection as ReflectionV1 } from '../gen/grpc/reflection/v1/reflection_pb.js';
import { ServerReflection as ReflectionV1Alpha } from '../gen/grpc/reflection/v1alpha/reflection_pb.js';

// gRPC server reflection (v1 and v1alpha: grpcurl, Postman and friends ask
// for either), answered from the descriptors protobuf-es generated, so
// generic tools need no copy of our .proto files.

interface ReflectionIndex {
  services: string[];
  byFilename: Map<string, DescFile>;
  bySymbol: Map<string, DescFile>;
}

export function buildReflectionIndex(services: DescService[]): ReflectionIndex {
  const byFilename = new Map<string, DescFile>();
  const bySymbol = new Map<string, DescFile>();
  const visit = (file: DescFile) => {
    if (byFilename.has(file.proto.name)) return;
    byFilename.set(file.proto.name, file);
    for (const dep of file.dependencies) visit(dep);
    for (const m of file.messages) indexMessage(m, file);
    for (const e of file.enums) bySymbol.set(e.typeName, file);
    for (const s of file.services) {
      bySymbol.set(s.typeName, file);
      for (const m of s.methods) bySymbol.set(`${s.typeName}.${m.name}`, file);
    }
  };
  const indexMessage = (m: DescFile['messages'][number], file: DescFile) => {
    bySymbol.set(m.typeName, file);
    for (const n of m.nestedMessages) indexMessage(n, file);
    for (const e of m.nestedEnums) bySymbol.set(e.typeName, file);
  };
  for (const s of services) visit(s.file);
  return { services: services.map((s) => s.typeName), byFilename, bySymbol };
}

/** The file and all its transitive dependencies, each once, the file itself first. */
function withDependencies(file: DescFile): Uint8Array[] {
  const seen = new Set<string>();
  const out: Uint8Array[] = [];
  const walk = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.add(f.proto.name);
    out.push(toBinary(FileDescriptorProtoSchema, f.proto));
    for (const d of f.dependencies) walk(d);
  };
  walk(file);
  return out;
}

type Request = { host: string; messageRequest: { case: string | undefined; value?: unknown } };

function answer(index: ReflectionIndex, req: Request) {
  const base = { validHost: req.host, originalRequest: req as never };
  const notFound = (what: string) => ({ ...base, messageResponse: { case: 'errorResponse' as const, value: { errorCode: 5, errorMessage: `${what} not found` } } });
  const files = (f: DescFile | undefined, what: string) =>
    f ? { ...base, messageResponse: { case: 'fileDescriptorResponse' as const, value: { fileDescriptorProto: withDependencies(f) } } } : notFound(what);
  const r = req.messageRequest;
  switch (r.case) {
    case 'listServices':
      return { ...base, messageResponse: { case: 'listServicesResponse' as const, value: { service: index.services.map((name) => ({ name })) } } };
    case 'fileByFilename':
      return files(index.byFilename.get(r.value as string), `file ${String(r.value)}`);
    case 'fileContainingSymbol':
      return files(index.bySymbol.get(r.value as string), `symbol ${String(r.value)}`);
    case 'fileContainingExtension':
    case 'allExtensionNumbersOfType':
      return notFound('extensions');
    default:
      return { ...base, messageResponse: { case: 'errorResponse' as const, value: { errorCode: 3, errorMessage: 'empty reflection request' } } };
  }
}

export function createReflectionHandlers(services: DescService[]) {
  const index = buildReflectionIndex(services);
  const impl = {
    async *serverReflectionInfo(requests: AsyncIterable<Request>) {
      for await (const req of requests) yield answer(index, req);
    },
  };
  return {
    v1: impl as unknown as ServiceImpl<typeof ReflectionV1>,
    v1alpha: impl as unknown as ServiceImpl<typeof ReflectionV1Alpha>,
  };
}

export { ReflectionV1, ReflectionV1Alpha };
