'use strict'
// kafkajs 2.x over SASL_SSL with SCRAM-SHA-256: a user made with `agentlog users add`, the
// test CA from scripts/make-test-certs.sh; a wrong password gets Kafka's
// SASL_AUTHENTICATION_FAILED.
const { test, before, after } = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { startBroker, kafkaFor, producerFor, readPartition, agentlogBin, REPO_ROOT } = require('./helpers')

let broker
let certs
let address
before(async () => {
  certs = fs.mkdtempSync(path.join(os.tmpdir(), 'agentlog-js-certs-'))
  execFileSync(path.join(REPO_ROOT, 'scripts', 'make-test-certs.sh'), [certs], { stdio: 'ignore' })
  broker = await startBroker({
    listeners: 'SASL_SSL://127.0.0.1:0',
    'ssl.keystore.location': path.join(certs, 'broker.pem'),
    'num.partitions': 1
  })
  execFileSync(agentlogBin(), ['users', 'add', 'dave', '--mechanism', 'SCRAM-SHA-256', '-b', broker.bootstrap],
    { input: 'd4ve-pw\n' })
  address = await broker.listener('SASL_SSL')
})
after(async () => {
  const res = await broker.stop()
  assert.deepEqual(res, { code: 0, signal: null }, `broker exit after SIGTERM\n${broker.stderrTail()}`)
  fs.rmSync(certs, { recursive: true, force: true })
})

// The wrong-password client does not retry (its refusal is the answer); the right one
// retries as clients do by default: the produce auto-creates its topic, which Kafka (and
// agentlog) answers LEADER_NOT_AVAILABLE first.
function secureKafka (password, retry = { retries: 0 }) {
  return kafkaFor({ bootstrap: address }, {
    ssl: { ca: [fs.readFileSync(path.join(certs, 'ca.crt'))] },
    sasl: { mechanism: 'scram-sha-256', username: 'dave', password },
    retry
  })
}

test('SCRAM-SHA-256 over SASL_SSL produces and reads back', async () => {
  const kafka = secureKafka('d4ve-pw', { retries: 5, initialRetryTime: 100 })
  const producer = producerFor(kafka)
  await producer.connect()
  await producer.send({ topic: 'js-secure', messages: [{ value: 'a' }, { value: 'b' }] })
  await producer.disconnect()
  const { records } = await readPartition(kafka, 'js-secure', 0)
  assert.deepEqual(records.map(r => r.value.toString()), ['a', 'b'])
})

test('a wrong password gets SASL_AUTHENTICATION_FAILED', async () => {
  const producer = producerFor(secureKafka('wrong'))
  await assert.rejects(producer.connect(), err => {
    assert.match(`${err.name} ${err.message} ${err.type || ''}`, /SASL|[Aa]uthentication/)
    return true
  })
  assert.match(broker.stderrTail(), /authentication failed/)
})
