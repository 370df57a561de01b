// Child process for lab-harness.test.ts: builds a lab, reports its namespaces, then waits to be signalled.
import { Lab } from '../../src/lab/netns.js';

const lab = new Lab({ prefix: process.argv[2] ?? 'ctsh-' });
await lab.addNamespace('sig');
const ns = await lab.addNamespace('sig2');
lab.spawn(ns, ['sleep', '300']);
process.stdout.write(`ready ${lab.names.join(',')}\n`);
setInterval(() => {}, 1000); // stay alive until SIGTERM; the lab's handler cleans up and re-raises
