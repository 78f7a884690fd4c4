import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import {
  HeartbeatRequestSchema,
  HeartbeatResponseSchema,
  HeartbeatStreamRequestSchema,
  HeartbeatStreamResponseSchema,
  type HeartbeatRequest,
  type HeartbeatStreamRequest,
} from '../gen/hive/v1/registry_pb.js';
import { deserializer, PATHS, serializer } from './lib/wire.js';

// The floor of the stack: a grpc-js server on the hive's own method paths
// with the same protobuf-es (de)serialisers, answering every heartbeat with
// an ack and doing nothing else. Whatever the hive costs above this is the
// hive's own work. Usage: noop-server.ts --port N

const portArg = process.argv.indexOf('--port');
const port = portArg >= 0 ? Number(process.argv[portArg + 1]) : 0;

const definition: grpc.ServiceDefinition = {
  heartbeatStream: {
    path: PATHS.heartbeatStream,
    requestStream: true,
    responseStream: true,
    requestSerialize: serializer(HeartbeatStreamRequestSchema),
    requestDeserialize: deserializer(HeartbeatStreamRequestSchema),
    responseSerialize: serializer(HeartbeatStreamResponseSchema),
    responseDeserialize: deserializer(HeartbeatStreamResponseSchema),
  },
  heartbeat: {
    path: PATHS.heartbeat,
    requestStream: false,
    responseStream: false,
    requestSerialize: serializer(HeartbeatRequestSchema),
    requestDeserialize: deserializer(HeartbeatRequestSchema),
    responseSerialize: serializer(HeartbeatResponseSchema),
    responseDeserialize: deserializer(HeartbeatResponseSchema),
  },
};

const server = new grpc.Server({ 'grpc.max_receive_message_length': 256 * 1024 });
server.addService(definition, {
  heartbeatStream(call: grpc.ServerDuplexStream<HeartbeatStreamRequest, unknown>) {
    call.on('data', (req: HeartbeatStreamRequest) => {
      call.write(create(HeartbeatStreamResponseSchema, { heartbeat: { ackSeq: req.heartbeat?.seq ?? 0n } }));
    });
    call.on('end', () => call.end());
    call.on('error', () => undefined);
  },
  heartbeat(call: grpc.ServerUnaryCall<HeartbeatRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
    callback(null, create(HeartbeatResponseSchema, { ackSeq: call.request.seq }));
  },
});

server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
  if (err) {
    process.stderr.write(`noop-server: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`${JSON.stringify({ msg: 'noop serving', port: bound })}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    server.forceShutdown();
    process.exit(0);
  });
}
