// A consumer group's committed offsets as the Java Kafka client's Admin API reports them
// (kafka-clients' Admin.listConsumerGroupOffsets): what lag tools built on it (Burrow,
// KEDA's Kafka scaler, kafka-consumer-groups.sh) read. A single-file source program (Java
// 11+ compiles and runs it):
//
//   java -cp "$(cat "$(scripts/install-kafka)")" tests/java/GroupOffsets.java BROKERS GROUP
//
// It prints one line per partition the group has an offset committed for, sorted by topic
// then partition:
//
//   TOPIC<TAB>PARTITION<TAB>OFFSET
//
// A group with nothing committed (or unknown to the broker) prints nothing. Exit status 0,
// 1 on an error, 2 on bad arguments.
//
// Logging: run with -Dlog4j2.configurationFile=tests/java/log4j2.properties (warnings and
// errors to stderr), so that stdout carries only the offsets.

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;

public class GroupOffsets {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: java -cp CLASSPATH GroupOffsets.java BROKERS GROUP");
            System.exit(2);
        }
        String brokers = args[0];
        String group = args[1];
        try {
            list(brokers, group);
        } catch (Exception e) {
            System.err.println("GroupOffsets " + group + " at " + brokers + ": " + e);
            e.printStackTrace();
            System.exit(1);
        }
        System.exit(0);
    }

    static void list(String brokers, String group) throws Exception {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "streamhost-tests-group-offsets");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        try (Admin admin = Admin.create(props)) {
            Map<TopicPartition, OffsetAndMetadata> offsets = admin
                    .listConsumerGroupOffsets(group)
                    .partitionsToOffsetAndMetadata()
                    .get(60, TimeUnit.SECONDS);
            List<TopicPartition> partitions = new ArrayList<>();
            for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offsets.entrySet()) {
                // A partition the group has no offset for maps to null.
                if (e.getValue() != null) {
                    partitions.add(e.getKey());
                }
            }
            partitions.sort(Comparator.comparing(TopicPartition::topic)
                    .thenComparingInt(TopicPartition::partition));
            StringBuilder out = new StringBuilder();
            for (TopicPartition tp : partitions) {
                out.append(tp.topic()).append('\t').append(tp.partition()).append('\t')
                        .append(offsets.get(tp).offset()).append('\n');
            }
            System.out.print(out);
            System.out.flush();
        }
    }
}
