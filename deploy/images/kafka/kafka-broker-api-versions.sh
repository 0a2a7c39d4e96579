#!/bin/sh
# The official image's script of the same name (compose.yaml's health check runs it).
exec java -Xmx128m -Djava.awt.headless=true \
    -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
    -cp '/opt/kafka/libs/*' org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
