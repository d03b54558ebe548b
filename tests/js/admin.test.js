'use strict'
// kafkajs 2.x admin: auto topic creation, createTopics/deleteTopics (+ error cases),
// describeConfigs, fetchTopicOffsets and fetchTopicOffsetsByTimestamp.
const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { ConfigResourceTypes } = require('kafkajs')
const { startBroker, kafkaFor, producerFor, createCluster } = require('./helpers')

let broker
let kafka
before(async () => {
  broker = await startBroker({ 'num.partitions': 3 })
  kafka = kafkaFor(broker)
})
after(async () => {
  const res = await broker.stop()
  assert.deepEqual(res, { code: 0, signal: null }, `broker exit after SIGTERM\n${broker.stderrTail()}`)
})

async function withAdmin (fn) {
  const admin = kafka.admin()
  await admin.connect()
  try { return await fn(admin) } finally { await admin.disconnect() }
}

function errorTypes (err) {
  if (Array.isArray(err.errors)) return err.errors.map(e => e.type)
  return [err.type]
}

function partitionsOf (md, topic) {
  const t = md.topics.find(t => t.name === topic)
  assert.ok(t, `topic ${topic} missing from metadata`)
  return t.partitions.map(p => p.partitionId).sort((a, b) => a - b)
}

test('produce to a missing topic auto-creates it with num.partitions', async () => {
  const producer = producerFor(kafka)
  await producer.connect()
  const res = await producer.send({ topic: 'js-auto-produce', messages: [{ key: 'k', value: 'v' }] })
  await producer.disconnect()
  assert.equal(res.length, 1)
  assert.equal(res[0].errorCode, 0)
  assert.equal(res[0].baseOffset, '0')
  await withAdmin(async admin => {
    assert.ok((await admin.listTopics()).includes('js-auto-produce'))
    const md = await admin.fetchTopicMetadata({ topics: ['js-auto-produce'] })
    assert.deepEqual(partitionsOf(md, 'js-auto-produce'), [0, 1, 2])
  })
})

test('metadata for a missing topic auto-creates it only when allowed', async () => {
  const noAuto = createCluster(kafka, { allowAutoTopicCreation: false })
  await noAuto.connect()
  try {
    // Metadata v4+ with allow_auto_topic_creation=false must NOT create the topic
    const err = await noAuto.metadata({ topics: ['js-no-auto'] }).then(() => null, e => e)
    assert.ok(err, 'metadata with allow_auto_topic_creation=false should fail')
    assert.equal(err.type, 'UNKNOWN_TOPIC_OR_PARTITION')
  } finally { await noAuto.disconnect() }
  await withAdmin(async admin => {
    assert.ok(!(await admin.listTopics()).includes('js-no-auto'))
  })

  // what a kafkajs producer's cluster does: allow_auto_topic_creation=true
  const auto = createCluster(kafka, { allowAutoTopicCreation: true })
  await auto.connect()
  try {
    const md = await auto.metadata({ topics: ['js-auto-metadata'] })
    const t = md.topicMetadata.find(t => t.topic === 'js-auto-metadata')
    assert.ok(t, 'auto-created topic must be in the metadata response')
    assert.equal(t.topicErrorCode, 0)
    assert.deepEqual(t.partitionMetadata.map(p => p.partitionId).sort(), [0, 1, 2])
  } finally { await auto.disconnect() }
  await withAdmin(async admin => {
    const md = await admin.fetchTopicMetadata({ topics: ['js-auto-metadata'] })
    assert.deepEqual(partitionsOf(md, 'js-auto-metadata'), [0, 1, 2])
  })
})

test('createTopics / deleteTopics and their errors', async () => {
  await withAdmin(async admin => {
    assert.equal(await admin.createTopics({
      topics: [
        { topic: 'js-created-1', numPartitions: 5, replicationFactor: 1 },
        { topic: 'js-created-2', numPartitions: 1, configEntries: [{ name: 'retention.ms', value: '3600000' }] },
        { topic: 'js-created-default' }
      ]
    }), true)
    const topics = await admin.listTopics()
    for (const t of ['js-created-1', 'js-created-2', 'js-created-default']) assert.ok(topics.includes(t), t)
    const md = await admin.fetchTopicMetadata({ topics: ['js-created-1', 'js-created-2', 'js-created-default'] })
    assert.deepEqual(partitionsOf(md, 'js-created-1'), [0, 1, 2, 3, 4])
    assert.deepEqual(partitionsOf(md, 'js-created-2'), [0])
    assert.deepEqual(partitionsOf(md, 'js-created-default'), [0, 1, 2])

    // existing topic: the broker answers TOPIC_ALREADY_EXISTS, which kafkajs maps to `false`
    assert.equal(await admin.createTopics({ topics: [{ topic: 'js-created-1', numPartitions: 1 }] }), false)

    // replication factor 3 on a single broker
    const rf = await admin.createTopics({ topics: [{ topic: 'js-bad-rf', numPartitions: 1, replicationFactor: 3 }] })
      .then(() => null, e => e)
    assert.ok(rf, 'replicationFactor 3 must be rejected')
    assert.deepEqual(errorTypes(rf), ['INVALID_REPLICATION_FACTOR'])
    assert.ok(!(await admin.listTopics()).includes('js-bad-rf'))

    // invalid partition count
    const np = await admin.createTopics({ topics: [{ topic: 'js-bad-np', numPartitions: 0 }] }).then(() => null, e => e)
    assert.ok(np, 'numPartitions 0 must be rejected')
    assert.deepEqual(errorTypes(np), ['INVALID_PARTITIONS'])

    // validateOnly creates nothing
    assert.equal(await admin.createTopics({ validateOnly: true, waitForLeaders: false, topics: [{ topic: 'js-validate-only', numPartitions: 1 }] }), true)
    assert.ok(!(await admin.listTopics()).includes('js-validate-only'))

    await admin.deleteTopics({ topics: ['js-created-1', 'js-created-2'] })
    const after = await admin.listTopics()
    assert.ok(!after.includes('js-created-1'))
    assert.ok(!after.includes('js-created-2'))
    assert.ok(after.includes('js-created-default'))

    // deleting a missing topic
    const del = await admin.deleteTopics({ topics: ['js-created-1'] }).then(() => null, e => e)
    assert.ok(del, 'deleting a missing topic must fail')
    // kafkajs treats UNKNOWN_TOPIC_OR_PARTITION as retriable and wraps it after its retries
    const cause = del.cause || del
    assert.equal(cause.type, 'UNKNOWN_TOPIC_OR_PARTITION', `${del.name}: ${del.message}`)
  })
})

