'use strict'
// kafkajs 2.x: 100,000 keyed records with headers, spread over every codec kafkajs can use
// (none, gzip built in; snappy via kafkajs-snappy; lz4 via @2l/kafkajs-lz4; zstd via a small
// codec over @mongodb-js/zstd), then read back and check every key/value/header/offset/timestamp.
const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { CompressionTypes, CompressionCodecs } = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const LZ4Codec = require('@2l/kafkajs-lz4')
const zstd = require('@mongodb-js/zstd')
const { startBroker, kafkaFor, producerFor, readPartition } = require('./helpers')

// @kafkajs/zstd (cppzst 2.0.6) does not compile against node 20 headers, so register an
// equivalent codec (same interface) on a prebuilt N-API zstd binding.
CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  async compress (encoder) { return zstd.compress(encoder.buffer, 3) },
  async decompress (buffer) { return zstd.decompress(buffer) }
})

// count decompressions per codec during the read-back: the broker must keep each batch in
// the codec the producer used (Kafka's compression.type=producer)
const decompressed = {}
for (const [name, type] of [['gzip', CompressionTypes.GZIP], ['snappy', CompressionTypes.Snappy],
  ['lz4', CompressionTypes.LZ4], ['zstd', CompressionTypes.ZSTD]]) {
  const factory = CompressionCodecs[type]
  decompressed[name] = 0
  CompressionCodecs[type] = () => {
    const codec = factory()
    return {
      compress: codec.compress,
      async decompress (buffer) { decompressed[name]++; return codec.decompress(buffer) }
    }
  }
}

const CODECS = [
  ['none', CompressionTypes.None],
  ['gzip', CompressionTypes.GZIP],
  ['snappy', CompressionTypes.Snappy],
  ['lz4', CompressionTypes.LZ4],
  ['zstd', CompressionTypes.ZSTD]
]
const PER_CODEC = 20000
const PARTITIONS = 3
const TOPIC = 'js-codecs'
const CHUNK = 2000

let broker
before(async () => { broker = await startBroker({ 'num.partitions': 3 }) })
after(async () => {
  const res = await broker.stop()
  assert.deepEqual(res, { code: 0, signal: null }, `broker exit after SIGTERM\n${broker.stderrTail()}`)
})

function expectedRecord (ci, i, t0) {
  const codec = CODECS[ci][0]
  const g = ci * PER_CODEC + i
  const key = `${codec}-${String(i).padStart(6, '0')}`
  const value = i % 997 === 0
    ? null
    : `v:${codec}:${i}:`.repeat(1 + (i % 7)).slice(0, 10 + ((i * 37) % 300))
  const headers = { codec, seq: String(g) }
  if (i % 5 === 0) headers.empty = ''
  if (i % 11 === 0) headers.dup = ['1', '2'] // repeated header key, order kept
  return { key, value, headers, timestamp: t0 + g, partition: g % PARTITIONS }
}

test('produce 100k records over all codecs and read them back exactly', async () => {
  const kafka = kafkaFor(broker)
  const admin = kafka.admin()
  await admin.connect()
  assert.equal(await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: PARTITIONS }] }), true)
  await admin.disconnect()

  const t0 = Date.now() - 3600000
  const expected = new Map()
  const producer = producerFor(kafka)
  await producer.connect()
  const tProduce = Date.now()
  for (let ci = 0; ci < CODECS.length; ci++) {
    for (let start = 0; start < PER_CODEC; start += CHUNK) {
      const messages = []
      for (let i = start; i < Math.min(start + CHUNK, PER_CODEC); i++) {
        const r = expectedRecord(ci, i, t0)
        expected.set(r.key, r)
        messages.push({ key: r.key, value: r.value, headers: r.headers, partition: r.partition, timestamp: String(r.timestamp) })
      }
      const res = await producer.send({ topic: TOPIC, acks: -1, compression: CODECS[ci][1], messages })
      assert.equal(res.length, PARTITIONS)
      for (const r of res) assert.equal(r.errorCode, 0)
    }
  }
  await producer.disconnect()
  const produceMs = Date.now() - tProduce
  const total = CODECS.length * PER_CODEC
  assert.equal(expected.size, total)

  const tRead = Date.now()
  const seen = new Set()
  let n = 0
  for (let p = 0; p < PARTITIONS; p++) {
    const { records, highWatermark } = await readPartition(kafka, TOPIC, p)
    const want = Math.floor(total / PARTITIONS) + (p < total % PARTITIONS ? 1 : 0)
    assert.equal(records.length, want, `partition ${p}: read ${records.length} records, expected ${want} (hw ${highWatermark})`)
    assert.equal(highWatermark, BigInt(want))
    let lastTs = -1
    records.forEach((m, idx) => {
      assert.equal(m.offset, String(idx), `partition ${p}: offsets must be contiguous from 0`)
      const key = m.key.toString()
      const exp = expected.get(key)
      assert.ok(exp, `unexpected key ${key}`)
      assert.ok(!seen.has(key), `duplicate key ${key}`)
      seen.add(key)
      assert.equal(exp.partition, p)
      if (exp.value === null) assert.equal(m.value, null, `${key}: value should be null`)
      else assert.equal(m.value.toString(), exp.value, `${key}: value`)
      const headers = Object.fromEntries(Object.entries(m.headers)
        .map(([k, v]) => [k, Array.isArray(v) ? v.map(String) : v.toString()]))
      assert.deepEqual(headers, exp.headers, `${key}: headers`)
      assert.equal(m.timestamp, String(exp.timestamp), `${key}: timestamp`)
      assert.ok(Number(m.timestamp) > lastTs)
      lastTs = Number(m.timestamp)
    })
    n += records.length
  }
  assert.equal(n, total)
  assert.equal(seen.size, total)
  for (const [name, count] of Object.entries(decompressed)) {
    assert.ok(count > 0, `no ${name} batch came back: ${JSON.stringify(decompressed)}`)
  }
  console.log(`kafkajs: produced ${total} in ${produceMs}ms, read back in ${Date.now() - tRead}ms`)
})
