// Wiring and lifecycle of `ctsync daemon`: kernel mirror → sync engine ⇄ peer link, control socket, metrics.
import type { Server } from 'node:http';
import { certFiles, redisConnect, type Config } from '../config/load.js';
import { KernelMirror } from '../state/mirror.js';
import { rebornOf } from '../state/local-table.js';
import { systemClock } from '../state/clock.js';
import { SyncEngine } from '../sync/engine.js';
import { SyncPaths } from '../sync/paths.js';
import { compileFilter } from '../sync/filter.js';
import { TcpTransport, loadCerts, loadPsk } from '../transport/tcp/index.js';
import { RedisTransport } from '../transport/redis/index.js';
import { createMacKey, type MacKey } from '../wire/envelope.js';
import { parseHostPort, type Transport } from '../transport/types.js';
import { ControlServer } from '../control/server.js';
import { ControlError } from '../control/protocol.js';
import type { Logger } from './log.js';
import { serveMetrics } from './metrics.js';
import { collectMetrics } from './metrics-daemon.js';
import { buildStats, type DaemonStats } from './stats.js';
import { writeDocument, type DumpSource } from './dump.js';
import type { Flow } from '../kernel/types.js';
import { HaMachine } from '../ha/machine.js';
import { peerReadiness, readiness, syncPeerIds, writeTrackFile } from '../ha/readiness.js';
import type { Transition } from '../ha/notify.js';
import { commitKeys, commitPeerTables, rulesetUsesLabels, type CommitReport } from '../state/commit.js';
import { WarmStandby } from '../state/warm.js';
import { DEFAULT_WRITE_POLICY, type WritePolicy } from '../kernel/write-rules.js';

/** The host of an address the config already checked. */
const hostOf = (hostPort: string) => parseHostPort(hostPort)!.host;

export class Daemon {
  readonly startedAt = Date.now();
  readonly mirror: KernelMirror;
  /** One sync engine per transport (two with `transport: both`), fed by the same local table. */
  readonly sync: SyncPaths;
  readonly transports: Transport[];
  readonly control: ControlServer;
  readonly ha: HaMachine;
  private metrics?: Server;
  private timers: NodeJS.Timeout[] = [];
  private purgeTimer?: NodeJS.Timeout;
  /** commit.warm: the peers' flows written into our kernel while we are not MASTER. */
  readonly warm?: WarmStandby;
  private readyState?: boolean;
  notReady: string[] = ['starting'];
  stale: string[] = [];

