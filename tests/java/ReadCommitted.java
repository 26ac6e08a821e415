// What the Java Kafka client (kafka-clients) hands out of a topic with
// isolation.level=read_committed: the tests' second opinion on exactly-once, beside
// librdkafka's consumer. A single-file source program (Java 11+ compiles and runs it):
//
//   java -cp "$(cat "$(scripts/install-kafka)")" tests/java/ReadCommitted.java \
//       BROKERS TOPIC EXPECTED_COUNT TIMEOUT_MS
//
// It assigns every partition of TOPIC (no consumer group, nothing committed), seeks to the
// beginning and polls until it holds at least EXPECTED_COUNT records and its position in
// every partition has reached the partition's end offset (for read_committed, the last
// stable offset: records of open transactions stay out of reach), or until TIMEOUT_MS
// passed (then it says so on stderr; what it read is printed all the same). Each record
// is one line on stdout, as it arrives (in offset order within a partition):
//
//   PARTITION<TAB>OFFSET<TAB>base64(KEY)<TAB>base64(VALUE)<TAB>HEADERS
//
// a null key or value as an empty field; HEADERS comma-separated, each base64(NAME) then,
// unless its value is null, ':' and base64(VALUE). Exit status 0 (a timeout included), 1
// on an error, 2 on bad arguments.
//
// Logging: the client logs through SLF4J to Log4j2 (both on the broker's classpath); run
// with -Dlog4j2.configurationFile=tests/java/log4j2.properties (warnings and errors to
// stderr), so that stdout carries only the records.

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class ReadCommitted {
    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println(
                    "usage: java -cp CLASSPATH ReadCommitted.java BROKERS TOPIC EXPECTED_COUNT TIMEOUT_MS");
            System.exit(2);
        }
        String brokers = args[0];
        String topic = args[1];
        long expected;
        long timeoutMs;
        try {
            expected = Long.parseLong(args[2]);
            timeoutMs = Long.parseLong(args[3]);
        } catch (NumberFormatException e) {
            System.err.println("EXPECTED_COUNT and TIMEOUT_MS are integers: " + e.getMessage());
            System.exit(2);
            return;
        }
        try {
            System.exit(read(brokers, topic, expected, timeoutMs));
        } catch (Exception e) {
            System.err.println("ReadCommitted " + topic + " at " + brokers + ": " + e);
            e.printStackTrace();
            System.exit(1);
        }
    }

    static int read(String brokers, String topic, long expected, long timeoutMs)
            throws Exception {
        long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.CLIENT_ID_CONFIG, "streamhost-tests-read-committed");
        props.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "5000");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
        Base64.Encoder b64 = Base64.getEncoder();
        BufferedWriter out = new BufferedWriter(
                new OutputStreamWriter(System.out, StandardCharsets.UTF_8), 1 << 16);
        long count = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            List<PartitionInfo> infos = consumer.partitionsFor(topic, lookup(deadline));
            if (infos == null || infos.isEmpty()) {
                System.err.println("ReadCommitted: no partitions of " + topic + " at " + brokers);
                return 1;
            }
            List<TopicPartition> partitions = new ArrayList<>();
            for (PartitionInfo info : infos) {
                partitions.add(new TopicPartition(topic, info.partition()));
            }
            partitions.sort(Comparator.comparingInt(TopicPartition::partition));
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            // With read_committed, the last stable offsets.
            Map<TopicPartition, Long> ends = consumer.endOffsets(partitions, lookup(deadline));
            while (true) {
                boolean atEnd = true;
                for (TopicPartition tp : partitions) {
                    if (consumer.position(tp, lookup(deadline)) < ends.get(tp)) {
                        atEnd = false;
                        break;
                    }
                }
                if (atEnd && count >= expected) {
                    break;
                }
                if (System.nanoTime() >= deadline) {
                    StringBuilder where = new StringBuilder();
                    for (TopicPartition tp : partitions) {
                        where.append(String.format(" %d: position %d of %d;", tp.partition(),
                                consumer.position(tp, LOOKUP), ends.get(tp)));
                    }
                    System.err.println("ReadCommitted: timed out after " + timeoutMs + " ms with "
                            + count + " of " + expected + " records of " + topic + ";" + where);
                    break;
                }
                if (atEnd) {
                    // Fewer records than expected so far: more may be committed yet.
                    ends = consumer.endOffsets(partitions, lookup(deadline));
                }
                Duration wait = remaining(deadline);
                if (wait.compareTo(Duration.ofMillis(200)) > 0) {
                    wait = Duration.ofMillis(200);
                }
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(wait)) {
                    write(out, b64, r);
                    count++;
                }
            }
        }
        out.flush();
        return 0;
    }

    static void write(BufferedWriter out, Base64.Encoder b64, ConsumerRecord<byte[], byte[]> r)
            throws IOException {
        out.write(Integer.toString(r.partition()));
        out.write('\t');
        out.write(Long.toString(r.offset()));
        out.write('\t');
        out.write(r.key() == null ? "" : b64.encodeToString(r.key()));
        out.write('\t');
        out.write(r.value() == null ? "" : b64.encodeToString(r.value()));
        out.write('\t');
        boolean first = true;
        for (Header h : r.headers()) {
            if (!first) {
                out.write(',');
            }
            first = false;
            out.write(b64.encodeToString(h.key().getBytes(StandardCharsets.UTF_8)));
            if (h.value() != null) {
                out.write(':');
                out.write(b64.encodeToString(h.value()));
            }
        }
        out.write('\n');
    }

    static Duration remaining(long deadline) {
        return Duration.ofNanos(Math.max(0, deadline - System.nanoTime()));
    }

    // The shortest time a lookup (metadata, offsets) gets, even past the deadline.
    static final Duration LOOKUP = Duration.ofSeconds(5);

    // What is left until the deadline for a lookup, at least LOOKUP.
    static Duration lookup(long deadline) {
        Duration left = remaining(deadline);
        return left.compareTo(LOOKUP) < 0 ? LOOKUP : left;
    }
}
