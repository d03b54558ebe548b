'use strict'
// Issue 19, item 9: kafkajs's error-recovery spec ("recovers from crashes due to retriable
// errors", src/consumer/__tests__/errorRecovery.spec.js) against the real broker, plus the
// case that matters for redelivery: eachMessage fails with a retriable error mid-partition,
// kafkajs commits what it resolved, crashes, leaves the group, restarts, rejoins and asks
// OffsetFetch where to resume. No message before the failing one may be seen again.
const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { KafkaJSError } = require('kafkajs')
const { startBroker, kafkaFor, producerFor } = require('./helpers')

let broker
before(async () => { broker = await startBroker({ 'num.partitions': 1 }) })
after(async () => {
  const res = await broker.stop()
  assert.deepEqual(res, { code: 0, signal: null }, `broker exit after SIGTERM\n${broker.stderrTail()}`)
})

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function waitFor (what, check, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

// A kafka instance whose clusters are remembered, so a test can reach the consumer's
// group coordinator as the spec does (kafkajs builds one cluster per client).
function recordingKafka () {
  const kafka = kafkaFor(broker)
  const sym = Object.getOwnPropertySymbols(kafka)
    .find(s => s.toString() === 'Symbol(private:Kafka:createCluster)')
  const create = kafka[sym]
  const clusters = []
  kafka[sym] = options => { const c = create(options); clusters.push(c); return c }
  return { kafka, clusters }
}

async function committed (kafka, groupId, topic) {
  const admin = kafka.admin()
  await admin.connect()
  try {
    const [{ partitions }] = await admin.fetchOffsets({ groupId, topics: [topic] })
    return partitions.find(p => p.partition === 0).offset
  } finally {
    await admin.disconnect()
  }
}

test('kafkajs errorRecovery spec: a retriable JoinGroup failure crashes, restarts, consumes once', async () => {
  const topic = 'js-redelivery-join'
  const groupId = 'js-redelivery-join-group'
  const { kafka, clusters } = recordingKafka()
  const consumer = kafka.consumer({ groupId, heartbeatInterval: 100, maxWaitTimeInMs: 1, maxBytesPerPartition: 180, retry: { retries: 0 } })
  const consumerCluster = clusters[clusters.length - 1]
  const producer = producerFor(kafka)
  const crashes = []
  consumer.on(consumer.events.CRASH, e => crashes.push(e.payload))
  await producer.connect()
  await producer.send({ acks: 1, topic, messages: [{ key: 'warm', value: 'up' }] }) // creates the topic
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const coordinator = await consumerCluster.findGroupCoordinator({ groupId })
  const original = coordinator.joinGroup
  const error = new KafkaJSError(new Error('boom'), { retriable: true })
  coordinator.joinGroup = async () => { coordinator.joinGroup = original; throw error }
  const seen = []
  let consumerCommitted = 0
  consumer.on(consumer.events.COMMIT_OFFSETS, e => {
    for (const t of e.payload.topics) for (const p of t.partitions) consumerCommitted = Math.max(consumerCommitted, Number(p.offset))
  })
  await consumer.run({ eachMessage: async ({ message }) => { seen.push(message.offset) } })
  await producer.send({ acks: 1, topic, messages: [{ key: 'k', value: 'v' }] })
  try {
    await waitFor('the crash', () => crashes.length > 0)
    assert.equal(crashes[0].restart, true)
    await waitFor('both messages', () => seen.length >= 2)
    await waitFor('the commit', () => consumerCommitted >= 2)
    await sleep(500) // room for a redelivery to show up
  } finally {
    await consumer.disconnect()
    await producer.disconnect()
  }
  // the spec's expectation: each message exactly once across the crash and restart
  assert.deepEqual(seen, ['0', '1'])
  assert.equal(await committed(kafka, groupId, topic), '2')
})

test('a retriable eachMessage failure: crash, commit, LeaveGroup, restart; nothing committed comes back', async () => {
  const topic = 'js-redelivery-each'
  const groupId = 'js-redelivery-each-group'
  const COUNT = 50
  const FAIL_AT = '20'
  const kafka = kafkaFor(broker)
  const producer = producerFor(kafka)
  await producer.connect()
  await producer.send({ acks: -1, topic, messages: Array.from({ length: COUNT }, (_, i) => ({ key: `k${i}`, value: `v${i}` })) })
  const consumer = kafka.consumer({ groupId, heartbeatInterval: 100, maxWaitTimeInMs: 1, maxBytesPerPartition: 180, retry: { retries: 0, initialRetryTime: 10 } })
  const crashes = []
  consumer.on(consumer.events.CRASH, e => crashes.push(e.payload))
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const seen = []
  let failed = false
  await consumer.run({
    eachMessage: async ({ message }) => {
      seen.push(message.offset)
      if (message.offset === FAIL_AT && !failed) {
        failed = true
        throw new KafkaJSError(new Error('retriable failure'), { retriable: true })
      }
    }
  })
  try {
    await waitFor('every message', () => seen.includes(String(COUNT - 1)))
  } finally {
    await consumer.disconnect()
    await producer.disconnect()
  }
  assert.equal(crashes.length, 1)
  assert.equal(crashes[0].restart, true)
  const counts = new Map()
  for (const o of seen) counts.set(o, (counts.get(o) || 0) + 1)
  const repeated = [...counts].filter(([, n]) => n > 1).map(([o]) => o)
  // kafkajs committed offsets up to FAIL_AT before crashing, so only the failed message
  // is delivered again (at-least-once for the message that threw, never for the others).
  assert.deepEqual(repeated, [FAIL_AT], `redelivered: ${repeated}; order: ${seen.join(',')}`)
  assert.equal(counts.size, COUNT)
  assert.equal(await committed(kafka, groupId, topic), String(COUNT))
})
