#!/bin/sh
# The official apache/kafka image's contract: every KAFKA_* variable is a line of
# server.properties (KAFKA_LOG_DIRS -> log.dirs; "___" stands for "-" and "__" for "_"), except
# the JVM's own (KAFKA_HEAP_OPTS, KAFKA_OPTS...). CLUSTER_ID formats the log directories on the
# first start; later starts find them formatted and go on.
set -eu
conf=/opt/kafka/config/server.properties
: "${CLUSTER_ID:?set CLUSTER_ID (a KRaft cluster id, e.g. from kafka-storage random-uuid)}"
env | grep '^KAFKA_' | while IFS='=' read -r name value; do
    case "$name" in
        KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_LOG4J_OPTS) continue ;;
    esac
    key=$(printf '%s' "${name#KAFKA_}" | tr 'A-Z' 'a-z' | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')
    printf '%s=%s\n' "$key" "$value"
done > "$conf"
grep -q '^log\.dirs=' "$conf" || echo "log.dirs=/var/lib/kafka/data" >> "$conf"

# shellcheck disable=SC2086 # the *_OPTS variables are lists of JVM flags.
jvm="$KAFKA_HEAP_OPTS ${KAFKA_OPTS:-} -Djava.awt.headless=true -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties"
# shellcheck disable=SC2086
java $jvm -cp '/opt/kafka/libs/*' kafka.tools.StorageTool format \
    --config "$conf" --cluster-id "$CLUSTER_ID" --ignore-formatted
# shellcheck disable=SC2086
exec java $jvm -cp '/opt/kafka/libs/*' kafka.Kafka "$conf"