  constructor(
    readonly cfg: Readonly<Config>,
    readonly log: Logger,
  ) {
    // the sync link's own endpoints never sync: their flows would feed back on themselves
    const viaRedis = cfg.transport !== 'tcp';
    const linkHosts = [hostOf(cfg.listen), ...cfg.peers.flatMap((p) => p.addresses.map(hostOf)), ...(viaRedis ? cfg.redis.addresses.map(hostOf) : [])].filter((h) => h !== '0.0.0.0' && h !== '::');
    const synced = compileFilter(cfg.sync, linkHosts);
    this.mirror = new KernelMirror({
      netns: cfg.kernel.netns,
      rcvbuf: cfg.kernel.eventBuffer,
      ...(cfg.sync.quiet > 0 ? { settleUs: Math.max(1, Math.round(cfg.sync.quiet * 1000)) } : {}),
      // a trickle of events is read (and sent) in batches at most sync.coalesce apart: a frame and a wake-up of
      // each thread per batch rather than per change (the reader holds only where it reports quiets)
      holdUs: Math.min(100_000, Math.round(cfg.sync.coalesce * 1000)),
      filter: synced,
      // a warm standby's entries are the peers' flows, not ours: they must not go back to the peer as ours
      ...(cfg.commit.warm ? { exclude: (key: string) => this.warm!.holds(key) } : {}),
      clock: systemClock,
      log: log.child({ c: 'kernel' }),
      firstVersion: Date.now() * 1000,
      minAgeMs: cfg.sync.minAge,
    });
    // Read here, so that a missing or weak key (or certificate mode's files) is reported under its config key name,
    // not the transport's option; the transport reads them again. Over Redis (shared infrastructure) every frame
    // carries a MAC made with the cluster key, checked end to end.
    const needKey = viaRedis ? cfg.security.mode !== 'insecure' : cfg.security.mode === 'psk';
    const psk = needKey ? loadPsk(cfg.security.keyFile, 'security.keyFile') : undefined;
    if (cfg.transport !== 'redis' && cfg.security.mode === 'cert') loadCerts(...certFiles(cfg.security));
    const macKey = viaRedis && psk ? createMacKey(psk) : undefined;
    const kinds = cfg.transport === 'both' ? (['tcp', 'redis'] as const) : [cfg.transport];
    const paths = kinds.map((kind) => {
      const transport = kind === 'redis' ? redisTransport(cfg, log, macKey) : tcpTransport(cfg, log);
      const engine = new SyncEngine(
        {
          nodeId: cfg.nodeId,
          clusterId: cfg.clusterId,
          coalesceMs: cfg.sync.coalesce,
          digestIntervalMs: cfg.sync.digestInterval,
          heartbeatMs: cfg.link.heartbeat,
          maxFrameBytes: cfg.link.maxFrame,
          ...(kind === 'redis' && macKey ? { macKey } : {}),
        },
        this.mirror.local,
        transport,
        systemClock,
        log.child({ c: kinds.length > 1 ? `sync-${kind}` : 'sync' }),
      );
      return { name: kind, engine, transport };
    });
    this.transports = paths.map((p) => p.transport);
    // paths within one heartbeat of each other are level: the direct link wins
    this.sync = new SyncPaths(paths, cfg.link.heartbeat);
    if (cfg.commit.warm) {
      const warm = new WarmStandby(this.mirror.ct, () => this.sync.peerTables().values(), () => this.writePolicy(false), () => systemClock.now(), log.child({ c: 'warm' }));
      this.warm = warm;
      for (const p of paths) p.engine.onPeerTable = (_id, t) => (t.onChange = (k) => warm.changed(k));
      // a peer's copy now comes from another path: whatever differs between the two must be written
      this.sync.onSwitch = (_id, from, to) => {
        from?.forEach((k) => warm.changed(k));
        to.forEach((k) => warm.changed(k));
      };
      this.mirror.onForeignDestroy = (k) => warm.destroyed(k);
      this.mirror.onEventsLost = () => warm.eventsLost();
    }
    // the end of a burst of kernel events, or of what a trickle brought in one hold (holdUs, above): its
    // changes go out now, as one frame, rather than at the engine's next 1 ms check
    this.mirror.onQuiet = () => this.sync.flush();
    // timeouts the kernel refreshed silently, found by any dump-and-diff
    this.mirror.onDrift = (drift) => this.sync.sendRefreshes(drift);
    this.mirror.onChange = (key, change, _ev, slot) => {
      const reborn = rebornOf(change);
      if (reborn !== undefined) this.sync.changed(key, reborn, slot);
    };
    this.ha = new HaMachine(
      {
        commit: (progress) => this.commit(progress),
        takeOver: async () => {
          // the committed flows are ours now: once the commit's closing resync has picked them up, send our whole
          // table out (not awaited: the transition's result is the commit's)
          void this.mirror.settled().then(() => this.sync.bulk());
        },
        requestResync: () => {
          this.warm?.resume(); // not MASTER any more: follow the new master's table into our kernel again
          this.sync.requestResync();
        },
        schedulePurge: () => {
          this.warm?.resume();
          this.schedulePurge();
        },
        cancelPurge: () => {
          if (this.purgeTimer) clearTimeout(this.purgeTimer);
          this.purgeTimer = undefined;
        },
        flushSends: () => this.sync.flush(),
      },
      log.child({ c: 'ha' }),
    );
    this.control = new ControlServer(cfg.control.socket, log.child({ c: 'control' }));
    this.registerControl();
  }

