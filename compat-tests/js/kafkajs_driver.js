#!/usr/bin/env node
// kafkajs driver of Trafka's compatibility matrix.
//
// Same contract as every driver (compat-tests/drivers/common.py says it in full):
//   node kafkajs_driver.js --bootstrap HOST:PORT --plan PLAN.json
//   node kafkajs_driver.js --bootstrap HOST:PORT --scenario NAME [--params JSON]
// One JSON line per step on stdout; kafkajs's own log goes to stderr.
//
// What kafkajs imposes:
// - its consumer always joins a consumer group (no manual assignment), so consuming needs the
//   broker's group coordinator (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, OffsetFetch);
// - a send() acknowledges a base offset per partition, not per record: a record's offset is its
//   partition's base offset plus its place among the records sent to that partition, and its
//   partition is what the producer's own (Java-compatible) partitioner picks;
// - it decodes headers into an object, so repeated header names come back grouped by name;
// - with no consumer reset policy "none", OFFSET_OUT_OF_RANGE is seen through kafkajs's log line
//   "Offset out of range, resetting to default offset";
// - it ships gzip only: snappy, lz4 and zstd come from codecs.js (npm packages, pure JS or wasm);
// - for a time after the last record, Kafka answers -1 and kafkajs returns the high watermark
//   instead; the driver maps that back to null.
'use strict'

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'

const crypto = require('crypto')
const fs = require('fs')
const {
  Kafka,
  logLevel,
  CompressionTypes,
  CompressionCodecs,
  ConfigResourceTypes,
  Partitioners,
} = require('kafkajs')
const kafkajsVersion = require('kafkajs/package.json').version
const codecs = require('./codecs')

codecs.register(CompressionTypes, CompressionCodecs)
const CODECS = {
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD
}

const PATTERN = Buffer.from('abcdefghijklmnopqrstuvwxyz')
const LARGE_LIMIT_BYTES = 4 * 1024 * 1024
const logEntries = []

function logCreator () {
  return ({ level, log }) => {
    logEntries.push({ ...log, level })
    if (level <= logLevel.WARN) {
      const { message, ...extra } = log
      process.stderr.write(`[kafkajs] ${message} ${JSON.stringify(extra)}\n`)
    }
  }
}

function kafkaFor (bootstrap, extra = {}) {
  return new Kafka({
    clientId: 'trafka-compat',
    brokers: bootstrap.split(','),
    logLevel: logLevel.INFO,
    logCreator,
    connectionTimeout: 5000,
    requestTimeout: 10000,
    retry: { retries: 3, initialRetryTime: 100 },
    ...extra
  })
}

function patternBytes (size) {
  const out = Buffer.alloc(size)
  for (let i = 0; i < size; i++) out[i] = PATTERN[i % PATTERN.length]
  return out
}

function text (buf) {
  return buf === null || buf === undefined ? null : buf.toString('utf8')
}

function flattenHeaders (headers) {
  const out = []
  for (const [name, value] of Object.entries(headers || {})) {
    for (const v of Array.isArray(value) ? value : [value]) out.push([name, text(v)])
  }
  return out
}

function groupHeaders (pairs) {
  const headers = {}
  for (const [name, value] of pairs || []) {
    if (name in headers) {
      headers[name] = [].concat(headers[name], value)
    } else {
      headers[name] = value
    }
  }
  return headers
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function waitFor (predicate, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  while (!predicate() && Date.now() < deadline) await sleep(50)
  return predicate()
}

function uniqueGroup () {
  return `compat-${crypto.randomBytes(6).toString('hex')}`
}

async function withAdmin (bootstrap, fn) {
  const admin = kafkaFor(bootstrap).admin()
  await admin.connect()
  try {
    return await fn(admin)
  } finally {
    await admin.disconnect()
  }
}

async function metadata (bootstrap) {
  return withAdmin(bootstrap, async admin => {
    const cluster = await admin.describeCluster()
    const { topics } = await admin.fetchTopicMetadata()
    return {
      brokers: cluster.brokers.map(b => ({ node_id: b.nodeId, host: b.host, port: b.port })),
      topics: Object.fromEntries(topics.map(t => [t.name, t.partitions.length]))
    }
  })
}

async function topicConfigs (admin, topic, names) {
  const described = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
    includeSynonyms: false
  })
  const entries = {}
  for (const resource of described.resources) {
    for (const e of resource.configEntries) entries[e.configName] = e.configValue
  }
  return Object.fromEntries(names.map(n => [n, n in entries ? entries[n] : null]))
}

