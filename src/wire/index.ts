// Public surface of src/wire: the protocol messages, the flow/expectation mapping, frames and stream framing.
export type { DropReason, Decoded, WireErrorCode } from './errors.js';
export { WireError } from './errors.js';
export { Envelope, Entry, FlowKey as FlowKeyMessage, Expectation as ExpectationMessage, Role, type pb } from './proto.js';
export {
  type FlowKey, type ExpectationKey, type Refresh,
  flowToEntry, entryToFlow, toSyncedFlow, flowKeyOf, keyToWire, keyFromWire, refreshToWire, refreshFromWire,
  expectationToWire, expectationFromWire, toSyncedExpectation, expectationKeyOf, expectationKeyToWire,
  expectationKeyFromWire,
} from './entry.js';
export {
  FRAME_MAGIC, FRAME_FORMAT, FRAME_HEADER_BYTES, FRAME_FLAG_MAC, MAC_BYTES, PROTOCOL_VERSION, MIN_PROTOCOL_VERSION,
  DEFAULT_MAX_FRAME_BYTES, type FrameLimits, type FrameExpect, type EncodeOptions, type FrameResult, type MacKey,
  createMacKey, encodeFrame, decodeFrame,
} from './envelope.js';
export { FrameReader, frameBytes, LENGTH_PREFIX_BYTES, type FrameReaderError } from './framing.js';
export { packTuple, unpackTuple, invertTuple, isInverse } from './tuple.js';
export { parseAddress, formatAddress } from './addr.js';