  /** Write what the peers sent into our kernel (MASTER, or `ctsync commit`). */
  async commit(progress?: (done: number, total: number) => void): Promise<CommitReport> {
    const labels = this.cfg.commit.labels && (await rulesetUsesLabels(this.cfg.kernel.netns));
    if (this.cfg.commit.labels && !labels) this.log.warn('commit.labels is on but the ruleset does not use ct label: labels are not written (the kernel would refuse them)');
    // No events while we write: the kernel skips building them. One dump-and-diff afterwards picks up both our
    // committed flows and whatever traffic created meanwhile. The commit is done (and answered) once the kernel
    // holds every entry; that resync runs on in the background (stats: kernel.resyncs), and takeOver waits for it.
    const release = this.mirror.pauseEvents();
    let report: CommitReport;
    try {
      // warm standby: most of the table is in the kernel already; only the last round's changes are left
      const delta = await this.warm?.takeOver();
      const tables = this.sync.peerTables().values();
      const policy = this.writePolicy(labels);
      report = delta
        ? { ...(await commitKeys(this.mirror.ct, tables, delta, policy, systemClock.now())), warm: true }
        : await commitPeerTables(this.mirror.ct, tables, policy, systemClock.now(), progress, this.cfg.kernel.netns);
    } finally {
      release().catch(() => {}); // a failed dump is logged and counted by the mirror, and retried by the next refresh
    }
    this.log.info({ commit: report }, `committed ${report.entries} peer entries in ${report.durationMs} ms`);
    return report;
  }

  private writePolicy(labels: boolean): WritePolicy {
    return { ...DEFAULT_WRITE_POLICY, liberal: this.cfg.commit.liberal, labels };
  }

  /** BACKUP/FAULT: after ha.purgeAfter, drop the flows this node no longer forwards (a later MASTER cancels it). */
  private schedulePurge(): void {
    if (this.purgeTimer) clearTimeout(this.purgeTimer);
    this.purgeTimer = setTimeout(() => void this.purge(), this.cfg.ha.purgeAfter);
    this.purgeTimer.unref();
  }

  private async purge(): Promise<void> {
    this.purgeTimer = undefined;
    if (this.ha.role === 'master') return;
    const flows: Flow[] = [];
    // a warm standby's entries are the new master's flows, written on purpose
    this.mirror.local.forEach((k) => void (this.warm?.holds(k) || flows.push(this.mirror.local.get(k)!)));
    const r = await this.mirror.ct.write(flows.map((flow) => ({ op: 'delete' as const, flow })));
    this.log.info({ deleted: r.counts.deleted, absent: r.counts.absent, failed: r.counts.failed }, 'purged stale kernel entries after leaving MASTER');
    await this.mirror.resync('purge').catch(() => {});
  }

  private readinessQueued = false;
  /** Re-check readiness once the current callback (an engine's frame, an HA transition) has returned. */
  private readinessSoon(): void {
    if (this.readinessQueued) return;
    this.readinessQueued = true;
    setImmediate(() => {
      this.readinessQueued = false;
      this.updateReadiness();
    });
  }

  /** Feed readiness back into VRRP through the track file, on every change. */
  private updateReadiness(): void {
    const r = readiness(
      peerReadiness(this.sync.status(), syncPeerIds(this.cfg), this.startedAt, systemClock.now()),
      this.cfg.ha.maxLinkDown,
      this.ha.role === 'master',
      Date.now() - this.startedAt,
    );
    this.notReady = r.reasons;
    if (r.stale.join() !== this.stale.join() && r.stale.length) this.log.warn({ stale: r.stale }, `copy of the peer state may be stale: ${r.stale.join('; ')}`);
    this.stale = r.stale;
    const ready = r.ready;
    if (ready === this.readyState) return;
    this.readyState = ready;
    try {
      writeTrackFile(this.cfg.ha.trackFile, ready);
    } catch (err) {
      this.log.error({ err, file: this.cfg.ha.trackFile }, 'cannot write the keepalived track file (ha.trackFile)');
    }
    this.log.info({ ready, reasons: this.notReady }, ready ? 'ready: this node may become master' : `not ready: ${this.notReady.join('; ')}`);
  }