async function adminScenario (bootstrap, params) {
  const { topic, configs, alter_configs: alter } = params
  return withAdmin(bootstrap, async admin => {
    await admin.createTopics({
      topics: [{
        topic,
        numPartitions: params.partitions,
        replicationFactor: 1,
        configEntries: Object.entries(configs).map(([name, value]) => ({ name, value }))
      }],
      waitForLeaders: true
    })
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
    const partitions = topics[0].partitions.length
    const afterCreate = await topicConfigs(admin, topic, Object.keys(configs))
    await admin.alterConfigs({
      validateOnly: false,
      resources: [{
        type: ConfigResourceTypes.TOPIC,
        name: topic,
        configEntries: Object.entries(alter).map(([name, value]) => ({ name, value }))
      }]
    })
    const afterAlter = await topicConfigs(admin, topic, Object.keys(alter))
    await admin.deleteTopics({ topics: [topic], timeout: 10000 })
    let listed = (await admin.listTopics()).includes(topic)
    const deadline = Date.now() + 5000
    while (listed && Date.now() < deadline) {
      await sleep(200)
      listed = (await admin.listTopics()).includes(topic)
    }
    return {
      created: true,
      partitions,
      configs_after_create: afterCreate,
      configs_after_alter: afterAlter,
      listed_after_delete: listed
    }
  })
}

async function produce (bootstrap, params) {
  if (params.codec && !(params.codec in CODECS)) {
    throw new Unsupported(`kafkajs has no ${params.codec} codec`)
  }
  const producer = kafkaFor(bootstrap).producer({
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
    idempotent: Boolean(params.idempotent),
    maxInFlightRequests: params.idempotent ? 1 : undefined,
    retry: params.idempotent ? { retries: 5, initialRetryTime: 100 } : undefined
  })
  await producer.connect()
  try {
    const messages = params.messages.map(m => ({
      key: m.key,
      value: m.value,
      headers: groupHeaders(m.headers),
      timestamp: m.timestamp === undefined ? undefined : String(m.timestamp)
    }))
    const acks = await producer.send({
      topic: params.topic,
      messages,
      acks: -1,
      compression: params.codec ? CODECS[params.codec] : CompressionTypes.None
    })
    // Per-record positions: the producer's partitioner, then each partition's base offset.
    const partitioner = Partitioners.DefaultPartitioner()
    const partitionMetadata = Array.from({ length: params.partitions }, (_, i) => ({ partitionId: i, leader: 0 }))
    const base = Object.fromEntries(acks.map(a => [a.partition, Number(a.baseOffset)]))
    const next = {}
    const produced = params.messages.map(m => {
      const partition = partitioner({ topic: params.topic, partitionMetadata, message: { key: m.key } })
      next[partition] = (next[partition] || 0) + 1
      return { partition, offset: base[partition] + next[partition] - 1 }
    })
    return { produced }
  } finally {
    await producer.disconnect()
  }
}

// Consume the topic through a fresh group; `until(records, ends)` says when to stop.
async function consumeWith (bootstrap, topic, { fromBeginning, timeoutMs = 15000, consumerConfig = {}, after }) {
  const consumer = kafkaFor(bootstrap).consumer({
    groupId: uniqueGroup(),
    maxWaitTimeInMs: 100,
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
    ...consumerConfig
  })
  const records = []
  let joined = false
  let crash = null
  consumer.on(consumer.events.GROUP_JOIN, () => { joined = true })
  // A consumer that cannot join its group crashes; say so at once instead of waiting it out.
  consumer.on(consumer.events.CRASH, event => { crash = event.payload.error })
  const wait = async (predicate, timeoutMs) => {
    await waitFor(() => predicate() || crash !== null, timeoutMs)
    if (crash !== null) throw crash
    return predicate()
  }
  await consumer.connect()
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning })
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        records.push({ partition, message })
      }
    })
    return await after({ consumer, records, joined: () => joined, wait, timeoutMs })
  } finally {
    await consumer.disconnect()
  }
}

function recordJson (partition, message) {
  return {
    partition,
    offset: Number(message.offset),
    key: text(message.key),
    value: text(message.value),
    headers: flattenHeaders(message.headers),
    timestamp: Number(message.timestamp)
  }
}

