// Java driver of Trafka's compatibility matrix: the Apache Kafka Java client (kafka-clients 3.9).
//
// Same contract as every driver (compat-tests/drivers/common.py says it in full):
//   java -cp build:lib/* JavaDriver --bootstrap HOST:PORT --plan PLAN.json
//   java -cp build:lib/* JavaDriver --bootstrap HOST:PORT --scenario NAME [--params JSON]
// One JSON line per step on stdout. A plan runs several scenarios in one JVM, which is most of
// what keeps the matrix fast. Consumers are assigned partitions by hand (no group.id), except in
// group_member: one member of a consumer group that the harness drives, printing event lines
// (drivers/common.py gives that contract) until its stdin ends. Producers
// turn idempotence off unless a step asks for it (the client's default is on), so that only the
// idempotent scenario depends on InitProducerId.
//
// No JSON library is on the classpath, so a small reader and writer for the plan and the report
// live at the bottom of this file.

import java.io.FileDescriptor;
import java.io.IOException;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.PartitionReassignment;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.consumer.OffsetOutOfRangeException;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.consumer.RoundRobinAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.AppInfoParser;

public final class JavaDriver {
    private static final int TIMEOUT_MS = 10_000;
    private static final int LARGE_LIMIT_BYTES = 4 * 1024 * 1024;
    private static final byte[] PATTERN = "abcdefghijklmnopqrstuvwxyz".getBytes(StandardCharsets.US_ASCII);