  async start(): Promise<void> {
    if (this.cfg.security.mode === 'insecure') this.log.warn('security.mode is insecure: the peer link is PLAINTEXT and UNAUTHENTICATED; anyone who reaches it can write conntrack entries');
    await this.mirror.start();
    this.sync.start();
    this.warm?.start();
    for (const t of this.transports) await t.start();
    await this.control.start();
    if (this.cfg.metrics.listen) this.metrics = await serveMetrics(this.cfg.metrics.listen, () => collectMetrics(this.stats()));
    this.updateReadiness();
    // changes of a peer's state or of the role come as events; the clock's part (ha.maxLinkDown) is checked about
    // once a second, on the sync engine's heartbeat wake-up rather than a timer of its own
    for (const p of this.sync.paths) p.engine.onStatusChange = () => this.readinessSoon();
    this.sync.primary.onChores = () => this.updateReadiness();
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
      return (await this.mirror.refresh()).length; // sent by onDrift
    } catch (err) {
      this.log.warn({ err }, 'timeout refresh failed');
      return 0;
    }
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    for (const p of this.sync.paths) p.engine.onStatusChange = () => {}; // the track file keeps its last word
    if (this.purgeTimer) clearTimeout(this.purgeTimer);
    this.warm?.stop();
    this.sync.stop();
    for (const t of this.transports) await t.stop();
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
      .handle('dump', async (args, _progress, write) => {
        const which = args.table === 'peer' ? 'peer' : 'local';
        const sources: DumpSource[] = [];
        if (which === 'local') sources.push(this.mirror.local);
        else {
          const tables = this.sync.peerTables();
          const wanted = typeof args.peer === 'string' ? args.peer : undefined;
          if (wanted && !tables.has(wanted)) throw new ControlError('CTS_ERR_CONTROL_ARGS', `no peer '${wanted}'; peers: ${[...tables.keys()].join(', ') || 'none yet'}`);
          for (const [id, t] of tables) if (!wanted || id === wanted) sources.push(t);
        }
        return { table: which, count: await writeDocument(sources, now, write) };
      })
      .handle('resync', () => {
        this.sync.requestResync();
        return { requested: true };
      })
      .handle('bulk', async () => {
        await this.sync.bulk();
        return { sent: this.mirror.local.size };
      })
      .handle('refresh', async () => ({ refreshed: await this.refresh() }))
      .handle('ha', (args, progress) => {
        const t = args.transition as Transition | undefined;
        if (!t || !['MASTER', 'BACKUP', 'FAULT', 'STOP'].includes(t.state)) throw new ControlError('CTS_ERR_CONTROL_ARGS', 'ha needs { transition: { state: MASTER|BACKUP|FAULT|STOP } }');
        const forkedAt = typeof args.forkedAt === 'number' ? args.forkedAt : undefined;
        return this.ha.apply(t, String(args.source ?? 'cli'), forkedAt, (d, n) => progress(d, n, 'commit')).finally(() => this.readinessSoon());
      })
      .handle('commit', (_args, progress) => this.commit((d, n) => progress(d, n, 'commit')))
      .handle('flush', async (args) => {
        if (args.table === 'peer') {
          for (const t of this.sync.allPeerTables()) t.clear();
          this.sync.requestResync();
          return { flushed: 'peer', resyncRequested: true };
        }
        await this.mirror.resync('flush');
        return { flushed: 'local', entries: this.mirror.local.size };
      });
  }
}

/** Redis Streams (`transport: redis` or `both`). */
function redisTransport(cfg: Readonly<Config>, log: Logger, macKey: MacKey | undefined): Transport {
  const r = cfg.redis;
  return new RedisTransport(
    {
      nodeId: cfg.nodeId,
      clusterId: cfg.clusterId,
      peers: syncPeerIds(cfg),
      redis: redisConnect(r),
      maxLen: r.maxLen,
      maxBufferBytes: r.maxBuffer,
      heartbeatMs: cfg.link.heartbeat,
      deadAfterMs: cfg.link.deadAfter,
      logger: log.child({ c: 'redis' }),
    },
    macKey ? { macKey } : {},
  );
}

/** The direct TLS peer link (`transport: tcp`, the default, or `both`). */
function tcpTransport(cfg: Readonly<Config>, log: Logger): Transport {
  const s = cfg.security;
  return new TcpTransport({
    nodeId: cfg.nodeId,
    clusterId: cfg.clusterId,
    listen: parseHostPort(cfg.listen)!,
    peers: cfg.peers.map((p) => ({ nodeId: p.id, addresses: p.addresses })),
    ...(s.mode === 'insecure' ? { insecure: true } : s.mode === 'psk' ? { tls: { pskFile: s.keyFile } } : { tls: { caFile: s.ca, certFile: s.cert, keyFile: s.key } }),
    heartbeatMs: cfg.link.heartbeat,
    callerHeartbeats: true, // the sync engine beats every link.heartbeat
    deadAfterMs: cfg.link.deadAfter,
    maxFrameBytes: cfg.link.maxFrame,
    logger: log.child({ c: 'link' }),
  });
}