async function endOffsets (bootstrap, topic) {
  return withAdmin(bootstrap, async admin => {
    const offsets = await admin.fetchTopicOffsets(topic)
    return Object.fromEntries(offsets.map(o => [o.partition, Number(o.high)]))
  })
}

async function consumeAll (bootstrap, topic, expected, consumerConfig = {}) {
  const ends = await endOffsets(bootstrap, topic)
  return consumeWith(bootstrap, topic, {
    fromBeginning: true,
    consumerConfig,
    after: async ({ records, wait, timeoutMs }) => {
      const reachedEnds = () => {
        if (records.length < expected) return false
        const next = {}
        for (const r of records) next[r.partition] = Math.max(next[r.partition] || 0, Number(r.message.offset) + 1)
        return Object.entries(ends).every(([p, end]) => (next[p] || 0) >= end)
      }
      await wait(reachedEnds, timeoutMs)
      return records.slice()
    }
  })
}

async function consume (bootstrap, params) {
  const records = await consumeAll(bootstrap, params.topic, params.messages.length)
  return { consumed: records.map(r => recordJson(r.partition, r.message)) }
}

async function produceConsume (bootstrap, params) {
  return { ...(await produce(bootstrap, params)), ...(await consume(bootstrap, params)) }
}

async function largeMessage (bootstrap, params) {
  const value = patternBytes(params.size)
  const producer = kafkaFor(bootstrap).producer({ allowAutoTopicCreation: false })
  await producer.connect()
  let ack
  try {
    ;[ack] = await producer.send({ topic: params.topic, messages: [{ key: params.key, value }], acks: -1 })
  } finally {
    await producer.disconnect()
  }
  const records = await consumeAll(bootstrap, params.topic, 1, {
    maxBytesPerPartition: LARGE_LIMIT_BYTES,
    maxBytes: 2 * LARGE_LIMIT_BYTES
  })
  return {
    produced: { partition: ack.partition, offset: Number(ack.baseOffset) },
    consumed: records.map(({ partition, message }) => ({
      partition,
      offset: Number(message.offset),
      key: text(message.key),
      size: message.value.length,
      sha256: crypto.createHash('sha256').update(message.value).digest('hex')
    }))
  }
}

async function offsets (bootstrap, params) {
  const { topic } = params
  const positions = await withAdmin(bootstrap, async admin => {
    const [p0] = (await admin.fetchTopicOffsets(topic)).filter(o => o.partition === 0)
    const byTime = {}
    for (const ts of params.query_timestamps) {
      const [found] = (await admin.fetchTopicOffsetsByTimestamp(topic, ts)).filter(o => o.partition === 0)
      const offset = Number(found.offset)
      // kafkajs turns Kafka's "no such offset" (-1) into the high watermark.
      byTime[String(ts)] = offset < 0 || offset === Number(p0.high) ? null : offset
    }
    return { earliest: Number(p0.low), latest: Number(p0.high), by_time: byTime }
  })
  const seek = await consumeWith(bootstrap, topic, {
    fromBeginning: false,
    after: async ({ consumer, records, joined, wait, timeoutMs }) => {
      if (!await wait(joined, timeoutMs)) throw new Error('consumer did not join its group')
      consumer.seek({ topic, partition: 0, offset: String(params.seek_offset) })
      await wait(() => records.length > 0, 10000)
      const first = records[0]
      return first ? { offset: Number(first.message.offset), value: text(first.message.value) } : null
    }
  })
  return { ...positions, seek }
}

async function outOfRange (bootstrap, params) {
  const { topic } = params
  return consumeWith(bootstrap, topic, {
    fromBeginning: false,
    after: async ({ consumer, records, joined, wait, timeoutMs }) => {
      if (!await wait(joined, timeoutMs)) throw new Error('consumer did not join its group')
      const mark = logEntries.length
      const outOfRangeLog = () => logEntries.slice(mark).find(l => /offset out of range/i.test(l.message))
      consumer.seek({ topic, partition: 0, offset: String(params.bad_offset) })
      await wait(() => Boolean(outOfRangeLog()), 10000)
      const seen = outOfRangeLog()
      // kafkajs has reset to its default (latest, as fromBeginning is false); now seek back.
      records.length = 0
      consumer.seek({ topic, partition: 0, offset: '0' })
      await wait(() => records.length >= params.count, 10000)
      return {
        out_of_range_seen: Boolean(seen),
        error: seen ? seen.message : null,
        offsets_after_reset: records.map(r => Number(r.message.offset))
      }
    }
  })
}

