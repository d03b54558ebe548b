'use strict'
// Shared helpers for the kafkajs compatibility tests: start/stop a real agentlog broker,
// build kafkajs clients that only use what agentlog supports, and read a partition
// back without a consumer group (kafkajs consumers always need a group).
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')
const { Kafka, logLevel, Partitioners } = require('kafkajs')

const REPO_ROOT = path.resolve(__dirname, '..', '..')
const LISTEN_RE = /^agentlog listening on (\S+):(\d+)$/
const SECURED_LISTEN_RE = /^agentlog listening on ([A-Z_]+):\/\/(\S+:\d+)$/

function agentlogBin () {
  let p = process.env.AGENTLOG_BIN || path.join(REPO_ROOT, 'target', 'debug', 'agentlog')
  if (!path.isAbsolute(p)) p = path.join(REPO_ROOT, p)
  if (!fs.existsSync(p)) throw new Error(`agentlog binary not found at ${p} (build it or set AGENTLOG_BIN)`)
  return p
}

// Start a broker on 127.0.0.1:0 with a fresh data dir; resolves once it printed its port.
// The broker reads AGENTLOG_* variables as settings, so the caller's AGENTLOG_* (AGENTLOG_BIN
// included) must not leak into it; only AGENTLOG_LOG (log filter) is kept.
function brokerEnv () {
  return Object.fromEntries(Object.entries(process.env)
    .filter(([k]) => !k.startsWith('AGENTLOG_') || k === 'AGENTLOG_LOG'))
}

async function startBroker (settings = { 'num.partitions': 3 }, timeoutMs = 30000) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agentlog-js-'))
  const args = ['serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(tmp, 'data')]
  for (const [k, v] of Object.entries(settings)) args.push('--set', `${k}=${v}`)
  const stderrPath = path.join(tmp, 'broker.stderr.log')
  const errFd = fs.openSync(stderrPath, 'w')
  const proc = spawn(agentlogBin(), args, { stdio: ['ignore', 'pipe', errFd], env: brokerEnv() })
  fs.closeSync(errFd)
  const exited = new Promise(resolve => proc.on('exit', (code, signal) => resolve({ code, signal })))
  const stderrTail = () => {
    try { return fs.readFileSync(stderrPath, 'utf8').slice(-4000) } catch { return '' }
  }

  // Secured listeners print PROTOCOL://host:port lines; kept for listener(protocol).
  const secured = {}
  const securedWaiters = []
  const listen = await new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: proc.stdout })
    rl.on('line', line => {
      const m = SECURED_LISTEN_RE.exec(line.trim())
      if (m) {
        secured[m[1]] = m[2]
        securedWaiters.splice(0).forEach(wake => wake())
      }
    })
    const timer = setTimeout(() => {
      proc.kill('SIGKILL')
      reject(new Error(`broker did not print its listen line within ${timeoutMs}ms\n${stderrTail()}`))
    }, timeoutMs)
    rl.on('line', line => {
      const m = LISTEN_RE.exec(line.trim())
      if (m) {
        clearTimeout(timer)
        resolve({ host: m[1], port: Number(m[2]) })
      }
    })
    proc.on('exit', code => {
      clearTimeout(timer)
      reject(new Error(`broker exited (${code}) before listening\n${stderrTail()}`))
    })
  })
  proc.stdout.resume()

  return {
    host: listen.host,
    port: listen.port,
    bootstrap: `${listen.host}:${listen.port}`,
    stderrTail,
    // host:port of the listener with this security protocol ('SASL_SSL', ...)
    async listener (protocol, waitMs = 10000) {
      const deadline = Date.now() + waitMs
      while (!(protocol in secured)) {
        if (Date.now() > deadline) throw new Error(`no ${protocol} listening line`)
        await new Promise(resolve => { securedWaiters.push(resolve); setTimeout(resolve, 100) })
      }
      return secured[protocol]
    },
    // SIGTERM, wait, return the exit code (null + signal if killed)
    async stop (waitMs = 30000) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM')
      const timer = setTimeout(() => proc.kill('SIGKILL'), waitMs)
      const res = await exited
      clearTimeout(timer)
      if (res.code === 0) fs.rmSync(tmp, { recursive: true, force: true })
      return res
    }
  }
}

function kafkaFor (broker, extra = {}) {
  return new Kafka({
    clientId: 'agentlog-js-tests',
    brokers: [broker.bootstrap],
    logLevel: logLevel.NOTHING,
    connectionTimeout: 10000,
    requestTimeout: 30000,
    retry: { retries: 3, initialRetryTime: 100 },
    ...extra
  })
}

function producerFor (kafka, extra = {}) {
  return kafka.producer({
    idempotent: false, // the plain path; transactions.test.js covers idempotence
    allowAutoTopicCreation: true,
    createPartitioner: Partitioners.DefaultPartitioner,
    ...extra
  })
}

// kafkajs has no consumer without a group. Its Cluster/Broker classes (what the admin and
// consumer are built on) can send a plain Fetch, though; we reach the cluster through the
// Kafka instance's private createCluster factory so codecs and logging are shared.
function createCluster (kafka, { allowAutoTopicCreation = false } = {}) {
  const sym = Object.getOwnPropertySymbols(kafka)
    .find(s => s.toString() === 'Symbol(private:Kafka:createCluster)')
  if (!sym) throw new Error('kafkajs internals changed: createCluster symbol not found')
  return kafka[sym]({ allowAutoTopicCreation })
}

// Read every record of topic/partition from offset 0 up to the high watermark reported by
// Fetch. Returns { records, highWatermark }. Stops when no progress is made for idleMs.
async function readPartition (kafka, topic, partition, { idleMs = 10000, maxBytes = 4 << 20 } = {}) {
  const cluster = createCluster(kafka)
  await cluster.connect()
  try {
    await cluster.addTargetTopic(topic)
    await cluster.refreshMetadata()
    const meta = cluster.findTopicPartitionMetadata(topic).find(p => p.partitionId === partition)
    if (!meta) throw new Error(`no metadata for ${topic}/${partition}`)
    const broker = await cluster.findBroker({ nodeId: String(meta.leader) })
    const records = []
    let offset = 0n
    let highWatermark = -1n
    let lastProgress = Date.now()
    for (;;) {
      const resp = await broker.fetch({
        replicaId: -1,
        isolationLevel: 1,
        maxWaitTime: 100,
        minBytes: 1,
        maxBytes,
        topics: [{ topic, partitions: [{ partition, fetchOffset: offset.toString(), maxBytes }] }]
      })
      const pr = resp.responses[0].partitions[0]
      if (pr.errorCode !== 0) throw new Error(`fetch ${topic}/${partition}@${offset}: error ${pr.errorCode}`)
      highWatermark = BigInt(pr.highWatermark)
      for (const m of pr.messages) {
        if (m.isControlRecord) continue
        if (BigInt(m.offset) < offset) continue // batch starts before the requested offset
        records.push(m)
      }
      if (records.length > 0) {
        const next = BigInt(records[records.length - 1].offset) + 1n
        if (next > offset) { offset = next; lastProgress = Date.now() }
      }
      if (offset >= highWatermark && highWatermark >= 0n) break
      if (Date.now() - lastProgress > idleMs) break
    }
    return { records, highWatermark }
  } finally {
    await cluster.disconnect()
  }
}

module.exports = { startBroker, kafkaFor, producerFor, readPartition, createCluster, agentlogBin, REPO_ROOT }
