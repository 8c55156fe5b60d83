"""Telemetry: schema-v1 messages, the on-disk spool, the MQTT link, health, the consumer side."""