async function missingTopic (bootstrap, params) {
  const started = Date.now()
  const producer = kafkaFor(bootstrap, { requestTimeout: params.timeout_ms }).producer({
    allowAutoTopicCreation: false,
    retry: { retries: 2, initialRetryTime: 200 }
  })
  await producer.connect()
  let error = null
  try {
    await producer.send({ topic: params.topic, messages: [{ value: 'nobody home' }], acks: -1 })
  } catch (e) {
    const cause = e.originalError || e.cause
    error = `${e.name}: ${e.message}${e.type ? ` [${e.type}]` : ''}` +
      (cause ? ` (cause: ${cause.name}: ${cause.message}${cause.type ? ` [${cause.type}]` : ''})` : '')
  } finally {
    await producer.disconnect()
  }
  return { delivered: error === null, error, elapsed_ms: Date.now() - started }
}

// One member of a consumer group that the harness drives (drivers/common.py gives the contract):
// event lines as the assignment changes, until stdin ends (then a clean disconnect, which sends
// LeaveGroup) or, with consume_count, until that many records are consumed and committed.
// kafkajs rebalances eagerly: it gives up everything before it rejoins (the REBALANCING event)
// and GROUP_JOIN carries the whole new assignment.
async function groupMember (bootstrap, params) {
  if ((params.protocol || 'classic') !== 'classic') throw new Unsupported('kafkajs has no group.protocol=consumer (KIP-848)')
  if (params.instance_id) throw new Unsupported('kafkajs has no static membership (group.instance.id)')
  if (params.assignor && params.assignor !== 'roundrobin') throw new Unsupported(`kafkajs has no ${params.assignor} assigner`)
  const { topic } = params
  const started = Date.now()
  const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, t_ms: Date.now() - started, ...fields }) + '\n')
  let held = new Set()
  const sorted = set => [...set].sort((a, b) => a - b)
  const revoke = partitions => {
    if (partitions.length === 0) return
    for (const p of partitions) held.delete(p)
    emit('revoked', { partitions: sorted(partitions), assignment: sorted(held) })
  }
  const stdinEnded = new Promise(resolve => {
    process.stdin.on('end', resolve)
    process.stdin.on('error', resolve)
    process.stdin.resume()
  })
  const limit = params.consume_count === null || params.consume_count === undefined ? null : params.consume_count
  const report = Boolean(params.report_records) || limit !== null
  const taken = []
  let countReached
  const done = new Promise(resolve => { countReached = resolve })
  let crash = null
  let crashed
  const crashedPromise = new Promise(resolve => { crashed = resolve })

  const consumer = kafkaFor(bootstrap).consumer({
    groupId: params.group,
    sessionTimeout: params.session_timeout_ms,
    heartbeatInterval: params.heartbeat_interval_ms,
    maxWaitTimeInMs: 100
  })
  consumer.on(consumer.events.REBALANCING, () => revoke([...held]))
  consumer.on(consumer.events.GROUP_JOIN, event => {
    const now = new Set(event.payload.memberAssignment[topic] || [])
    revoke([...held].filter(p => !now.has(p)))
    const added = [...now].filter(p => !held.has(p))
    held = now
    emit('assigned', { partitions: sorted(added), assignment: sorted(held) })
  })
  consumer.on(consumer.events.CRASH, event => {
    crash = event.payload.error
    crashed()
  })
  try {
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        if (limit !== null && taken.length >= limit) return
        const record = [partition, Number(message.offset)]
        taken.push(record)
        if (report) emit('records', { records: [record] })
        if (limit !== null && taken.length >= limit) countReached()
      }
    })
    emit('started')
    await Promise.race([stdinEnded, done, crashedPromise])
    if (crash !== null) throw crash
    if (limit !== null && taken.length >= limit) {
      const next = {}
      for (const [p, o] of taken) next[p] = Math.max(next[p] || 0, o + 1)
      await consumer.commitOffsets(Object.entries(next).map(([p, o]) => ({ topic, partition: Number(p), offset: String(o) })))
      emit('committed', { offsets: next })
    }
  } catch (e) {
    emit('error', { error: `${e.name}: ${e.message}` })
    throw e
  } finally {
    await consumer.disconnect()
  }
  revoke([...held])
  emit('closed')
  return { consumed: taken.length }
}

// --- the cluster matrix (compat-tests/cluster_scenarios.py) -----------------------------------------