    // UTF-8 whatever the locale says: the report carries non-ASCII text.
    private static final PrintStream OUT =
            new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);

    private JavaDriver() {}

    /** The client has no way to do what the step asks. */
    static final class Unsupported extends Exception {
        Unsupported(String message) { super(message); }
    }

    interface Handler {
        Map<String, Object> run(String bootstrap, Map<String, Object> params) throws Exception;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = null, plan = null, scenario = null, params = "{}";
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--bootstrap": bootstrap = args[i + 1]; break;
                case "--plan": plan = args[i + 1]; break;
                case "--scenario": scenario = args[i + 1]; break;
                case "--params": params = args[i + 1]; break;
                default: usage();
            }
        }
        if (bootstrap == null || (plan == null) == (scenario == null) || args.length % 2 != 0) usage();
        List<Object> steps;
        if (plan != null) {
            steps = Json.asList(Json.parse(Files.readString(Path.of(plan))));
        } else {
            Map<String, Object> step = new LinkedHashMap<>();
            step.put("scenario", scenario);
            step.put("params", Json.parse(params));
            steps = List.of(step);
        }
        Map<String, Handler> handlers = new HashMap<>();
        handlers.put("metadata", JavaDriver::metadata);
        handlers.put("admin", JavaDriver::admin);
        handlers.put("produce_consume", JavaDriver::produceConsume);
        handlers.put("produce", JavaDriver::produce);
        handlers.put("consume", JavaDriver::consume);
        handlers.put("large_message", JavaDriver::largeMessage);
        handlers.put("offsets", JavaDriver::offsets);
        handlers.put("out_of_range", JavaDriver::outOfRange);
        handlers.put("missing_topic", JavaDriver::missingTopic);
        handlers.put("group_member", JavaDriver::groupMember);
        handlers.put("cluster_metadata", JavaDriver::clusterMetadata);
        handlers.put("cluster_describe", JavaDriver::clusterDescribe);
        handlers.put("elect_leaders", JavaDriver::electLeaders);
        handlers.put("alter_reassignment", JavaDriver::alterReassignment);
        handlers.put("list_reassignments", JavaDriver::listReassignments);
        handlers.put("failover", JavaDriver::failover);

        boolean allOk = true;
        for (Object raw : steps) {
            Map<String, Object> step = Json.asMap(raw);
            String name = (String) step.get("scenario");
            Map<String, Object> line = new LinkedHashMap<>();
            line.put("client", "java");
            line.put("client_version", AppInfoParser.getVersion());
            line.put("step", step.getOrDefault("id", name));
            line.put("scenario", name);
            long started = System.nanoTime();
            try {
                Handler handler = handlers.get(name);
                if (handler == null) throw new Unsupported("java has no scenario " + name);
                Object p = step.get("params");
                line.put("result", handler.run(bootstrap, p == null ? new LinkedHashMap<>() : Json.asMap(p)));
                line.put("status", "ok");
            } catch (Unsupported e) {
                line.put("status", "unsupported");
                line.put("error", e.getMessage());
            } catch (Exception e) {
                e.printStackTrace();
                line.put("status", "error");
                line.put("error", describe(e));
                allOk = false;
            }
            line.put("elapsed_ms", (System.nanoTime() - started) / 1_000_000);
            OUT.println(Json.write(line));
            OUT.flush();
        }
        System.exit(allOk ? 0 : 1);
    }

    private static void usage() {
        System.err.println("usage: JavaDriver --bootstrap HOST:PORT (--plan FILE | --scenario NAME [--params JSON])");
        System.exit(2);
    }

    static String describe(Throwable e) {
        Throwable cause = e;
        while (cause instanceof java.util.concurrent.ExecutionException && cause.getCause() != null) {
            cause = cause.getCause();
        }
        return cause.getClass().getSimpleName() + ": " + cause.getMessage();
    }

    // --- clients -----------------------------------------------------------------------------------

    static Admin admin(String bootstrap) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, TIMEOUT_MS);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 2 * TIMEOUT_MS);
        return Admin.create(props);
    }

    static KafkaProducer<byte[], byte[]> producer(String bootstrap, Map<String, Object> extra) {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, false);
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, TIMEOUT_MS);
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 2 * TIMEOUT_MS);
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, TIMEOUT_MS);
        props.putAll(extra);
        return new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer());
    }

    static KafkaConsumer<byte[], byte[]> consumer(String bootstrap, Map<String, Object> extra) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 100);
        props.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, TIMEOUT_MS);
        props.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, TIMEOUT_MS);
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "compat-" + UUID.randomUUID());
        props.putAll(extra);
        return new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    static byte[] bytes(Object text) {
        return text == null ? null : ((String) text).getBytes(StandardCharsets.UTF_8);
    }

    static String text(byte[] data) {
        return data == null ? null : new String(data, StandardCharsets.UTF_8);
    }

    static Map<String, Object> record(ConsumerRecord<byte[], byte[]> r) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("partition", r.partition());
        out.put("offset", r.offset());
        out.put("key", text(r.key()));
        out.put("value", text(r.value()));
        List<Object> headers = new ArrayList<>();
        for (Header h : r.headers()) headers.add(List.of(h.key(), h.value() == null ? Json.NULL : text(h.value())));
        out.put("headers", headers);
        out.put("timestamp", r.timestamp());
        return out;
    }

    static int asInt(Object o) { return ((Number) o).intValue(); }

    static long asLong(Object o) { return ((Number) o).longValue(); }

    // --- scenarios ---------------------------------------------------------------------------------

    static Map<String, Object> metadata(String bootstrap, Map<String, Object> params) throws Exception {
        Map<String, Object> out = new LinkedHashMap<>();
        List<Object> brokers = new ArrayList<>();
        try (Admin admin = admin(bootstrap)) {
            for (Node n : admin.describeCluster().nodes().get()) {
                Map<String, Object> b = new LinkedHashMap<>();
                b.put("node_id", n.id());
                b.put("host", n.host());
                b.put("port", n.port());
                brokers.add(b);
            }
        }
        Map<String, Object> topics = new LinkedHashMap<>();
        try (KafkaConsumer<byte[], byte[]> consumer = consumer(bootstrap, Map.of())) {
            for (Map.Entry<String, List<PartitionInfo>> e : consumer.listTopics(Duration.ofMillis(TIMEOUT_MS)).entrySet()) {
                topics.put(e.getKey(), e.getValue().size());
            }
        }
        out.put("brokers", brokers);
        out.put("topics", topics);
        return out;
    }

    static Map<String, Object> topicConfigs(Admin admin, String topic, Collection<String> names) throws Exception {
        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config config = admin.describeConfigs(List.of(resource)).all().get().get(resource);
        Map<String, Object> out = new LinkedHashMap<>();
        for (String name : names) {
            ConfigEntry entry = config.get(name);
            out.put(name, entry == null ? Json.NULL : entry.value());
        }
        return out;
    }

    static Map<String, Object> admin(String bootstrap, Map<String, Object> params) throws Exception {
        String topic = (String) params.get("topic");
        Map<String, Object> configs = Json.asMap(params.get("configs"));
        Map<String, Object> alter = Json.asMap(params.get("alter_configs"));
        Map<String, Object> out = new LinkedHashMap<>();
        try (Admin admin = admin(bootstrap)) {
            Map<String, String> create = new LinkedHashMap<>();
            configs.forEach((k, v) -> create.put(k, (String) v));
            NewTopic newTopic = new NewTopic(topic, asInt(params.get("partitions")), (short) 1).configs(create);
            admin.createTopics(List.of(newTopic)).all().get();
            out.put("created", true);
            out.put("partitions", admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().size());
            out.put("configs_after_create", topicConfigs(admin, topic, configs.keySet()));
            ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            List<AlterConfigOp> ops = new ArrayList<>();
            alter.forEach((k, v) -> ops.add(new AlterConfigOp(new ConfigEntry(k, (String) v), AlterConfigOp.OpType.SET)));
            admin.incrementalAlterConfigs(Map.of(resource, ops)).all().get();
            out.put("configs_after_alter", topicConfigs(admin, topic, alter.keySet()));
            admin.deleteTopics(List.of(topic)).all().get();
            boolean listed = admin.listTopics().names().get().contains(topic);
            long deadline = System.currentTimeMillis() + 5000;
            while (listed && System.currentTimeMillis() < deadline) {
                Thread.sleep(200);
                listed = admin.listTopics().names().get().contains(topic);
            }
            out.put("listed_after_delete", listed);
        }
        return out;
    }

    static List<Object> produceMessages(String bootstrap, String topic, List<Object> messages, Map<String, Object> extra)
            throws Exception {
        List<Object> acks = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = producer(bootstrap, extra)) {
            List<Future<RecordMetadata>> futures = new ArrayList<>();
            for (Object raw : messages) {
                Map<String, Object> m = Json.asMap(raw);
                List<Header> headers = new ArrayList<>();
                Object hs = m.get("headers");
                if (hs != null) {
                    for (Object h : Json.asList(hs)) {
                        List<Object> pair = Json.asList(h);
                        headers.add(new RecordHeader((String) pair.get(0), bytes(pair.get(1))));
                    }
                }
                Long timestamp = m.get("timestamp") == null ? null : asLong(m.get("timestamp"));
                futures.add(producer.send(new ProducerRecord<>(topic, null, timestamp, bytes(m.get("key")),
                        bytes(m.get("value")), headers)));
            }
            producer.flush();
            for (Future<RecordMetadata> f : futures) {
                RecordMetadata md = f.get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
                Map<String, Object> ack = new LinkedHashMap<>();
                ack.put("partition", md.partition());
                ack.put("offset", md.offset());
                acks.add(ack);
            }
        }
        return acks;
    }

    static Map<String, Object> produce(String bootstrap, Map<String, Object> params) throws Exception {
        Map<String, Object> extra = new HashMap<>();
        if (params.get("codec") != null) extra.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, params.get("codec"));
        if (Boolean.TRUE.equals(params.get("idempotent"))) {
            extra.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
            extra.put(ProducerConfig.RETRIES_CONFIG, 5);
            extra.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 5);
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("produced", produceMessages(bootstrap, (String) params.get("topic"),
                Json.asList(params.get("messages")), extra));
        return out;
    }

    /** Every record of the given partitions from the beginning, until each end offset is reached. */
    static List<ConsumerRecord<byte[], byte[]>> consumeAll(String bootstrap, String topic, List<Integer> partitions,
            int expected, Map<String, Object> extra) {
        List<ConsumerRecord<byte[], byte[]>> records = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> consumer = consumer(bootstrap, extra)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p : partitions) tps.add(new TopicPartition(topic, p));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = consumer.endOffsets(tps);
            long deadline = System.currentTimeMillis() + 15_000;
            while (System.currentTimeMillis() < deadline) {
                boolean atEnd = records.size() >= expected;
                for (TopicPartition tp : tps) atEnd &= consumer.position(tp) >= ends.get(tp);
                if (atEnd) break;
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) records.add(r);
            }
        }
        return records;
    }

    static Map<String, Object> consume(String bootstrap, Map<String, Object> params) {
        List<Integer> partitions = new ArrayList<>();
        for (int p = 0; p < asInt(params.get("partitions")); p++) partitions.add(p);
        List<Object> consumed = new ArrayList<>();
        for (ConsumerRecord<byte[], byte[]> r : consumeAll(bootstrap, (String) params.get("topic"), partitions,
                Json.asList(params.get("messages")).size(), Map.of())) {
            consumed.add(record(r));
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("consumed", consumed);
        return out;
    }

    static Map<String, Object> produceConsume(String bootstrap, Map<String, Object> params) throws Exception {
        Map<String, Object> out = produce(bootstrap, params);
        out.putAll(consume(bootstrap, params));
        return out;
    }

    static Map<String, Object> largeMessage(String bootstrap, Map<String, Object> params) throws Exception {
        String topic = (String) params.get("topic");
        int size = asInt(params.get("size"));
        byte[] value = new byte[size];
        for (int i = 0; i < size; i++) value[i] = PATTERN[i % PATTERN.length];
        RecordMetadata md;
        try (KafkaProducer<byte[], byte[]> producer = producer(bootstrap,
                Map.of(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, LARGE_LIMIT_BYTES))) {
            md = producer.send(new ProducerRecord<>(topic, bytes(params.get("key")), value))
                    .get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
        }
        List<Object> consumed = new ArrayList<>();
        for (ConsumerRecord<byte[], byte[]> r : consumeAll(bootstrap, topic, List.of(md.partition()), 1, Map.of(
                ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, LARGE_LIMIT_BYTES,
                ConsumerConfig.FETCH_MAX_BYTES_CONFIG, 2 * LARGE_LIMIT_BYTES))) {
            Map<String, Object> c = new LinkedHashMap<>();
            c.put("partition", r.partition());
            c.put("offset", r.offset());
            c.put("key", text(r.key()));
            c.put("size", r.value().length);
            c.put("sha256", sha256(r.value()));
            consumed.add(c);
        }
        Map<String, Object> produced = new LinkedHashMap<>();
        produced.put("partition", md.partition());
        produced.put("offset", md.offset());
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("produced", produced);
        out.put("consumed", consumed);
        return out;
    }

    static Map<String, Object> offsets(String bootstrap, Map<String, Object> params) {
        TopicPartition tp = new TopicPartition((String) params.get("topic"), 0);
        Map<String, Object> out = new LinkedHashMap<>();
        try (KafkaConsumer<byte[], byte[]> consumer = consumer(bootstrap, Map.of())) {
            out.put("earliest", consumer.beginningOffsets(List.of(tp)).get(tp));
            out.put("latest", consumer.endOffsets(List.of(tp)).get(tp));
            Map<String, Object> byTime = new LinkedHashMap<>();
            for (Object ts : Json.asList(params.get("query_timestamps"))) {
                OffsetAndTimestamp found = consumer.offsetsForTimes(Map.of(tp, asLong(ts))).get(tp);
                byTime.put(String.valueOf(asLong(ts)), found == null ? Json.NULL : found.offset());
            }
            out.put("by_time", byTime);
            consumer.assign(List.of(tp));
            consumer.seek(tp, asLong(params.get("seek_offset")));
            Object first = Json.NULL;
            long deadline = System.currentTimeMillis() + 10_000;
            while (first == Json.NULL && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    Map<String, Object> f = new LinkedHashMap<>();
                    f.put("offset", r.offset());
                    f.put("value", text(r.value()));
                    first = f;
                    break;
                }
            }
            out.put("seek", first);
            consumer.seekToEnd(List.of(tp));
            out.put("position_after_seek_to_end", consumer.position(tp));
        }
        return out;
    }

    static Map<String, Object> outOfRange(String bootstrap, Map<String, Object> params) {
        TopicPartition tp = new TopicPartition((String) params.get("topic"), 0);
        Map<String, Object> out = new LinkedHashMap<>();
        try (KafkaConsumer<byte[], byte[]> consumer = consumer(bootstrap,
                Map.of(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none"))) {
            consumer.assign(List.of(tp));
            consumer.seek(tp, asLong(params.get("bad_offset")));
            String error = null;
            long deadline = System.currentTimeMillis() + 10_000;
            while (error == null && System.currentTimeMillis() < deadline) {
                try {
                    consumer.poll(Duration.ofMillis(200));
                } catch (OffsetOutOfRangeException e) {
                    error = describe(e);
                }
            }
            consumer.seekToBeginning(List.of(tp));
            List<Object> offsets = new ArrayList<>();
            deadline = System.currentTimeMillis() + 10_000;
            int count = asInt(params.get("count"));
            while (offsets.size() < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) offsets.add(r.offset());
            }
            out.put("out_of_range_seen", error != null);
            out.put("error", error == null ? Json.NULL : error);
            out.put("offsets_after_reset", offsets);
        }
        return out;
    }

    static Map<String, Object> missingTopic(String bootstrap, Map<String, Object> params) {
        int timeoutMs = asInt(params.get("timeout_ms"));
        long started = System.currentTimeMillis();
        String error = null;
        Map<String, Object> extra = new HashMap<>();
        extra.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, timeoutMs);
        extra.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, timeoutMs);
        extra.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, timeoutMs + 1000);
        try (KafkaProducer<byte[], byte[]> producer = producer(bootstrap, extra)) {
            producer.send(new ProducerRecord<>((String) params.get("topic"), "nobody home".getBytes(StandardCharsets.UTF_8)))
                    .get(timeoutMs + 10_000L, TimeUnit.MILLISECONDS);
        } catch (Exception e) {
            error = describe(e);
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("delivered", error == null);
        out.put("error", error == null ? Json.NULL : error);
        out.put("elapsed_ms", System.currentTimeMillis() - started);
        return out;
    }

    /** A group member's event lines; the harness reads them as the assignment changes. */
    static final class Events {
        private final long started = System.nanoTime();
        final TreeSet<Integer> held = new TreeSet<>();

        synchronized void emit(String event, Map<String, Object> fields) {
            Map<String, Object> line = new LinkedHashMap<>();
            line.put("event", event);
            line.put("t_ms", (System.nanoTime() - started) / 1_000_000);
            line.putAll(fields);
            OUT.println(Json.write(line));
            OUT.flush();
        }

        void change(String event, List<Integer> partitions, int generation) {
            if (event.equals("revoked") && partitions.isEmpty()) return;  // eager: nothing yet to give up
            if (event.equals("assigned")) held.addAll(partitions); else held.removeAll(partitions);
            Map<String, Object> fields = new LinkedHashMap<>();
            fields.put("partitions", new ArrayList<>(new TreeSet<>(partitions)));
            fields.put("assignment", new ArrayList<>(held));
            if (generation >= 0) fields.put("generation", generation);
            emit(event, fields);
        }
    }

    static Map<String, Object> groupMember(String bootstrap, Map<String, Object> params) throws Exception {
        String topic = (String) params.get("topic");
        Events events = new Events();
        AtomicBoolean stop = stopAtEndOfStdin();

        Map<String, Object> extra = new HashMap<>();
        extra.put(ConsumerConfig.GROUP_ID_CONFIG, params.get("group"));
        String protocol = params.get("protocol") == null ? "classic" : (String) params.get("protocol");
        if (protocol.equals("classic")) {
            extra.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, asInt(params.get("session_timeout_ms")));
            extra.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, asInt(params.get("heartbeat_interval_ms")));
            Object assignor = params.get("assignor");
            if (assignor != null) {
                Map<String, String> classes = Map.of("range", RangeAssignor.class.getName(),
                        "roundrobin", RoundRobinAssignor.class.getName(),
                        "cooperative-sticky", CooperativeStickyAssignor.class.getName());
                extra.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, classes.get((String) assignor));
            }
        } else {
            // KIP-848: the broker assigns and owns the timeouts; the client refuses those settings.
            extra.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        }
        if (params.get("instance_id") != null) extra.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, params.get("instance_id"));
        Integer limit = params.get("consume_count") == null ? null : asInt(params.get("consume_count"));
        boolean report = Boolean.TRUE.equals(params.get("report_records")) || limit != null;
        List<long[]> taken = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> consumer = consumer(bootstrap, extra)) {
            ConsumerRebalanceListener listener = new ConsumerRebalanceListener() {
                int generation() {
                    try {
                        return consumer.groupMetadata().generationId();
                    } catch (RuntimeException e) {
                        return -1;
                    }
                }

                List<Integer> mine(Collection<TopicPartition> partitions) {
                    List<Integer> out = new ArrayList<>();
                    for (TopicPartition tp : partitions) if (tp.topic().equals(topic)) out.add(tp.partition());
                    return out;
                }

                @Override public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                    events.change("revoked", mine(partitions), generation());
                }

                @Override public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                    events.change("assigned", mine(partitions), generation());
                }

                @Override public void onPartitionsLost(Collection<TopicPartition> partitions) {
                    events.change("revoked", mine(partitions), generation());
                }
            };
            try {
                consumer.subscribe(List.of(topic), listener);
                events.emit("started", Map.of());
                while (!stop.get() && (limit == null || taken.size() < limit)) {
                    List<Object> records = new ArrayList<>();
                    for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(100))) {
                        if (limit != null && taken.size() >= limit) break;
                        taken.add(new long[] {r.partition(), r.offset()});
                        records.add(List.of(r.partition(), r.offset()));
                    }
                    if (report && !records.isEmpty()) events.emit("records", Map.of("records", records));
                }
                if (limit != null && taken.size() >= limit) {
                    Map<TopicPartition, OffsetAndMetadata> commit = new HashMap<>();
                    Map<String, Object> next = new LinkedHashMap<>();
                    for (long[] t : taken) {
                        long offset = Math.max(t[1] + 1, next.containsKey(String.valueOf(t[0]))
                                ? (Long) next.get(String.valueOf(t[0])) : 0L);
                        next.put(String.valueOf(t[0]), offset);
                        commit.put(new TopicPartition(topic, (int) t[0]), new OffsetAndMetadata(offset));
                    }
                    consumer.commitSync(commit);
                    events.emit("committed", Map.of("offsets", next));
                }
            } catch (Exception e) {
                events.emit("error", Map.of("error", describe(e)));
                throw e;
            }
        }
        events.emit("closed", Map.of());
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("consumed", taken.size());
        return out;
    }

    /** Set once the harness closes our standard input: the long-running scenarios' stop signal. */
    static AtomicBoolean stopAtEndOfStdin() {
        AtomicBoolean stop = new AtomicBoolean(false);
        Thread stdin = new Thread(() -> {
            byte[] buffer = new byte[4096];
            try {
                while (System.in.read(buffer) >= 0) { /* the harness only ever closes it */ }
            } catch (IOException e) {
                // a closed stdin means the same
            }
            stop.set(true);
        });
        stdin.setDaemon(true);
        stdin.start();
        return stop;
    }

    // --- the cluster matrix (compat-tests/cluster_scenarios.py) -----------------------------------

    static List<Object> ids(Node[] nodes) {
        List<Object> out = new ArrayList<>();
        if (nodes != null) for (Node n : nodes) out.add(n.id());
        return out;
    }

    static List<Object> ids(List<Node> nodes) {
        return ids(nodes.toArray(new Node[0]));
    }

    static Object nodeId(Node n) {
        return n == null ? Json.NULL : (Object) n.id();
    }

    static List<Object> brokers(Collection<Node> nodes) {
        List<Object> out = new ArrayList<>();
        for (Node n : nodes) {
            Map<String, Object> b = new LinkedHashMap<>();
            b.put("node_id", n.id());
            b.put("host", n.host());
            b.put("port", n.port());
            out.add(b);
        }
        return out;
    }

    /** The consumer's Metadata view of the topic (PartitionInfo keeps the offline replicas); the
     *  brokers from the admin client's describe cluster, as the consumer does not list them. */
    static Map<String, Object> clusterMetadata(String bootstrap, Map<String, Object> params) throws Exception {
        String topic = (String) params.get("topic");
        Map<String, Object> out = new LinkedHashMap<>();
        try (Admin admin = admin(bootstrap)) {
            out.put("brokers", brokers(admin.describeCluster().nodes().get()));
        }
        List<Object> partitions = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> consumer = consumer(bootstrap, Map.of())) {
            List<PartitionInfo> infos = new ArrayList<>(consumer.partitionsFor(topic, Duration.ofMillis(TIMEOUT_MS)));
            infos.sort(Comparator.comparingInt(PartitionInfo::partition));
            for (PartitionInfo info : infos) {
                Map<String, Object> p = new LinkedHashMap<>();
                p.put("partition", info.partition());
                p.put("leader", nodeId(info.leader()));
                p.put("replicas", ids(info.replicas()));
                p.put("isr", ids(info.inSyncReplicas()));
                p.put("offline", ids(info.offlineReplicas()));
                partitions.add(p);
            }
        }
        out.put("partitions", partitions);
        return out;
    }

    static Map<String, Object> clusterDescribe(String bootstrap, Map<String, Object> params) throws Exception {
        String topic = (String) params.get("topic");
        Map<String, Object> out = new LinkedHashMap<>();
        try (Admin admin = admin(bootstrap)) {
            DescribeClusterResult cluster = admin.describeCluster();
            out.put("cluster_id", cluster.clusterId().get());
            out.put("controller_id", nodeId(cluster.controller().get()));
            out.put("brokers", brokers(cluster.nodes().get()));
            TopicDescription described = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
            List<Object> partitions = new ArrayList<>();
            for (TopicPartitionInfo info : described.partitions()) {
                Map<String, Object> p = new LinkedHashMap<>();
                p.put("partition", info.partition());
                p.put("leader", nodeId(info.leader()));
                p.put("replicas", ids(info.replicas()));
                p.put("isr", ids(info.isr()));
                partitions.add(p);
            }
            out.put("partitions", partitions);
        }
        return out;
    }

    static Object leaderOf(Admin admin, TopicPartition tp) throws Exception {
        TopicDescription described = admin.describeTopics(List.of(tp.topic())).allTopicNames().get().get(tp.topic());
        for (TopicPartitionInfo info : described.partitions()) {
            if (info.partition() == tp.partition()) return nodeId(info.leader());
        }
        return Json.NULL;
    }

    static Map<String, Object> electLeaders(String bootstrap, Map<String, Object> params) throws Exception {
        TopicPartition tp = new TopicPartition((String) params.get("topic"), asInt(params.get("partition")));
        Object preferred = asInt(params.get("preferred"));
        Map<String, Object> out = new LinkedHashMap<>();
        try (Admin admin = admin(bootstrap)) {
            String error = null;
            try {
                Map<TopicPartition, Optional<Throwable>> results =
                        admin.electLeaders(ElectionType.PREFERRED, Set.of(tp)).partitions().get();
                Optional<Throwable> result = results.get(tp);
                error = result == null ? "no result for the partition" : result.map(JavaDriver::describe).orElse(null);
            } catch (ExecutionException e) {
                error = describe(e);
            }
            Object leader = leaderOf(admin, tp);
            long deadline = System.currentTimeMillis() + asLong(params.get("wait_ms"));
            while (!preferred.equals(leader) && System.currentTimeMillis() < deadline) {
                Thread.sleep(200);
                leader = leaderOf(admin, tp);
            }
            out.put("error", error == null ? Json.NULL : error);
            out.put("leader_after", leader);
        }
        return out;
    }

    static Map<String, Object> alterReassignment(String bootstrap, Map<String, Object> params) throws Exception {
        TopicPartition tp = new TopicPartition((String) params.get("topic"), asInt(params.get("partition")));
        List<Integer> replicas = new ArrayList<>();
        for (Object r : Json.asList(params.get("replicas"))) replicas.add(asInt(r));
        Map<String, Object> out = new LinkedHashMap<>();
        try (Admin admin = admin(bootstrap)) {
            admin.alterPartitionReassignments(Map.of(tp, Optional.of(new NewPartitionReassignment(replicas)))).all().get();
            out.put("error", Json.NULL);
        } catch (ExecutionException e) {
            out.put("error", describe(e));
        }
        return out;
    }

    static Map<String, Object> listReassignments(String bootstrap, Map<String, Object> params) throws Exception {
        TopicPartition tp = new TopicPartition((String) params.get("topic"), asInt(params.get("partition")));
        List<Object> ongoing = new ArrayList<>();
        try (Admin admin = admin(bootstrap)) {
            for (Map.Entry<TopicPartition, PartitionReassignment> e
                    : admin.listPartitionReassignments(Set.of(tp)).reassignments().get().entrySet()) {
                Map<String, Object> r = new LinkedHashMap<>();
                r.put("partition", e.getKey().partition());
                r.put("replicas", new ArrayList<Object>(e.getValue().replicas()));
                r.put("adding", new ArrayList<Object>(e.getValue().addingReplicas()));
                r.put("removing", new ArrayList<Object>(e.getValue().removingReplicas()));
                ongoing.add(r);
            }
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("ongoing", ongoing);
        return out;
    }

    /** Produce (acks=all, idempotent) to one partition at a rate while an assigned consumer reads
     *  it from the start, until stdin ends; drivers/common.py gives the contract. */
    static Map<String, Object> failover(String bootstrap, Map<String, Object> params) throws Exception {
        String topic = (String) params.get("topic");
        int partition = asInt(params.get("partition"));
        double rate = ((Number) params.get("rate_per_s")).doubleValue();
        long drainMs = asLong(params.get("drain_timeout_ms"));
        TopicPartition tp = new TopicPartition(topic, partition);
        Events events = new Events();
        AtomicBoolean stop = stopAtEndOfStdin();
        Object lock = new Object();
        Map<Integer, Long> acked = new TreeMap<>();
        Map<Integer, String> failed = new TreeMap<>();
        List<Object> consumed = new ArrayList<>();
        Set<Long> offsetsRead = new java.util.HashSet<>();
        List<Object> fatal = new ArrayList<>();
        int[] counts = {0, -1};  // records sent, number of the last one read
        AtomicLong drainDeadline = new AtomicLong(Long.MAX_VALUE);
        java.util.function.BooleanSupplier drained = () -> {
            synchronized (lock) {
                return !fatal.isEmpty() || (acked.size() + failed.size() >= counts[0] && offsetsRead.size() >= acked.size());
            }
        };
        Thread reader = new Thread(() -> {
            try (KafkaConsumer<byte[], byte[]> consumer = consumer(bootstrap, Map.of())) {
                consumer.assign(List.of(tp));
                consumer.seekToBeginning(List.of(tp));
                while (!(stop.get() && drained.getAsBoolean()) && System.currentTimeMillis() < drainDeadline.get()) {
                    for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(100))) {
                        String v = text(r.value());
                        synchronized (lock) {
                            consumed.add(List.of(r.offset(), v == null ? Json.NULL : v));
                            offsetsRead.add(r.offset());
                            if (v != null && v.startsWith("f-")) counts[1] = Math.max(counts[1], Integer.parseInt(v.substring(2)));
                        }
                    }
                }
            } catch (Exception e) {
                synchronized (lock) { fatal.add("consumer: " + describe(e)); }
            }
        });
        reader.setDaemon(true);
        reader.start();
        Runnable progress = () -> {
            Map<String, Object> fields = new LinkedHashMap<>();
            synchronized (lock) {
                fields.put("sent", counts[0]);
                fields.put("acked", acked.size());
                fields.put("failed", failed.size());
                fields.put("consumed", consumed.size());
                fields.put("last_consumed", counts[1]);
            }
            fields.put("wall_ms", System.currentTimeMillis());
            events.emit("progress", fields);
        };
        Map<String, Object> extra = new HashMap<>();
        extra.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        extra.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 5);
        extra.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, (int) drainMs);
        long started = System.currentTimeMillis();
        long lastProgress = 0;
        try (KafkaProducer<byte[], byte[]> producer = producer(bootstrap, extra)) {
            while (!stop.get() && fatal.isEmpty()) {
                long due = (long) ((System.currentTimeMillis() - started) / 1000.0 * rate) + 1;
                while (counts[0] < due) {
                    int index;
                    synchronized (lock) { index = counts[0]++; }
                    byte[] value = String.format("f-%06d", index).getBytes(StandardCharsets.UTF_8);
                    producer.send(new ProducerRecord<>(topic, partition, null, value), (md, e) -> {
                        synchronized (lock) {
                            if (e == null) acked.put(index, md.offset()); else failed.put(index, describe(e));
                        }
                    });
                }
                if (System.currentTimeMillis() - lastProgress >= 200) {
                    progress.run();
                    lastProgress = System.currentTimeMillis();
                }
                Thread.sleep(10);
            }
            drainDeadline.set(System.currentTimeMillis() + drainMs);
            producer.flush();
            while (!drained.getAsBoolean() && System.currentTimeMillis() < drainDeadline.get()) {
                progress.run();
                Thread.sleep(50);
            }
        } finally {
            drainDeadline.set(0);
            reader.join(15_000);
        }
        progress.run();
        events.emit("closed", Map.of());
        Map<String, Object> out = new LinkedHashMap<>();
        synchronized (lock) {
            List<Object> ackList = new ArrayList<>();
            acked.forEach((i, o) -> ackList.add(List.of(i, o)));
            List<Object> failList = new ArrayList<>();
            failed.forEach((i, e) -> failList.add(List.of(i, e)));
            out.put("sent", counts[0]);
            out.put("acked", ackList);
            out.put("failed", failList);
            out.put("consumed", new ArrayList<>(consumed));
            out.put("client_errors", new ArrayList<>());
            out.put("fatal", new ArrayList<>(fatal));
        }
        return out;
    }

    static String sha256(byte[] data) throws Exception {
        StringBuilder hex = new StringBuilder();
        for (byte b : MessageDigest.getInstance("SHA-256").digest(data)) hex.append(String.format("%02x", b));
        return hex.toString();
    }

    // --- a small JSON reader and writer ------------------------------------------------------------

    static final class Json {
        /** JSON null inside maps and lists (Map.of and List.of refuse Java null). */
        static final Object NULL = new Object() {
            @Override public String toString() { return "null"; }
        };

        private final String s;
        private int i;

        private Json(String s) { this.s = s; }

        static Object parse(String text) {
            Json p = new Json(text);
            Object v = p.value();
            p.ws();
            if (p.i != p.s.length()) throw p.error("trailing characters");
            return v;
        }

        @SuppressWarnings("unchecked")
        static Map<String, Object> asMap(Object o) { return (Map<String, Object>) o; }

        @SuppressWarnings("unchecked")
        static List<Object> asList(Object o) { return (List<Object>) o; }

        private IllegalArgumentException error(String what) {
            return new IllegalArgumentException("bad JSON at " + i + ": " + what);
        }

        private void ws() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
        }

        private Object value() {
            ws();
            if (i >= s.length()) throw error("unexpected end");
            char c = s.charAt(i);
            if (c == '{') return object();
            if (c == '[') return array();
            if (c == '"') return string();
            if (s.startsWith("true", i)) { i += 4; return Boolean.TRUE; }
            if (s.startsWith("false", i)) { i += 5; return Boolean.FALSE; }
            if (s.startsWith("null", i)) { i += 4; return null; }
            return number();
        }

        private Map<String, Object> object() {
            Map<String, Object> out = new LinkedHashMap<>();
            i++;
            ws();
            if (s.charAt(i) == '}') { i++; return out; }
            while (true) {
                ws();
                String key = string();
                ws();
                if (s.charAt(i++) != ':') throw error("expected ':'");
                out.put(key, value());
                ws();
                char c = s.charAt(i++);
                if (c == '}') return out;
                if (c != ',') throw error("expected ',' or '}'");
            }
        }

        private List<Object> array() {
            List<Object> out = new ArrayList<>();
            i++;
            ws();
            if (s.charAt(i) == ']') { i++; return out; }
            while (true) {
                out.add(value());
                ws();
                char c = s.charAt(i++);
                if (c == ']') return out;
                if (c != ',') throw error("expected ',' or ']'");
            }
        }

        private String string() {
            if (s.charAt(i) != '"') throw error("expected a string");
            i++;
            StringBuilder out = new StringBuilder();
            while (true) {
                char c = s.charAt(i++);
                if (c == '"') return out.toString();
                if (c != '\\') { out.append(c); continue; }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n': out.append('\n'); break;
                    case 't': out.append('\t'); break;
                    case 'r': out.append('\r'); break;
                    case 'b': out.append('\b'); break;
                    case 'f': out.append('\f'); break;
                    case 'u': out.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; break;
                    default: out.append(e);
                }
            }
        }

        private Number number() {
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
            String n = s.substring(start, i);
            if (n.isEmpty()) throw error("unexpected character");
            if (n.contains(".") || n.contains("e") || n.contains("E")) return Double.parseDouble(n);
            return Long.parseLong(n);
        }

        static String write(Object v) {
            StringBuilder out = new StringBuilder();
            write(out, v);
            return out.toString();
        }

        private static void write(StringBuilder out, Object v) {
            if (v == null || v == NULL) {
                out.append("null");
            } else if (v instanceof String) {
                out.append('"');
                for (char c : ((String) v).toCharArray()) {
                    if (c == '"' || c == '\\') out.append('\\').append(c);
                    else if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
                    else out.append(c);
                }
                out.append('"');
            } else if (v instanceof Map) {
                out.append('{');
                boolean first = true;
                for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                    if (!first) out.append(',');
                    first = false;
                    write(out, String.valueOf(e.getKey()));
                    out.append(':');
                    write(out, e.getValue());
                }
                out.append('}');
            } else if (v instanceof Collection) {
                out.append('[');
                boolean first = true;
                for (Object o : (Collection<?>) v) {
                    if (!first) out.append(',');
                    first = false;
                    write(out, o);
                }
                out.append(']');
            } else {
                out.append(v);  // numbers and booleans
            }
        }
    }
}
