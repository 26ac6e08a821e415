// Where the Java Kafka client (kafka-clients) puts keyed records: the tests' reference for
// `host produce`'s partitioning. A single-file source program (Java 11+ compiles and runs
// it):
//
//   printf 'KEY\tVALUE\n...' | java -cp "$(cat "$(scripts/install-kafka)")" \
//       tests/java/Produce.java BROKERS TOPIC
//
// It reads lines KEY<TAB>VALUE from stdin (UTF-8; the value is everything after the first
// tab, a line without one is an error) and produces each to TOPIC with the producer's
// default partitioner: no partition given, so a keyed record goes to
// toPositive(murmur2(key)) % partitions. Keys and values are sent as their UTF-8 bytes,
// with acks=all. Once every record is acknowledged it prints one line per record, in
// input order, from the RecordMetadata of its send:
//
//   KEY<TAB>PARTITION
//
// Exit status 0 when every record was acknowledged, 1 on an error (a failed send
// included), 2 on bad arguments or input.
//
// Logging: run with -Dlog4j2.configurationFile=tests/java/log4j2.properties (warnings and
// errors to stderr), so that stdout carries only the partitions.

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class Produce {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: java -cp CLASSPATH Produce.java BROKERS TOPIC <KEY\\tVALUE lines");
            System.exit(2);
        }
        String brokers = args[0];
        String topic = args[1];
        List<String[]> records = new ArrayList<>();
        BufferedReader in = new BufferedReader(
                new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        int number = 0;
        while ((line = in.readLine()) != null) {
            number++;
            int tab = line.indexOf('\t');
            if (tab < 0) {
                System.err.println("Produce: line " + number + " has no tab: " + line);
                System.exit(2);
            }
            records.add(new String[] {line.substring(0, tab), line.substring(tab + 1)});
        }
        try {
            produce(brokers, topic, records);
        } catch (Exception e) {
            System.err.println("Produce " + topic + " at " + brokers + ": " + e);
            e.printStackTrace();
            System.exit(1);
        }
        System.exit(0);
    }

    static void produce(String brokers, String topic, List<String[]> records) throws Exception {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "streamhost-tests-produce");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        // A send that cannot be delivered fails within a minute rather than hanging.
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "60000");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
        // No partitioner.class and partitioner.ignore.keys left at false: the default,
        // key-hash partitioning of keyed records.
        List<Future<RecordMetadata>> sent = new ArrayList<>(records.size());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            for (String[] r : records) {
                sent.add(producer.send(new ProducerRecord<>(topic,
                        r[0].getBytes(StandardCharsets.UTF_8),
                        r[1].getBytes(StandardCharsets.UTF_8))));
            }
            producer.flush();
            BufferedWriter out = new BufferedWriter(
                    new OutputStreamWriter(System.out, StandardCharsets.UTF_8), 1 << 16);
            for (int i = 0; i < records.size(); i++) {
                RecordMetadata meta = sent.get(i).get(60, TimeUnit.SECONDS);
                out.write(records.get(i)[0]);
                out.write('\t');
                out.write(Integer.toString(meta.partition()));
                out.write('\n');
            }
            out.flush();
        }
    }
}
