// Wiring and lifecycle of `ctsync daemon`: kernel mirror → sync engine ⇄ peer link, control socket, metrics.
import type { Server } from 'node:http';
import type { Config } from '../config/load.js';
import { KernelMirror } from '../state/mirror.js';
import { systemClock } from '../state/clock.js';
import { SyncEngine } from '../sync/engine.js';
import { compileFilter } from '../sync/filter.js';
import { TcpTransport } from '../transport/tcp/index.js';
import type { Transport } from '../transport/types.js';
import { ControlServer } from '../control/server.js';
import { ControlError } from '../control/protocol.js';
import type { Logger } from './log.js';
import { serveMetrics } from './metrics.js';
import { collectMetrics } from './metrics-daemon.js';
import { buildStats, type DaemonStats } from './stats.js';
import { listDocument } from '../cli/flow-file.js';
import type { Flow } from '../kernel/types.js';

const hostOf = (hostPort: string) => hostPort.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');

export class Daemon {
  readonly startedAt = Date.now();
  readonly mirror: KernelMirror;
  readonly engine: SyncEngine;
  readonly transport: Transport;
  readonly control: ControlServer;
  private metrics?: Server;
  private timers: NodeJS.Timeout[] = [];

  constructor(
    readonly cfg: Readonly<Config>,
    readonly log: Logger,
    transport?: Transport,
  ) {
    // the sync link's own endpoints never sync: their flows would feed back on themselves
    const linkHosts = [hostOf(cfg.listen), ...cfg.peers.flatMap((p) => p.addresses.map(hostOf))].filter((h) => h !== '0.0.0.0' && h !== '::');
    this.mirror = new KernelMirror({
      netns: cfg.kernel.netns,
      rcvbuf: cfg.kernel.eventBuffer,
      filter: compileFilter(cfg.sync, linkHosts),
      clock: systemClock,
      log: log.child({ c: 'kernel' }),
      firstVersion: Date.now() * 1000,
      minAgeMs: cfg.sync.minAge,
    });
    const [host, port] = [hostOf(cfg.listen), Number(cfg.listen.replace(/^.*:/, ''))];
    this.transport =
      transport ??
      new TcpTransport({
        nodeId: cfg.nodeId,
        clusterId: cfg.clusterId,
        listen: { host, port },
        peers: cfg.peers.map((p) => ({ nodeId: p.id, addresses: p.addresses })),
        ...(cfg.security.mode === 'insecure'
          ? { insecure: true }
          : cfg.security.mode === 'psk'
            ? { tls: { pskFile: cfg.security.keyFile } }
            : { tls: { caFile: cfg.security.ca, certFile: cfg.security.cert, keyFile: cfg.security.key } }),
        heartbeatMs: cfg.link.heartbeat,
        deadAfterMs: cfg.link.deadAfter,
        maxFrameBytes: cfg.link.maxFrame,
        logger: log.child({ c: 'link' }),
      });
    this.engine = new SyncEngine(
      {
        nodeId: cfg.nodeId,
        clusterId: cfg.clusterId,
        coalesceMs: cfg.sync.coalesce,
        digestIntervalMs: cfg.sync.digestInterval,
        heartbeatMs: cfg.link.heartbeat,
        maxFrameBytes: cfg.link.maxFrame,
      },
      this.mirror.local,
      this.transport,
      systemClock,
      log.child({ c: 'sync' }),
    );
    this.mirror.onChange = (key, change) => {
      if (change === 'added' || change === 'replaced') this.engine.changed(key, true);
      else if (change === 'changed' || change === 'removed') this.engine.changed(key);
    };
    this.control = new ControlServer(cfg.control.socket, log.child({ c: 'control' }));
    this.registerControl();
  }

  async start(): Promise<void> {
    if (this.cfg.security.mode === 'insecure') this.log.warn('security.mode is insecure: the peer link is PLAINTEXT and UNAUTHENTICATED; anyone who reaches it can write conntrack entries');
    await this.mirror.start();
    this.engine.start();
    await this.transport.start();
    await this.control.start();
    if (this.cfg.metrics.listen) this.metrics = await serveMetrics(this.cfg.metrics.listen, () => collectMetrics(this.stats()));
    if (this.cfg.sync.refreshInterval > 0) {
      const t = setInterval(() => void this.refresh(), this.cfg.sync.refreshInterval);
      t.unref();
      this.timers.push(t);
    }
    this.log.info({ entries: this.mirror.local.size, listen: this.cfg.listen, peers: this.cfg.peers.map((p) => p.id), control: this.cfg.control.socket }, 'ctsync daemon started');
  }

  /** Re-read remaining timeouts and send the ones that drifted (the kernel never reports timeout refreshes). */
  async refresh(): Promise<number> {
    try {
      const drift = await this.mirror.refresh();
      this.engine.sendRefreshes(drift);
      return drift.length;
    } catch (err) {
      this.log.warn({ err }, 'timeout refresh failed');
      return 0;
    }
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.engine.flush();
    this.engine.stop();
    await this.transport.stop();
    await this.control.stop();
    await new Promise<void>((r) => (this.metrics ? this.metrics.close(() => r()) : r()));
    this.mirror.close();
    this.log.info('ctsync daemon stopped');
  }

  stats(): DaemonStats {
    return buildStats(this);
  }

  private registerControl(): void {
    const now = () => systemClock.now();
    this.control
      .handle('stats', () => this.stats())
      .handle('dump', (args) => {
        const which = args.table === 'peer' ? 'peer' : 'local';
        const flows: Flow[] = [];
        if (which === 'local') this.mirror.local.forEach((k) => flows.push(this.mirror.local.get(k, now())!));
        else {
          const tables = this.engine.peerTables();
          const wanted = typeof args.peer === 'string' ? args.peer : undefined;
          if (wanted && !tables.has(wanted)) throw new ControlError('CTS_ERR_CONTROL_ARGS', `no peer '${wanted}'; peers: ${[...tables.keys()].join(', ') || 'none yet'}`);
          for (const [id, t] of tables) if (!wanted || id === wanted) t.forEach((k) => flows.push(t.get(k, now())!));
        }
        return { table: which, document: listDocument(flows) };
      })
      .handle('resync', () => {
        this.engine.requestResync();
        return { requested: true };
      })
      .handle('bulk', async () => {
        await this.engine.bulk();
        return { sent: this.mirror.local.size };
      })
      .handle('refresh', async () => ({ refreshed: await this.refresh() }));
  }
}