// kafkajs's admin calls describeCluster and fetchTopicMetadata are Metadata requests; its
// partition metadata keeps the offline replicas.
async function describeTopic (admin, topic) {
  const cluster = await admin.describeCluster()
  const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
  const [described] = topics.filter(t => t.name === topic)
  return {
    cluster,
    brokers: cluster.brokers.map(b => ({ node_id: b.nodeId, host: b.host, port: b.port })),
    partitions: described.partitions
      .map(p => ({ partition: p.partitionId, leader: p.leader, replicas: p.replicas, isr: p.isr, offline: p.offlineReplicas }))
      .sort((a, b) => a.partition - b.partition)
  }
}

async function clusterMetadata (bootstrap, params) {
  return withAdmin(bootstrap, async admin => {
    const { brokers, partitions } = await describeTopic(admin, params.topic)
    return { brokers, partitions }
  })
}

async function clusterDescribe (bootstrap, params) {
  return withAdmin(bootstrap, async admin => {
    const { cluster, brokers, partitions } = await describeTopic(admin, params.topic)
    return {
      cluster_id: cluster.clusterId,
      controller_id: cluster.controller,
      brokers,
      partitions: partitions.map(({ offline, ...p }) => p)
    }
  })
}

function errorText (e) {
  const inner = e.errors ? ` (${e.errors.map(x => `${x.name}: ${x.message}`).join('; ')})` : ''
  return `${e.name}: ${e.message}${e.type ? ` [${e.type}]` : ''}${inner}`
}

async function alterReassignment (bootstrap, params) {
  return withAdmin(bootstrap, async admin => {
    try {
      await admin.alterPartitionReassignments({
        topics: [{ topic: params.topic, partitionAssignment: [{ partition: params.partition, replicas: params.replicas }] }]
      })
      return { error: null }
    } catch (e) {
      return { error: errorText(e) }
    }
  })
}

async function listReassignments (bootstrap, params) {
  return withAdmin(bootstrap, async admin => {
    const { topics } = await admin.listPartitionReassignments({ topics: [{ topic: params.topic, partitions: [params.partition] }] })
    const ongoing = []
    for (const t of topics) {
      if (t.name !== params.topic) continue
      for (const p of t.partitions) {
        ongoing.push({ partition: p.partition, replicas: p.replicas, adding: p.addingReplicas, removing: p.removingReplicas })
      }
    }
    return { ongoing }
  })
}

// Produce to one partition at a rate (idempotent, acks=all) while a consumer reads it from the
// start, until stdin ends; drivers/common.py gives the contract. kafkajs consumes through a
// group only, so the consumer is the one member of a fresh group. A send() acknowledges a base
// offset for the batch: a record's offset is the base plus its place in the batch.
async function failover (bootstrap, params) {
  const { topic } = params
  const partition = params.partition || 0
  const rate = params.rate_per_s || 100
  const drainMs = params.drain_timeout_ms || 60000
  const started = Date.now()
  const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, t_ms: Date.now() - started, ...fields }) + '\n')
  let stop = false
  process.stdin.on('end', () => { stop = true })
  process.stdin.on('error', () => { stop = true })
  process.stdin.resume()
  const acked = new Map()
  const failed = new Map()
  const consumed = []
  const offsetsRead = new Set() // the group consumer may be handed an offset again after a rebalance
  const clientErrors = []
  const fatal = []
  let sent = 0
  let lastConsumed = -1
  const value = i => `f-${String(i).padStart(6, '0')}`
  const logMark = logEntries.length
  const retry = { retries: 30, initialRetryTime: 100, maxRetryTime: 1000 }
  const kafka = kafkaFor(bootstrap, { retry })
  // kafkajs wants an idempotent producer to retry without limit (anything less "may invalidate
  // EoS guarantees"); the harness bounds the whole run.
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    retry: { ...retry, retries: Number.MAX_SAFE_INTEGER }
  })
  // A fetch from a leader that died fails with a connection error, which kafkajs's consumer
  // retries against the same broker without asking for new metadata; only when its retries run
  // out does it restart (and then find the new leader). Few retries keep that stall short.
  const consumer = kafka.consumer({
    groupId: uniqueGroup(),
    maxWaitTimeInMs: 100,
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
    retry: { ...retry, retries: 5 }
  })
  consumer.on(consumer.events.CRASH, event => {
    const text = `consumer crashed: ${errorText(event.payload.error)}`
    if (event.payload.restart) clientErrors.push(text)
    else fatal.push(text)
  })
  const progress = () => emit('progress', {
    sent, acked: acked.size, failed: failed.size, consumed: consumed.length, last_consumed: lastConsumed, wall_ms: Date.now()
  })
  const timer = setInterval(progress, 200)
  try {
    await producer.connect()
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition: p, message }) => {
        if (p !== partition) return
        const v = text(message.value)
        consumed.push([Number(message.offset), v])
        offsetsRead.add(Number(message.offset))
        if (v && v.startsWith('f-')) lastConsumed = Math.max(lastConsumed, Number(v.slice(2)))
      }
    })
    while (!stop && fatal.length === 0) {
      const due = Math.floor((Date.now() - started) / 1000 * rate) + 1
      const batch = []
      while (sent < due) batch.push(sent++)
      if (batch.length === 0) {
        await sleep(10)
        continue
      }
      try {
        const [ack] = await producer.send({ topic, acks: -1, messages: batch.map(i => ({ value: value(i), partition })) })
        batch.forEach((i, j) => acked.set(i, Number(ack.baseOffset) + j))
      } catch (e) {
        for (const i of batch) failed.set(i, errorText(e))
      }
    }
    const deadline = Date.now() + drainMs
    while (offsetsRead.size < acked.size && fatal.length === 0 && Date.now() < deadline) await sleep(50)
  } finally {
    clearInterval(timer)
    await producer.disconnect()
    await consumer.disconnect()
  }
  for (const entry of logEntries.slice(logMark)) {
    if (entry.level <= logLevel.WARN && clientErrors.length < 50) clientErrors.push(entry.message)
  }
  progress()
  emit('closed')
  return {
    sent,
    acked: [...acked.entries()].sort((a, b) => a[0] - b[0]),
    failed: [...failed.entries()].sort((a, b) => a[0] - b[0]),
    consumed,
    client_errors: clientErrors,
    fatal
  }
}

