// Child process of bench/ingest.ts: our EventStream subscribed to NEW events, counting them (the ct-listen.c protocol).
//
// Run inside the namespace: node dist/bench/ingest-listener.js RCVBUF_BYTES
// Prints "ready"; stdin "stat" → "stat NEW OVERRUNS DATAGRAMS"; "quit" or EOF → the final stat line, then exit.
import { createInterface } from 'node:readline';
import { EventStream, NfnlGroup } from '../src/kernel/events.js';

const rcvbuf = Number(process.argv[2] ?? 16 << 20);
const stream = new EventStream({ groups: [NfnlGroup.ConntrackNew], rcvbuf });
stream.onEvent = () => {}; // decoded, then dropped: what a daemon pays before its own work
stream.sock.onError = (err) => process.stderr.write(`listener error: ${err.message}\n`);

function statLine(): void {
  const s = stream.stats;
  process.stdout.write(`stat ${s.new} ${s.overruns} ${stream.sock.stats.datagrams}\n`);
}

createInterface({ input: process.stdin })
  .on('line', (l) => {
    statLine();
    if (l === 'quit') {
      stream.close();
      process.exit(0);
    }
  })
  .on('close', () => {
    statLine();
    stream.close();
    process.exit(0);
  });
process.stdout.write('ready\n');
