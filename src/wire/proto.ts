// Owns the protobuf runtime: loads the generated descriptor once and exposes one typed codec per message.
import protobuf from 'protobufjs/light.js';
import type { ctsync } from './gen/ctsync.js';
import { descriptor } from './gen/descriptor.js';

export type { ctsync as pb } from './gen/ctsync.js';

// 64-bit fields (seq, ack, sizes) are handled as JS numbers: exact up to 2^53, which a frame counter never
// reaches (see ctsync.proto). Without this protobufjs would hand out `Long` objects wherever the `long` package
// is installed. This is process-wide; nothing else in ctsync uses protobufjs.
protobuf.util.Long = undefined as unknown as typeof protobuf.util.Long;
protobuf.configure();

const root = protobuf.Root.fromJSON(descriptor);

function codec<T>(name: string): T {
  const type = root.lookupType(`ctsync.${name}`);
  // Build the generated encoder/decoder now rather than on the first frame.
  type.setup();
  return type as unknown as T;
}

// Only the messages other modules encode or decode on their own; nested messages go through their parent.
export const Envelope = codec<typeof ctsync.Envelope>('Envelope');
export const Entry = codec<typeof ctsync.Entry>('Entry');
export const FlowKey = codec<typeof ctsync.FlowKey>('FlowKey');
export const Expectation = codec<typeof ctsync.Expectation>('Expectation');

/** Role values of Hello.role (ctsync.Role). */
export const enum Role {
  Unspecified = 0,
  Active = 1,
  Standby = 2,
  Fault = 3,
}