test('describeConfigs shows defaults and creation-time overrides', async () => {
  await withAdmin(async admin => {
    await admin.createTopics({
      topics: [
        { topic: 'js-cfg', numPartitions: 1, configEntries: [{ name: 'retention.ms', value: '123456' }] },
        { topic: 'js-cfg-plain', numPartitions: 1 }
      ]
    })
    const res = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [
        { type: ConfigResourceTypes.TOPIC, name: 'js-cfg' },
        { type: ConfigResourceTypes.TOPIC, name: 'js-cfg-plain' }
      ]
    })
    const byName = Object.fromEntries(res.resources.map(r => [r.resourceName, r]))
    for (const r of res.resources) {
      assert.equal(r.errorCode, 0)
      assert.equal(r.resourceType, ConfigResourceTypes.TOPIC)
    }
    const cfg = Object.fromEntries(byName['js-cfg'].configEntries.map(e => [e.configName, e]))
    const plain = Object.fromEntries(byName['js-cfg-plain'].configEntries.map(e => [e.configName, e]))
    assert.equal(cfg['retention.ms'].configValue, '123456')
    assert.equal(cfg['retention.ms'].isDefault, false)
    assert.equal(cfg['cleanup.policy'].configValue, 'delete')
    assert.equal(plain['retention.ms'].configValue, '604800000')
    assert.equal(plain['cleanup.policy'].configValue, 'delete')

    const some = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: 'js-cfg', configNames: ['retention.ms'] }]
    })
    assert.deepEqual(some.resources[0].configEntries.map(e => [e.configName, e.configValue]), [['retention.ms', '123456']])
  })
})

test('fetchTopicOffsets / fetchTopicOffsetsByTimestamp follow Kafka ListOffsets semantics', async () => {
  const topic = 'js-times'
  const N = 30
  const t0 = Date.now() - 600000
  await withAdmin(admin => admin.createTopics({ topics: [{ topic, numPartitions: 2 }] }))
  const producer = producerFor(kafka)
  await producer.connect()
  for (let start = 0; start < N; start += 7) { // several batches
    const messages = []
    for (let i = start; i < Math.min(N, start + 7); i++) {
      messages.push({ key: `k${i}`, value: `v${i}`, partition: 0, timestamp: String(t0 + 10 * i) })
    }
    await producer.send({ topic, acks: -1, messages })
  }
  await producer.disconnect()

  await withAdmin(async admin => {
    const offs = (await admin.fetchTopicOffsets(topic)).sort((a, b) => a.partition - b.partition)
    assert.deepEqual(offs, [
      { partition: 0, offset: String(N), high: String(N), low: '0' },
      { partition: 1, offset: '0', high: '0', low: '0' }
    ])
    const byTs = async ts => (await admin.fetchTopicOffsetsByTimestamp(topic, ts))
      .sort((a, b) => a.partition - b.partition).map(p => p.offset)
    assert.deepEqual(await byTs(t0 + 100), ['10', '0'])           // exact match
    assert.deepEqual(await byTs(t0 + 105), ['11', '0'])           // between records -> next one
    assert.deepEqual(await byTs(t0 - 5000), ['0', '0'])           // before all
    // after all records Kafka returns -1; kafkajs maps that to the high watermark
    assert.deepEqual(await byTs(t0 + 10 * N), [String(N), '0'])
  })

  // the raw ListOffsets answer, without kafkajs' mapping of -1
  const cluster = createCluster(kafka)
  await cluster.connect()
  try {
    await cluster.addTargetTopic(topic)
    const raw = async ts => {
      const [res] = await cluster.fetchTopicsOffset([{ topic, fromTimestamp: ts, partitions: [{ partition: 0 }, { partition: 1 }] }])
      return res.partitions.sort((a, b) => a.partition - b.partition).map(p => p.offset)
    }
    assert.deepEqual(await raw(t0 + 10 * (N - 1)), [String(N - 1), '-1'])
    assert.deepEqual(await raw(t0 + 10 * (N - 1) + 1), ['-1', '-1'])
    assert.deepEqual(await raw(t0 + 15), ['2', '-1'])
  } finally { await cluster.disconnect() }
})

test('describeCluster lists this broker as the controller', async () => {
  await withAdmin(async admin => {
    const info = await admin.describeCluster()
    assert.equal(info.brokers.length, 1)
    assert.equal(info.brokers[0].host, broker.host)
    assert.equal(info.brokers[0].port, broker.port)
    assert.equal(info.controller, info.brokers[0].nodeId)
    assert.ok(info.clusterId, 'cluster id')
  })
})
