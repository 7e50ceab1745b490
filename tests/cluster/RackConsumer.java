// The fetch-from-follower test's Java consumer: the Apache Kafka Java client with client.rack set.
//
//     java -cp <kafka-clients jars>:<dir> RackConsumer BOOTSTRAP TOPIC COUNT RACK CLIENT_ID
//
// Reads partition 0 of TOPIC from its beginning (no group) until COUNT records have arrived, one
// JSON line per record ({"o": offset, "v": value}); exits 1 if they have not within 60 s.

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class RackConsumer {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], rack = args[3], clientId = args[4];
        int count = Integer.parseInt(args[2]);
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("client.rack", rack);
        props.put("client.id", clientId);
        props.put("enable.auto.commit", "false");
        props.put("max.poll.records", "50");
        props.put("fetch.max.bytes", "4096");  // many fetches, so that which replica serves them shows
        props.put("max.partition.fetch.bytes", "4096");
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        PrintStream out = new PrintStream(System.out, true, "UTF-8");
        TopicPartition tp = new TopicPartition(topic, 0);
        long deadline = System.nanoTime() + 60_000_000_000L;
        int seen = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            while (seen < count && System.nanoTime() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    out.println("{\"o\": " + r.offset() + ", \"v\": \""
                        + new String(r.value(), StandardCharsets.UTF_8) + "\"}");
                    seen++;
                }
            }
        }
        System.exit(seen >= count ? 0 : 1);
    }
}
