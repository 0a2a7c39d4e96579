#!/bin/sh
# Prints server.properties from the environment, as the official apache/kafka image reads it:
# every KAFKA_* variable is a line (KAFKA_LOG_DIRS -> log.dirs; "___" stands for "-" and "__"
# for "_"), except the JVM's and the scripts' own (KAFKA_HEAP_OPTS, KAFKA_OPTS...) and the
# service links Docker and Kubernetes add for a service named kafka (KAFKA_PORT=tcp://...);
# log.dirs defaults to the image's data volume. Sorted, so that the same environment always
# gives the same file.
set -eu
env | grep '^KAFKA_' | LC_ALL=C sort | while IFS='=' read -r name value; do
    case "$name" in
        KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_JMX_OPTS | KAFKA_GC_LOG_OPTS | \
            KAFKA_LOG4J_OPTS | KAFKA_LOG4J_LOGGERS | KAFKA_LOG4J_ROOT_LOGLEVEL | KAFKA_VERSION | \
            KAFKA_PORT | KAFKA_PORT_* | KAFKA_SERVICE_*) continue ;;
    esac
    key=$(printf '%s' "${name#KAFKA_}" | tr 'A-Z' 'a-z' | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g')
    printf '%s=%s\n' "$key" "$value"
done
env | grep -q '^KAFKA_LOG_DIRS=' || echo "log.dirs=/var/lib/kafka/data"