class Unsupported extends Error {}

const HANDLERS = {
  cluster_metadata: clusterMetadata,
  cluster_describe: clusterDescribe,
  alter_reassignment: alterReassignment,
  list_reassignments: listReassignments,
  failover,
  metadata,
  admin: adminScenario,
  produce_consume: produceConsume,
  produce,
  consume,
  large_message: largeMessage,
  offsets,
  out_of_range: outOfRange,
  missing_topic: missingTopic,
  group_member: groupMember
}

function parseArgs (argv) {
  const args = {}
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i]
    if (!['--bootstrap', '--plan', '--scenario', '--params'].includes(name) || i + 1 >= argv.length) {
      process.stderr.write(`usage: kafkajs_driver.js --bootstrap HOST:PORT (--plan FILE | --scenario NAME [--params JSON])\n`)
      process.exit(2)
    }
    args[name.slice(2)] = argv[i + 1]
  }
  if (!args.bootstrap || (!args.plan && !args.scenario)) {
    process.stderr.write('--bootstrap and one of --plan or --scenario are required\n')
    process.exit(2)
  }
  return args
}

async function main () {
  const args = parseArgs(process.argv.slice(2))
  const steps = args.plan
    ? JSON.parse(fs.readFileSync(args.plan, 'utf8'))
    : [{ scenario: args.scenario, params: JSON.parse(args.params || '{}') }]
  let allOk = true
  for (const step of steps) {
    const line = { client: 'kafkajs', client_version: kafkajsVersion, step: step.id || step.scenario, scenario: step.scenario }
    const started = Date.now()
    try {
      const handler = HANDLERS[step.scenario]
      if (!handler) throw new Unsupported(`kafkajs has no scenario ${step.scenario}`)
      line.result = await handler(args.bootstrap, step.params || {})
      line.status = 'ok'
    } catch (e) {
      if (e instanceof Unsupported) {
        line.status = 'unsupported'
        line.error = e.message
      } else {
        process.stderr.write(`${e.stack || e}\n`)
        line.status = 'error'
        line.error = `${e.name}: ${e.message}`
        allOk = false
      }
    }
    line.elapsed_ms = Date.now() - started
    process.stdout.write(JSON.stringify(line) + '\n')
  }
  return allOk ? 0 : 1
}

// Exit once stdout is flushed: kafkajs may leave timers behind that would keep node alive.
main().then(code => process.stdout.write('', () => process.exit(code)), e => {
  process.stderr.write(`${e.stack || e}\n`)
  process.stdout.write('', () => process.exit(1))
})
