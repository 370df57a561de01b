// Public surface of the TCP/TLS peer link.
export { TcpTransport, createTcpTransport, PSK_CIPHERS, type TcpTransportStatus } from './transport.js';
export { TCP_DEFAULTS, MIN_PSK_BYTES, loadCerts, loadPsk, resolveTcpOptions } from './options.js';
export { parseHostPort } from '../types.js';
export type { TcpTransportOptions, TcpPeerOptions, TcpSecurityOptions } from './options.js';
export { AddressPlan, backoffCeiling, backoffDelay, type BackoffOptions } from './backoff.js';
export { LINK_PROTOCOL_VERSION, LINK_PROTOCOL_MIN_VERSION } from './hello.js';
