#!/bin/sh
# The official apache/kafka image's contract: the KAFKA_* variables are server.properties
# (server-properties.sh), and CLUSTER_ID formats the log directories on the first start; later
# starts find them formatted and go on.
set -eu
conf=/opt/kafka/config/server.properties
: "${CLUSTER_ID:?set CLUSTER_ID (a KRaft cluster id, e.g. from kafka-storage random-uuid)}"
/opt/kafka/bin/server-properties.sh > "$conf"
# shellcheck disable=SC2086 # the *_OPTS variables are lists of JVM flags.
jvm="$KAFKA_HEAP_OPTS ${KAFKA_JVM_PERFORMANCE_OPTS:-} ${KAFKA_JMX_OPTS:-} ${KAFKA_OPTS:-} -Djava.awt.headless=true -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties"
# shellcheck disable=SC2086
java $jvm -cp '/opt/kafka/libs/*' kafka.tools.StorageTool format \
    --config "$conf" --cluster-id "$CLUSTER_ID" --ignore-formatted
# shellcheck disable=SC2086
exec java $jvm -cp '/opt/kafka/libs/*' kafka.Kafka "$conf"
