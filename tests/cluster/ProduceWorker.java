// The fault test's second producer: the Apache Kafka Java client, idempotent, acks=all.
//
//     java -cp <kafka-clients jars>:<dir> ProduceWorker BOOTSTRAP TOPIC PARTITIONS NAME
//
// The same contract as produce_worker.py: sends NAME:seq to partition seq % PARTITIONS at a steady
// rate until stdin closes, then flushes; one JSON line per acknowledged record
// ({"p", "o", "v", "t"}) or failed one ({"err", "v", "retriable", "fatal"}).

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class ProduceWorker {
    static final int RATE_PER_S = 400;

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], name = args[3];
        int partitions = Integer.parseInt(args[2]);
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("acks", "all");
        props.put("enable.idempotence", "true");
        props.put("linger.ms", "5");
        props.put("delivery.timeout.ms", "120000");
        props.put("request.timeout.ms", "10000");
        props.put("retry.backoff.ms", "100");
        props.put("metadata.max.age.ms", "1000");
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        PrintStream out = new PrintStream(System.out, true, "UTF-8");
        AtomicBoolean stop = new AtomicBoolean(false);
        Thread reader = new Thread(() -> {
            try {
                while (System.in.read() != -1) { }
            } catch (Exception e) { }
            stop.set(true);
        });
        reader.setDaemon(true);
        reader.start();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            long start = System.nanoTime();
            long seq = 0;
            while (!stop.get()) {
                long due = (System.nanoTime() - start) * RATE_PER_S / 1_000_000_000L;
                while (seq < due) {
                    String value = name + ":" + seq;
                    int partition = (int) (seq % partitions);
                    producer.send(new ProducerRecord<>(topic, partition, null, value.getBytes(StandardCharsets.UTF_8)),
                        (md, e) -> {
                            synchronized (out) {
                                if (e == null) {
                                    out.println("{\"p\": " + md.partition() + ", \"o\": " + md.offset() + ", \"v\": \""
                                        + value + "\", \"t\": " + (System.currentTimeMillis() / 1000.0) + "}");
                                } else {
                                    out.println("{\"err\": \"" + e.toString().replace("\"", "'") + "\", \"v\": \"" + value
                                        + "\", \"retriable\": " + (e instanceof RetriableException) + ", \"fatal\": false}");
                                }
                            }
                        });
                    seq++;
                }
                Thread.sleep(10);
            }
            producer.flush();
            producer.close(java.time.Duration.ofSeconds(60));
        }
    }
}
