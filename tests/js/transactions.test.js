'use strict'
// kafkajs 2.x: idempotent producer (InitProducerId, sequences) and transactions (commit and
// abort) against agentlog; read back with read_committed Fetch, which must hide the aborted
// records (kafkajs drops them using the response's aborted transactions list).
const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { startBroker, kafkaFor, producerFor, readPartition, createCluster } = require('./helpers')

let broker
let kafka
before(async () => {
  broker = await startBroker({ 'num.partitions': 1 })
  kafka = kafkaFor(broker)
})
after(async () => { if (broker) await broker.stop() })

test('an idempotent producer writes every record exactly once, in order', async () => {
  const producer = producerFor(kafka, { idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  for (let b = 0; b < 20; b++) {
    const messages = []
    for (let i = 0; i < 100; i++) messages.push({ value: `m${b * 100 + i}` })
    await producer.send({ topic: 'js-idem', acks: -1, messages })
  }
  await producer.disconnect()
  const { records } = await readPartition(kafka, 'js-idem', 0)
  assert.deepEqual(records.map(r => r.value.toString()),
    Array.from({ length: 2000 }, (_, i) => `m${i}`))
})

test('aborted transactions are hidden from read_committed reads', async () => {
  const producer = producerFor(kafka, { idempotent: true, maxInFlightRequests: 1, transactionalId: 'js-tx' })
  await producer.connect()
  const aborted = await producer.transaction()
  await aborted.send({ topic: 'js-txn', messages: [{ value: 'a1' }, { value: 'a2' }] })
  await aborted.abort()
  const committed = await producer.transaction()
  await committed.send({ topic: 'js-txn', messages: [{ value: 'c1' }, { value: 'c2' }] })
  await committed.commit()
  await producer.disconnect()
  // One read_committed Fetch from 0: the aborted transaction is listed, and skipping its
  // producer's records from its first offset up to its abort marker (what consumers do)
  // leaves the committed ones.
  const cluster = createCluster(kafka)
  await cluster.connect()
  try {
    await cluster.addTargetTopic('js-txn')
    await cluster.refreshMetadata()
    const meta = cluster.findTopicPartitionMetadata('js-txn').find(p => p.partitionId === 0)
    const leader = await cluster.findBroker({ nodeId: String(meta.leader) })
    const resp = await leader.fetch({
      replicaId: -1,
      isolationLevel: 1,
      maxWaitTime: 100,
      minBytes: 1,
      maxBytes: 1 << 20,
      topics: [{ topic: 'js-txn', partitions: [{ partition: 0, fetchOffset: '0', maxBytes: 1 << 20 }] }]
    })
    const pr = resp.responses[0].partitions[0]
    assert.equal(pr.errorCode, 0)
    assert.equal(pr.lastStableOffset, '6') // 4 records, 2 markers
    assert.equal(pr.abortedTransactions.length, 1)
    const { producerId, firstOffset } = pr.abortedTransactions[0]
    assert.equal(firstOffset, '0')
    const skipping = new Set()
    const visible = []
    for (const m of pr.messages) {
      if (BigInt(m.offset) === BigInt(firstOffset)) skipping.add(producerId)
      if (m.isControlRecord) { skipping.delete(producerId); continue }
      if (!skipping.has(producerId)) visible.push(m.value.toString())
    }
    assert.deepEqual(visible, ['c1', 'c2'])
  } finally {
    await cluster.disconnect()
  }
  const { records } = await readPartition(kafka, 'js-txn', 0, { idleMs: 3000 })
  assert.equal(records.length, 4, 'read_uncommitted-style raw read sees both transactions')
})
